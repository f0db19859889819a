//! A finished run's records, sealed: one plain file beside the sled
//! database, written once when the run ends, and what every reader reads.
//!
//! Why a second copy: sled has no read-only mode. Opening a database runs
//! its recovery, which rewrites files; a reader that opened a damaged log
//! with sled turned one flipped bit into a smaller, "valid" log and lost
//! the rest for good. A sealed file is read with plain reads, so reading
//! never changes a run, works on read-only media and full disks, and checks
//! every byte on the way.
//!
//! Layout of `runs/<run id>/sealed.log` (integers little-endian):
//!
//! ```text
//! "FBSEAL1\n"  run id (16 bytes)
//! per record:  1u8  lsn u64  len u32  record bytes (an encoded pb::LogRecord)  crc32 u32
//! trailer:     2u8  count u64  last lsn u64  chain hash (32 bytes)  crc32 u32
//! ```
//!
//! Each CRC-32 covers its frame from the tag on. The chain hash is
//! SHA-256 over the records in order: h0 = SHA-256("fleetbench sealed log
//! v1" ‖ run id), hᵢ = SHA-256(hᵢ₋₁ ‖ lsn ‖ record bytes). So a flipped bit
//! is caught in its record's CRC, and a dropped, repeated or reordered
//! record, or a missing tail, in the count and the chain.

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use fleetbench::pb;
use prost::Message;
use sha2::{Digest, Sha256};

/// The file's name in a run directory.
pub(crate) const SEALED: &str = "sealed.log";

const MAGIC: &[u8; 8] = b"FBSEAL1\n";
const RECORD: u8 = 1;
const TRAILER: u8 = 2;
/// No record is this large (the hub refuses messages far smaller).
const MAX_RECORD: u32 = 256 << 20;

/// Why a sealed file could not be read whole.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SealError {
    #[error("reading {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The file is damaged from record `record` on (1-based; the records
    /// before it read whole).
    #[error(
        "{path} is damaged at record {record} (byte {offset}): {why}; the {readable} record(s) before it read whole"
    )]
    Damaged {
        path: PathBuf,
        record: u64,
        offset: u64,
        readable: u64,
        why: String,
    },
}

/// What a whole sealed file holds.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Seal {
    pub count: u64,
    pub last_lsn: u64,
    /// The chain hash, hex.
    pub hash: String,
}

fn chain_start(run: &[u8; 16]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"fleetbench sealed log v1");
    h.update(run);
    h.finalize().into()
}

fn chain_next(prev: &[u8; 32], lsn: u64, bytes: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(prev);
    h.update(lsn.to_le_bytes());
    h.update(bytes);
    h.finalize().into()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Writes `records` (lsn, encoded record; in log order) as the sealed file
/// of run `run` in `dir`: to a temporary name, synced, then renamed over
/// any older seal, and the directory synced. Readers see the old file or
/// the new, never half of one.
pub(crate) fn write(
    dir: &Path,
    run: &[u8; 16],
    records: impl IntoIterator<Item = std::io::Result<(u64, Vec<u8>)>>,
) -> std::io::Result<Seal> {
    let tmp = dir.join(format!("{SEALED}.tmp"));
    let file = File::create(&tmp)?;
    let mut out = BufWriter::new(file);
    out.write_all(MAGIC)?;
    out.write_all(run)?;
    let mut hash = chain_start(run);
    let (mut count, mut last_lsn) = (0u64, 0u64);
    for item in records {
        let (lsn, bytes) = item?;
        let len = u32::try_from(bytes.len())
            .ok()
            .filter(|l| *l <= MAX_RECORD)
            .ok_or_else(|| std::io::Error::other(format!("record {lsn} is too large to seal")))?;
        let mut crc = crc32fast::Hasher::new();
        let head = frame_head(RECORD, lsn, len);
        crc.update(&head);
        crc.update(&bytes);
        out.write_all(&head)?;
        out.write_all(&bytes)?;
        out.write_all(&crc.finalize().to_le_bytes())?;
        hash = chain_next(&hash, lsn, &bytes);
        count += 1;
        last_lsn = lsn;
    }
    let mut trailer = Vec::with_capacity(49);
    trailer.push(TRAILER);
    trailer.extend_from_slice(&count.to_le_bytes());
    trailer.extend_from_slice(&last_lsn.to_le_bytes());
    trailer.extend_from_slice(&hash);
    let crc = crc32fast::hash(&trailer);
    out.write_all(&trailer)?;
    out.write_all(&crc.to_le_bytes())?;
    let file = out.into_inner().map_err(|e| e.into_error())?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&tmp, dir.join(SEALED))?;
    File::open(dir)?.sync_all()?;
    Ok(Seal {
        count,
        last_lsn,
        hash: hex(&hash),
    })
}

