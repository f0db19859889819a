//! The event log: append-only, one sled database per run.
//!
//! Layout of the data directory:
//!
//! ```text
//! DATA/runs/<run id>/log/            sled database of that run
//! DATA/runs/<run id>/coordinator.addr  gRPC address of the coordinator writing it (while it runs)
//! DATA/runs/<run id>/agents/*.log    stderr of local agent processes
//! ```
//!
//! One database per run because sled is locked by the one process that opens
//! it: a running coordinator holds only its own run, so `runs` and `report`
//! read every other run directly and read the running one through that
//! coordinator's `ReadLog` RPC.
//!
//! Keys are run id (16 bytes, UUIDv7) ++ log sequence number (u64 big-endian),
//! so key order is append order and a run is one prefix scan. Values are
//! encoded `pb::LogRecord`s. The API offers `append`, `flush`, `scan` and
//! `scan_from`: there is no update and no delete.

use std::path::{Path, PathBuf};

use fleetbench::pb;
use prost::Message;
use uuid::Uuid;

use super::sealed::{SEALED, Seal};

#[derive(Debug, thiserror::Error)]
pub(crate) enum LogError {
    #[error("opening event log at {path}")]
    Open {
        path: PathBuf,
        #[source]
        source: sled::Error,
    },
    #[error("event log at {path} is in use by another process (a running coordinator)")]
    Locked { path: PathBuf },
    #[error("writing event log at {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: sled::Error,
    },
    #[error("reading event log at {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: sled::Error,
    },
    #[error("record {lsn} of the event log at {path} does not decode")]
    Decode {
        path: PathBuf,
        lsn: u64,
        #[source]
        source: prost::DecodeError,
    },
    #[error("{path} holds no run")]
    Empty { path: PathBuf },
}

/// The directory of one run under a data directory.
pub(crate) fn run_dir(data_dir: &Path, run_id: &str) -> PathBuf {
    data_dir.join("runs").join(run_id)
}

