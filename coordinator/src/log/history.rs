//! Reading past (and running) runs back into a fold: what `runs`, `report`,
//! `replay`, `compare` and `export` stand on.
//!
//! Reading never writes to a run: a finished run is read from its sealed
//! file; a running one is locked by the coordinator writing it, so its
//! records are streamed from that coordinator's `ReadLog` RPC at the
//! address it left in the run directory, over TLS pinned to the
//! certificate in the same data directory; a run never sealed is read
//! from a copy. Every way the records go through the same fold.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use fleetbench::pb;
use fleetbench_fold::{Filter, Fold};
use prost::Message;

use super::event_log::{EventLog, list_runs, run_dir};
use super::sealed::{self, ReadFailure, SEALED, SealError};

/// A run folded from its log.
pub(crate) struct Loaded {
    pub fold: Fold,
    /// A coordinator is still writing the run.
    pub live: bool,
}

/// Resolves `latest`, a full run id, or a unique prefix of one.
pub(crate) fn resolve(data_dir: &Path, which: &str) -> Result<String> {
    let runs =
        list_runs(data_dir).with_context(|| format!("listing runs in {}", data_dir.display()))?;
    if runs.is_empty() {
        bail!("no runs in {}", data_dir.display());
    }
    if which == "latest" {
        return Ok(runs.last().expect("not empty").clone());
    }
    let matches: Vec<&String> = runs.iter().filter(|r| r.starts_with(which)).collect();
    match matches.as_slice() {
        [one] => Ok((*one).clone()),
        [] => bail!(
            "no run {which:?} in {} (see `coordinator runs`)",
            data_dir.display()
        ),
        many => bail!("{which:?} matches {} runs; give more of the id", many.len()),
    }
}

/// The creation time of a run id (a UUIDv7), Unix microseconds.
pub(crate) fn id_time_us(run_id: &str) -> Option<i64> {
    let (secs, nanos) = uuid::Uuid::parse_str(run_id)
        .ok()?
        .get_timestamp()?
        .to_unix();
    i64::try_from(secs)
        .ok()?
        .checked_mul(1_000_000)?
        .checked_add(i64::from(nanos / 1000))
}

/// Folds a run, directly or through the coordinator that is writing it.
pub(crate) async fn load(data_dir: &Path, run_id: &str) -> Result<Loaded> {
    load_filtered(data_dir, run_id, Filter::default()).await
}

/// Folds a run keeping only what `filter` admits.
pub(crate) async fn load_filtered(data_dir: &Path, run_id: &str, filter: Filter) -> Result<Loaded> {
    load_into(data_dir, run_id, Fold::with_filter(filter)).await
}

/// Applies every record of a run to `fold` (a fresh one, set up as the
/// caller needs: filtered, keeping agent windows).
pub(crate) async fn load_into(data_dir: &Path, run_id: &str, mut fold: Fold) -> Result<Loaded> {
    let live = scan(data_dir, run_id, &mut |_, rec| {
        fold.apply(rec);
        Ok(())
    })
    .await?;
    if fold.run.is_none() {
        bail!("run {run_id} has an empty log (its coordinator died before writing)");
    }
    Ok(Loaded { fold, live })
}

/// A run whose log is damaged: what it says, with where, is in `detail`.
/// Numbers folded from it are not the run's: callers print none (exit 4).
#[derive(Debug, thiserror::Error)]
#[error("run {run_id} is damaged: {detail}")]
pub(crate) struct Damaged {
    pub run_id: String,
    pub detail: String,
}