fn frame_head(tag: u8, lsn: u64, len: u32) -> [u8; 13] {
    let mut head = [0u8; 13];
    head[0] = tag;
    head[1..9].copy_from_slice(&lsn.to_le_bytes());
    head[9..13].copy_from_slice(&len.to_le_bytes());
    head
}

/// Reads the sealed file `path` of run `run`, handing each record to
/// `sink` in log order, and checks it whole (every CRC, the count and the
/// chain hash in the trailer, nothing after it). The file is opened
/// read-only. On damage the records before it have gone to `sink`: a
/// caller must not present what it built from them as the whole run.
pub(crate) fn read(
    path: &Path,
    run: &[u8; 16],
    sink: &mut dyn FnMut(u64, &pb::LogRecord) -> anyhow::Result<()>,
) -> Result<Seal, ReadFailure> {
    let io = |source| {
        ReadFailure::Seal(SealError::Io {
            path: path.to_path_buf(),
            source,
        })
    };
    let file = File::open(path).map_err(io)?;
    let mut r = Reader {
        input: BufReader::new(file),
        offset: 0,
    };
    let mut count = 0u64;
    let damaged = |offset: u64, count: u64, why: String| {
        ReadFailure::Seal(SealError::Damaged {
            path: path.to_path_buf(),
            record: count + 1,
            offset,
            readable: count,
            why,
        })
    };
    let mut magic = [0u8; 24];
    match r.exact(&mut magic) {
        Ok(true) if &magic[..8] == MAGIC && &magic[8..] == run => {}
        Ok(true) => return Err(damaged(0, 0, "not this run's sealed log".into())),
        Ok(false) => return Err(damaged(0, 0, "the file ends before its header".into())),
        Err(e) => return Err(io(e)),
    }
    let mut hash = chain_start(run);
    let mut last = 0u64;
    loop {
        let at = r.offset;
        let mut tag = [0u8; 1];
        if !r.exact(&mut tag).map_err(io)? {
            return Err(damaged(at, count, "the file ends without its seal".into()));
        }
        match tag[0] {
            RECORD => {
                let mut rest = [0u8; 12];
                if !r.exact(&mut rest).map_err(io)? {
                    return Err(damaged(at, count, "the file ends inside its header".into()));
                }
                let lsn = u64::from_le_bytes(rest[..8].try_into().expect("8 bytes"));
                let len = u32::from_le_bytes(rest[8..].try_into().expect("4 bytes"));
                if len > MAX_RECORD {
                    return Err(damaged(at, count, format!("a length of {len} bytes")));
                }
                let mut bytes = vec![0u8; len as usize];
                let mut crc_bytes = [0u8; 4];
                if !r.exact(&mut bytes).map_err(io)? || !r.exact(&mut crc_bytes).map_err(io)? {
                    return Err(damaged(
                        at,
                        count,
                        format!(
                            "its {len} bytes run past the end of the file (cut off, or its length is damaged)"
                        ),
                    ));
                }
                let mut crc = crc32fast::Hasher::new();
                crc.update(&frame_head(RECORD, lsn, len));
                crc.update(&bytes);
                if crc.finalize() != u32::from_le_bytes(crc_bytes) {
                    return Err(damaged(at, count, "its checksum does not match".into()));
                }
                if lsn <= last {
                    return Err(damaged(at, count, format!("sequence {lsn} after {last}")));
                }
                let rec = pb::LogRecord::decode(&bytes[..])
                    .map_err(|e| damaged(at, count, format!("it does not decode: {e}")))?;
                hash = chain_next(&hash, lsn, &bytes);
                sink(lsn, &rec).map_err(ReadFailure::Sink)?;
                count += 1;
                last = lsn;
            }
            TRAILER => {
                let mut rest = [0u8; 48];
                let mut crc_bytes = [0u8; 4];
                if !r.exact(&mut rest).map_err(io)? || !r.exact(&mut crc_bytes).map_err(io)? {
                    return Err(damaged(at, count, "its seal is cut off".into()));
                }
                let mut body = vec![TRAILER];
                body.extend_from_slice(&rest);
                if crc32fast::hash(&body) != u32::from_le_bytes(crc_bytes) {
                    return Err(damaged(
                        at,
                        count,
                        "its seal's checksum does not match".into(),
                    ));
                }
                let sealed_count = u64::from_le_bytes(rest[..8].try_into().expect("8 bytes"));
                let sealed_last = u64::from_le_bytes(rest[8..16].try_into().expect("8 bytes"));
                if sealed_count != count || sealed_last != last || rest[16..] != hash {
                    return Err(damaged(
                        at,
                        count,
                        format!(
                            "the seal says {sealed_count} records through {sealed_last}, the file holds {count} through {last}, or their hash differs"
                        ),
                    ));
                }
                let mut extra = [0u8; 1];
                if r.exact(&mut extra).map_err(io)? {
                    return Err(damaged(r.offset - 1, count, "bytes after its seal".into()));
                }
                return Ok(Seal {
                    count,
                    last_lsn: last,
                    hash: hex(&hash),
                });
            }
            other => return Err(damaged(at, count, format!("an unknown frame tag {other}"))),
        }
    }
}