/// Run ids under a data directory, oldest first (UUIDv7 sorts by time).
pub(crate) fn list_runs(data_dir: &Path) -> std::io::Result<Vec<String>> {
    let dir = data_dir.join("runs");
    let mut ids = Vec::new();
    match std::fs::read_dir(&dir) {
        Ok(entries) => {
            for entry in entries {
                let entry = entry?;
                let name = entry.file_name().to_string_lossy().into_owned();
                let path = entry.path();
                if Uuid::parse_str(&name).is_ok()
                    && (path.join("log").is_dir() || path.join(SEALED).is_file())
                {
                    ids.push(name);
                }
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    ids.sort();
    Ok(ids)
}

/// Seals run `run_id`: writes its records, as its log holds them now, to
/// `sealed.log` in its directory (`log::sealed`), which readers then read
/// instead of the database. Called by the process that wrote the log, once
/// it is closed (the log must not be held elsewhere).
pub(crate) fn seal(data_dir: &Path, run_id: &str) -> anyhow::Result<Seal> {
    EventLog::open(data_dir, run_id)?.reader.seal()
}

/// The writer of a run's log.
pub(crate) struct EventLog {
    reader: LogReader,
    next_lsn: u64,
}

/// A reader of a run's log; cheap to clone, usable while the writer appends.
#[derive(Clone)]
pub(crate) struct LogReader {
    db: sled::Db,
    path: PathBuf,
    prefix: [u8; 16],
}

impl EventLog {
    /// Opens (creating if need be) the log of `run_id` under `data_dir`.
    pub(crate) fn open(data_dir: &Path, run_id: &str) -> Result<EventLog, LogError> {
        let path = run_dir(data_dir, run_id).join("log");
        let uuid = Uuid::parse_str(run_id).map_err(|_| LogError::Empty { path: path.clone() })?;
        let db = sled::Config::new()
            .path(&path)
            .mode(sled::Mode::LowSpace)
            .open()
            .map_err(|source| match &source {
                sled::Error::Io(io) if io.to_string().contains("could not acquire lock") => {
                    LogError::Locked { path: path.clone() }
                }
                _ => LogError::Open {
                    path: path.clone(),
                    source,
                },
            })?;
        let prefix = *uuid.as_bytes();
        let next_lsn = match db.scan_prefix(prefix).next_back() {
            Some(Ok((key, _))) => lsn_of(&key) + 1,
            Some(Err(source)) => {
                return Err(LogError::Read { path, source });
            }
            None => 1,
        };
        Ok(EventLog {
            reader: LogReader { db, path, prefix },
            next_lsn,
        })
    }

    pub(crate) fn reader(&self) -> LogReader {
        self.reader.clone()
    }

    /// Appends records (not yet durable: call [`EventLog::flush`]); returns
    /// the log sequence number of the first.
    pub(crate) fn append(&mut self, records: &[pb::LogRecord]) -> Result<u64, LogError> {
        let first = self.next_lsn;
        let mut batch = sled::Batch::default();
        for (i, rec) in records.iter().enumerate() {
            batch.insert(&self.reader.key(first + i as u64)[..], rec.encode_to_vec());
        }
        self.reader
            .db
            .apply_batch(batch)
            .map_err(|source| LogError::Write {
                path: self.reader.path.clone(),
                source,
            })?;
        self.next_lsn += records.len() as u64;
        Ok(first)
    }

    /// Makes everything appended so far durable.
    pub(crate) async fn flush(&self) -> Result<(), LogError> {
        self.reader
            .db
            .flush_async()
            .await
            .map(|_| ())
            .map_err(|source| LogError::Write {
                path: self.reader.path.clone(),
                source,
            })
    }

    /// Every record of the run, in append order.
    pub(crate) fn scan(&self) -> impl Iterator<Item = Result<(u64, pb::LogRecord), LogError>> + '_ {
        self.reader.scan_from(1)
    }

    /// The next log sequence number to be assigned.
    pub(crate) fn next_lsn(&self) -> u64 {
        self.next_lsn
    }
}

impl LogReader {
    /// Records with `lsn >= from`, in append order.
    pub(crate) fn scan_from(
        &self,
        from: u64,
    ) -> impl Iterator<Item = Result<(u64, pb::LogRecord), LogError>> + '_ {
        let start = self.key(from.max(1));
        let end = self.key(u64::MAX);
        self.db.range(start..=end).map(move |item| {
            let (key, value) = item.map_err(|source| LogError::Read {
                path: self.path.clone(),
                source,
            })?;
            let lsn = lsn_of(&key);
            let rec = pb::LogRecord::decode(&value[..]).map_err(|source| LogError::Decode {
                path: self.path.clone(),
                lsn,
                source,
            })?;
            Ok((lsn, rec))
        })
    }

    /// Seals the run (see [`seal`]) from this handle: for the process that
    /// wrote the log, once nothing appends to it any more.
    pub(crate) fn seal(&self) -> anyhow::Result<Seal> {
        use anyhow::Context;
        let dir = self.path.parent().unwrap_or(Path::new("."));
        super::sealed::write(dir, &self.prefix, self.scan_raw())
            .with_context(|| format!("sealing the run into {}", dir.join(SEALED).display()))
    }

    /// Every record of the run as stored (lsn, encoded bytes), in order.
    fn scan_raw(&self) -> impl Iterator<Item = std::io::Result<(u64, Vec<u8>)>> + '_ {
        self.db.scan_prefix(self.prefix).map(|item| {
            let (key, value) = item.map_err(std::io::Error::other)?;
            Ok((lsn_of(&key), value.to_vec()))
        })
    }

    fn key(&self, lsn: u64) -> [u8; 24] {
        let mut key = [0u8; 24];
        key[..16].copy_from_slice(&self.prefix);
        key[16..].copy_from_slice(&lsn.to_be_bytes());
        key
    }
}

fn lsn_of(key: &[u8]) -> u64 {
    let mut b = [0u8; 8];
    if key.len() >= 24 {
        b.copy_from_slice(&key[16..24]);
    }
    u64::from_be_bytes(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn notice(text: &str) -> pb::LogRecord {
        pb::LogRecord {
            logged_at_us: 1,
            record: Some(pb::log_record::Record::Notice(pb::CoordinatorNotice {
                level: "info".into(),
                message: text.into(),
                agent_id: String::new(),
            })),
        }
    }

    #[tokio::test]
    async fn appends_scan_back_in_order_and_survive_reopen() {
        let dir = tempdir();
        let run = Uuid::now_v7().to_string();
        {
            let mut log = EventLog::open(&dir, &run).unwrap();
            assert_eq!(log.append(&[notice("a"), notice("b")]).unwrap(), 1);
            assert_eq!(log.append(&[notice("c")]).unwrap(), 3);
            log.flush().await.unwrap();
            // Held open: a second opener is told the log is locked.
            assert!(matches!(
                EventLog::open(&dir, &run),
                Err(LogError::Locked { .. })
            ));
        }
        let log = EventLog::open(&dir, &run).unwrap();
        assert_eq!(log.next_lsn(), 4);
        let got: Vec<u64> = log.scan().map(|r| r.unwrap().0).collect();
        assert_eq!(got, vec![1, 2, 3]);
        let from2: Vec<u64> = log.reader().scan_from(2).map(|r| r.unwrap().0).collect();
        assert_eq!(from2, vec![2, 3]);
        assert_eq!(list_runs(&dir).unwrap(), vec![run]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    fn tempdir() -> PathBuf {
        let d = std::env::temp_dir().join(format!("fleetbench-log-test-{}", Uuid::now_v7()));
        std::fs::create_dir_all(&d).unwrap();
        d
    }
}
