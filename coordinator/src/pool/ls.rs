//! `coordinator pool ls [NAME]`: each pool and agent, as seen now (when no
//! one serves the pool, we serve its port for a while to see who dials in)
//! or as last recorded (when a run holds it).

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use anyhow::Result;

use super::lookout::Lookout;
use super::record::{Pool, pools_dir};
use crate::agent_binary;
use crate::cli::LsArgs;
use crate::error::BadInput;
use crate::hub::{self, AgentState};
use crate::output::outln;
use crate::trust::Trust;

/// Agents seen live (since the instant we began to look), if we could look.
type Live = Option<(BTreeMap<String, AgentState>, i64)>;

/// `coordinator pool ls [NAME]`. When no coordinator serves a pool, it
/// serves the pool's port for up to `wait` (pool agents dial at least once a
/// second) to see who is up; when one does (a run), it shows what that
/// coordinator last recorded.
pub(crate) async fn ls(data_dir: &Path, args: LsArgs) -> Result<()> {
    let names = match args.name {
        Some(n) => vec![n],
        None => Pool::names(data_dir)?,
    };
    if names.is_empty() {
        outln!(
            "no pools in {} (make one with `coordinator pool up NAME --hosts ...`)",
            pools_dir(data_dir).display()
        )?;
        return Ok(());
    }
    let local_hash = match agent_binary::local(None).await {
        Ok(b) => Some(b.hash),
        Err(_) => None,
    };
    let trust = Trust::load_or_create(data_dir)?;
    for name in names {
        let pool = Pool::load(data_dir, &name).map_err(BadInput)?;
        let (live, held_by) = look(data_dir, &pool, &trust, args.wait).await?;
        outln!(
            "pool {} (listens on {}, {} agent(s), lease {})",
            pool.name(),
            pool.record.listen,
            pool.record.agents.len(),
            pool.lease()
        )?;
        if let Some(why) = held_by {
            outln!("  {why}; showing the agents as last seen")?;
        }
        print_agents(&pool, &live, local_hash.as_deref())?;
    }
    Ok(())
}

/// Serves the pool's port for up to `wait` to see who dials in, unless
/// someone else holds the pool: then who, instead.
async fn look(
    data_dir: &Path,
    pool: &Pool,
    trust: &Trust,
    wait: Duration,
) -> Result<(Live, Option<String>)> {
    match pool.hold("pool ls") {
        Ok(holder) => {
            let lookout = Lookout::start(data_dir, pool, trust).await?;
            let ids: Vec<String> = pool.record.agents.iter().map(|m| m.id.clone()).collect();
            let since = fleetbench::clock::now_us();
            lookout.wait_seen(&ids, since, None, wait).await;
            let states = lookout.hub.agents();
            pool.note_seen(&states);
            lookout.stop().await;
            drop(holder);
            Ok((Some((states, since)), None))
        }
        Err(e) => Ok((None, Some(format!("{e:#}")))),
    }
}

/// The table of a pool's agents.
fn print_agents(pool: &Pool, live: &Live, local_hash: Option<&str>) -> std::io::Result<()> {
    let seen = pool.seen();
    let now = fleetbench::clock::now_us();
    outln!(
        "  {:<32} {:<24} {:<16} {:<10} {:<20} {:<10} {:>10} {:>10}",
        "agent",
        "host",
        "labels",
        "version",
        "binary",
        "state",
        "last seen",
        "uptime"
    )?;
    for m in &pool.record.agents {
        let s = seen.get(&m.id);
        let state = match live {
            Some((states, since)) => {
                if states.get(&m.id).is_some_and(|s| s.seen_at_us >= *since) {
                    "attached"
                } else {
                    "not seen"
                }
            }
            None => "?",
        };
        let hash = s
            .map(|s| s.binary_hash.as_str())
            .or(m.binary_hash.as_deref());
        let binary = match (hash, local_hash) {
            (Some(h), Some(l)) if h != l => format!("{} STALE", hub::short(h)),
            (Some(h), _) => hub::short(h).to_string(),
            (None, _) => "-".into(),
        };
        let ago = |us: i64| age((now - us).max(0));
        outln!(
            "  {:<32} {:<24} {:<16} {:<10} {:<20} {:<10} {:>10} {:>10}",
            m.id,
            m.host.as_deref().unwrap_or("(enrolled)"),
            show_labels(&m.labels),
            s.map_or("-", |s| s.agent_version.as_str()),
            binary,
            state,
            s.map_or_else(|| "never".into(), |s| format!("{} ago", ago(s.seen_at_us))),
            s.filter(|s| s.started_at_us > 0)
                .map_or_else(|| "-".into(), |s| ago(s.started_at_us)),
        )?;
    }
    Ok(())
}

fn show_labels(labels: &BTreeMap<String, String>) -> String {
    if labels.is_empty() {
        return "-".into();
    }
    labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// A span of time as people say it: 850ms, 42s, 16m45s, 3h02m, 5d04h.
fn age(us: i64) -> String {
    let s = us / 1_000_000;
    match s {
        0 => format!("{}ms", us / 1000),
        1..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        3600..86400 => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d{:02}h", s / 86400, s % 86400 / 3600),
    }
}

#[cfg(test)]
mod tests {
    use super::age;

    #[test]
    fn ages_read_well() {
        assert_eq!(age(850_000), "850ms");
        assert_eq!(age(42_000_000), "42s");
        assert_eq!(age(1_005_000_000), "16m45s");
        assert_eq!(age(10_920_000_000), "3h02m");
    }
}