/// Why [`read`] stopped: the file, or the sink.
#[derive(Debug)]
pub(crate) enum ReadFailure {
    Seal(SealError),
    Sink(anyhow::Error),
}

struct Reader<R> {
    input: R,
    offset: u64,
}

impl<R: Read> Reader<R> {
    /// Fills `buf`; false if the input ended first (at any point in it).
    fn exact(&mut self, buf: &mut [u8]) -> std::io::Result<bool> {
        let mut filled = 0;
        while filled < buf.len() {
            match self.input.read(&mut buf[filled..]) {
                Ok(0) => return Ok(false),
                Ok(n) => {
                    filled += n;
                    self.offset += n as u64;
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn notice(i: u64) -> Vec<u8> {
        pb::LogRecord {
            logged_at_us: i as i64,
            record: Some(pb::log_record::Record::Notice(pb::CoordinatorNotice {
                level: "info".into(),
                message: format!("record {i}"),
                agent_id: String::new(),
            })),
        }
        .encode_to_vec()
    }

    fn sealed(n: u64) -> (PathBuf, [u8; 16]) {
        let dir = std::env::temp_dir().join(format!("fleetbench-seal-{}", uuid::Uuid::now_v7()));
        std::fs::create_dir_all(&dir).unwrap();
        let run = *uuid::Uuid::now_v7().as_bytes();
        let seal = write(&dir, &run, (1..=n).map(|i| Ok((i, notice(i))))).unwrap();
        assert_eq!((seal.count, seal.last_lsn), (n, n));
        (dir, run)
    }

    fn read_all(path: &Path, run: &[u8; 16]) -> (Vec<u64>, Result<Seal, ReadFailure>) {
        let mut got = Vec::new();
        let result = read(path, run, &mut |lsn, _| {
            got.push(lsn);
            Ok(())
        });
        (got, result)
    }

    #[test]
    fn a_sealed_file_reads_back_whole() {
        let (dir, run) = sealed(50);
        let (got, result) = read_all(&dir.join(SEALED), &run);
        assert_eq!(got, (1..=50).collect::<Vec<_>>());
        assert_eq!(result.unwrap().count, 50);
        assert!(!dir.join(format!("{SEALED}.tmp")).exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// Every single-bit flip and every truncation of a sealed file reads as
    /// damaged (never as a whole run, never a panic).
    #[test]
    fn every_bit_flip_and_truncation_is_caught() {
        let (dir, run) = sealed(6);
        let path = dir.join(SEALED);
        let good = std::fs::read(&path).unwrap();
        for byte in 0..good.len() {
            for bit in 0..8 {
                let mut bad = good.clone();
                bad[byte] ^= 1 << bit;
                std::fs::write(&path, &bad).unwrap();
                let (_, result) = read_all(&path, &run);
                assert!(
                    matches!(result, Err(ReadFailure::Seal(SealError::Damaged { .. }))),
                    "bit {bit} of byte {byte}: {result:?}"
                );
            }
        }
        for len in 0..good.len() {
            std::fs::write(&path, &good[..len]).unwrap();
            let (_, result) = read_all(&path, &run);
            assert!(
                matches!(result, Err(ReadFailure::Seal(SealError::Damaged { .. }))),
                "cut at {len}: {result:?}"
            );
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn damage_names_the_first_bad_record() {
        let (dir, run) = sealed(10);
        let path = dir.join(SEALED);
        let mut bytes = std::fs::read(&path).unwrap();
        // Record 4's frame: the header, then three whole records.
        let frame = 13 + notice(1).len() + 4;
        let at = 24 + 3 * frame + 20;
        bytes[at] ^= 0x10;
        std::fs::write(&path, &bytes).unwrap();
        let (got, result) = read_all(&path, &run);
        assert_eq!(got, vec![1, 2, 3]);
        match result {
            Err(ReadFailure::Seal(SealError::Damaged {
                record, readable, ..
            })) => assert_eq!((record, readable), (4, 3)),
            other => panic!("{other:?}"),
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
