//! Reading past (and running) runs back into a fold: what `runs` and
//! `report` stand on.
//!
//! A finished run's sled database is opened directly. A running one is locked
//! by the coordinator writing it, so its records are streamed from that
//! coordinator's `ReadLog` RPC at the address it left in the run directory,
//! over TLS pinned to the certificate in the same data directory. Either way
//! the records go through the same fold.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use fleetbench::fold::{Filter, Fold};
use fleetbench::pb;
use prost::Message;

use crate::log::{EventLog, LogError, list_runs, run_dir};

/// A run folded from its log.
pub struct Loaded {
    pub fold: Fold,
    /// A coordinator is still writing the run.
    pub live: bool,
}

/// Resolves `latest`, a full run id, or a unique prefix of one.
pub fn resolve(data_dir: &Path, which: &str) -> Result<String> {
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

/// Folds a run, directly or through the coordinator that is writing it.
pub async fn load(data_dir: &Path, run_id: &str) -> Result<Loaded> {
    load_filtered(data_dir, run_id, Filter::default()).await
}

/// Folds a run keeping only what `filter` admits.
pub async fn load_filtered(data_dir: &Path, run_id: &str, filter: Filter) -> Result<Loaded> {
    let dir = data_dir.to_path_buf();
    let id = run_id.to_string();
    // Retry briefly: another reader (a second `report`) may hold the lock.
    let mut tries = 0;
    loop {
        let (dir, id, f) = (dir.clone(), id.clone(), filter.clone());
        let direct = tokio::task::spawn_blocking(move || -> Result<Fold, LogError> {
            let log = EventLog::open(&dir, &id)?;
            let mut fold = Fold::with_filter(f);
            for item in log.scan() {
                let (_, rec) = item?;
                fold.apply(&rec);
            }
            Ok(fold)
        })
        .await?;
        match direct {
            Ok(fold) => {
                if fold.run.is_none() {
                    bail!("run {run_id} has an empty log (its coordinator died before writing)");
                }
                return Ok(Loaded { fold, live: false });
            }
            Err(LogError::Locked { .. }) => match read_live(data_dir, run_id, filter.clone()).await
            {
                Ok(fold) => return Ok(Loaded { fold, live: true }),
                Err(e) if tries >= 20 => {
                    return Err(e.context(format!(
                            "run {run_id} is locked by another process and its coordinator does not answer"
                        )));
                }
                Err(_) => {}
            },
            Err(e) => return Err(e.into()),
        }
        tries += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn read_live(data_dir: &Path, run_id: &str, filter: Filter) -> Result<Fold> {
    let mut fold = Fold::with_filter(filter);
    stream_live(data_dir, run_id, false, |rec| fold.apply(&rec)).await?;
    Ok(fold)
}

/// Streams a running run's records from its coordinator to `visit`, in log
/// order; with `follow`, keeps going as records are logged, until the run
/// ends.
pub async fn stream_live(
    data_dir: &Path,
    run_id: &str,
    follow: bool,
    mut visit: impl FnMut(pb::LogRecord),
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
            visit(rec);
        }
        if batch.finished {
            break;
        }
    }
    Ok(())
}

/// Every record of a finished run, in log order (the sled log, directly).
pub async fn records(data_dir: &Path, run_id: &str) -> Result<Vec<pb::LogRecord>> {
    let (dir, id) = (data_dir.to_path_buf(), run_id.to_string());
    let out = tokio::task::spawn_blocking(move || -> Result<Vec<pb::LogRecord>, LogError> {
        let log = EventLog::open(&dir, &id)?;
        log.scan().map(|item| item.map(|(_, rec)| rec)).collect()
    })
    .await??;
    Ok(out)
}
