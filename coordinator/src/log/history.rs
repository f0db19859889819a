//! Reading past (and running) runs back into a fold: what `runs`, `report`,
//! `replay`, `compare` and `export` stand on.
//!
//! A finished run's sled database is opened directly. A running one is locked
//! by the coordinator writing it, so its records are streamed from that
//! coordinator's `ReadLog` RPC at the address it left in the run directory,
//! over TLS pinned to the certificate in the same data directory. Either way
//! the records go through the same fold.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use fleetbench::pb;
use fleetbench_fold::{Filter, Fold};
use prost::Message;

use super::event_log::{EventLog, LogError, list_runs, run_dir};

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

/// Hands every record of a run to `sink` with its log sequence number, in
/// log order: from the database directly, or, while a coordinator holds it,
/// through that coordinator. Returns whether the run is live. The one way
/// runs are read back: folds and `export --events` alike.
pub(crate) async fn scan(
    data_dir: &Path,
    run_id: &str,
    sink: &mut dyn FnMut(u64, &pb::LogRecord) -> Result<()>,
) -> Result<bool> {
    // Retry briefly: another reader (a second `report`) may hold the lock.
    let mut tries = 0;
    loop {
        // sled reads block; this runtime has other threads to carry on.
        let direct = tokio::task::block_in_place(|| -> Result<(), ScanError> {
            let log = EventLog::open(data_dir, run_id).map_err(ScanError::Log)?;
            for item in log.scan() {
                let (lsn, rec) = item.map_err(ScanError::Log)?;
                sink(lsn, &rec).map_err(ScanError::Sink)?;
            }
            Ok(())
        });
        match direct {
            Ok(()) => return Ok(false),
            Err(ScanError::Log(LogError::Locked { .. })) => {
                let mut delivered = 0u64;
                let mut counted = |lsn: u64, rec: &pb::LogRecord| {
                    delivered += 1;
                    sink(lsn, rec)
                };
                match read_live(data_dir, run_id, false, &mut counted).await {
                    Ok(()) => return Ok(true),
                    // Part of the run went to the sink already: a retry
                    // would hand it over twice.
                    Err(e) if delivered > 0 => {
                        return Err(
                            e.context(format!("reading run {run_id} through its coordinator"))
                        );
                    }
                    Err(e) if tries >= 20 => {
                        return Err(e.context(format!(
                            "run {run_id} is locked by another process and its coordinator does not answer"
                        )));
                    }
                    Err(_) => {}
                }
            }
            Err(ScanError::Log(e)) => return Err(e.into()),
            Err(ScanError::Sink(e)) => return Err(e),
        }
        tries += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

enum ScanError {
    Log(LogError),
    Sink(anyhow::Error),
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