/// Hands every record of a run to `sink` with its log sequence number, in
/// log order, without writing to the run's files. Returns whether the run
/// is live. The one way runs are read back: folds, `export --events` and
/// `verify` alike.
///
/// - A sealed run (every run its coordinator finished) is read from its
///   sealed file, checked whole on the way (`log::sealed`).
/// - A run a coordinator holds is read through that coordinator.
/// - A run never sealed (its coordinator was killed) is read from a copy
///   of its database in a temporary directory: sled's recovery then
///   rewrites the copy, never the run.
///
/// A damaged log is a [`Damaged`] error; the records before the damage
/// have gone to `sink`.
pub(crate) async fn scan(
    data_dir: &Path,
    run_id: &str,
    sink: &mut dyn FnMut(u64, &pb::LogRecord) -> Result<()>,
) -> Result<bool> {
    let dir = run_dir(data_dir, run_id);
    let uuid =
        uuid::Uuid::parse_str(run_id).with_context(|| format!("{run_id:?} is not a run id"))?;
    // Retry briefly: between its last write and its seal, a finishing
    // coordinator holds the log but no longer answers.
    let mut tries = 0;
    loop {
        let sealed_path = dir.join(SEALED);
        if sealed_path.exists() {
            let read =
                tokio::task::block_in_place(|| sealed::read(&sealed_path, uuid.as_bytes(), sink));
            return match read {
                Ok(_) => Ok(false),
                Err(ReadFailure::Sink(e)) => Err(e),
                Err(ReadFailure::Seal(e @ SealError::Damaged { .. })) => Err(Damaged {
                    run_id: run_id.to_string(),
                    detail: e.to_string(),
                }
                .into()),
                Err(ReadFailure::Seal(e)) => Err(e.into()),
            };
        }
        let db = dir.join("log").join("db");
        if !db.exists() {
            bail!(
                "run {run_id} has no log: neither {} nor {} exists",
                sealed_path.display(),
                db.display()
            );
        }
        if !held(&db)? {
            tokio::task::block_in_place(|| read_copy(data_dir, run_id, sink))?;
            return Ok(false);
        }
        let mut delivered = 0u64;
        let mut counted = |lsn: u64, rec: &pb::LogRecord| {
            delivered += 1;
            sink(lsn, rec)
        };
        match read_live(data_dir, run_id, false, &mut counted).await {
            Ok(()) => return Ok(true),
            // Part of the run went to the sink already: a retry would hand
            // it over twice.
            Err(e) if delivered > 0 => {
                return Err(e.context(format!("reading run {run_id} through its coordinator")));
            }
            Err(e) if tries >= 20 => {
                return Err(e.context(format!(
                    "run {run_id} is locked by another process and its coordinator does not answer"
                )));
            }
            Err(_) => {}
        }
        tries += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Whether a process holds the sled database `db` (sled locks it while
/// open): tested with a shared lock that is let go at once, on a
/// read-only descriptor.
fn held(db: &Path) -> Result<bool> {
    use nix::fcntl::{Flock, FlockArg};
    let file = std::fs::File::open(db).with_context(|| format!("opening {}", db.display()))?;
    match Flock::lock(file, FlockArg::LockSharedNonblock) {
        Ok(lock) => {
            drop(lock);
            Ok(false)
        }
        Err((_, nix::errno::Errno::EWOULDBLOCK)) => Ok(true),
        Err((_, e)) => Err(anyhow!("locking {} to test it: {e}", db.display())),
    }
}

/// Reads a run that was never sealed from a copy of its database (sled
/// rewrites what it opens), checking that no record is missing.
fn read_copy(
    data_dir: &Path,
    run_id: &str,
    sink: &mut dyn FnMut(u64, &pb::LogRecord) -> Result<()>,
) -> Result<()> {
    let copy = TempCopy::of(&run_dir(data_dir, run_id).join("log"), run_id)?;
    let log = EventLog::open(&copy.data_dir, run_id)?;
    for (expected, item) in (1u64..).zip(log.scan()) {
        let (lsn, rec) = match item {
            Ok(item) => item,
            Err(e) => {
                return Err(Damaged {
                    run_id: run_id.to_string(),
                    detail: format!(
                        "{:#} (its coordinator did not seal it; {} record(s) before read whole)",
                        anyhow::Error::new(e),
                        expected - 1
                    ),
                }
                .into());
            }
        };
        if lsn != expected {
            return Err(Damaged {
                run_id: run_id.to_string(),
                detail: format!(
                    "its log lacks record {expected} (the next is {lsn}); {} record(s) before read whole",
                    expected - 1
                ),
            }
            .into());
        }
        sink(lsn, &rec)?;
    }
    Ok(())
}

/// A copy of a run's `log/` directory under the system's temporary
/// directory, laid out as a data directory; removed when dropped.
struct TempCopy {
    data_dir: std::path::PathBuf,
}

impl TempCopy {
    fn of(log: &Path, run_id: &str) -> Result<TempCopy> {
        let data_dir =
            std::env::temp_dir().join(format!("fleetbench-read-{}", uuid::Uuid::now_v7()));
        let copy = TempCopy { data_dir };
        let to = run_dir(&copy.data_dir, run_id).join("log");
        copy_dir(log, &to).with_context(|| {
            format!(
                "copying the unsealed log {} to {} to read it",
                log.display(),
                to.display()
            )
        })?;
        Ok(copy)
    }
}

impl Drop for TempCopy {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.data_dir);
    }
}

fn copy_dir(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}

/// Streams a running run's records from its coordinator to `visit`, in log
/// order; with `follow`, keeps going as records are logged, until the run
/// ends (`replay --follow`).
pub(crate) async fn stream_live(
    data_dir: &Path,
    run_id: &str,
    follow: bool,
    mut visit: impl FnMut(pb::LogRecord),
) -> Result<()> {
    read_live(data_dir, run_id, follow, &mut |_, rec| {
        visit(rec.clone());
        Ok(())
    })
    .await
}

/// Every record of a finished run, in log order (`replay --speed`); an
/// error for a run still being written.
pub(crate) async fn records(data_dir: &Path, run_id: &str) -> Result<Vec<pb::LogRecord>> {
    let mut out = Vec::new();
    let live = scan(data_dir, run_id, &mut |_, rec| {
        out.push(rec.clone());
        Ok(())
    })
    .await?;
    if live {
        bail!("run {run_id} is still running");
    }
    Ok(out)
}

async fn read_live(
    data_dir: &Path,
    run_id: &str,
    follow: bool,
    sink: &mut dyn FnMut(u64, &pb::LogRecord) -> Result<()>,
) -> Result<()> {
    let addr_file = run_dir(data_dir, run_id).join("coordinator.addr");
    let addr = std::fs::read_to_string(&addr_file)
        .with_context(|| format!("reading {}", addr_file.display()))?;
    let dialer = fleetbench::tls::Dialer::new(&crate::trust::existing_fingerprint(data_dir)?)?;
    let endpoint =
        fleetbench::tls::Dialer::endpoint(addr.trim())?.connect_timeout(Duration::from_secs(2));
    let channel = dialer
        .connect(&endpoint)
        .await
        .with_context(|| format!("connecting to the running coordinator at {}", addr.trim()))?;
    let mut client = pb::coordinator_client::CoordinatorClient::new(channel)
        .max_decoding_message_size(256 << 20);
    let mut stream = client
        .read_log(pb::ReadLogRequest {
            run_id: run_id.to_string(),
            from_lsn: 1,
            follow,
        })
        .await?
        .into_inner();
    while let Some(batch) = stream.message().await? {
        for (lsn, bytes) in batch.lsns.iter().zip(&batch.records) {
            let rec = pb::LogRecord::decode(&bytes[..])
                .map_err(|e| anyhow!("record {lsn} of run {run_id} does not decode: {e}"))?;
            sink(*lsn, &rec)?;
        }
        if batch.finished {
            break;
        }
    }
    Ok(())
}
