//! The agent binary this coordinator starts and ships: found by flag,
//! `$FLEETBENCH_AGENT` or beside this executable, then hashed (its hash
//! names it on the hosts and is what pool agents are checked against).
//!
//! Shipping it is `bootstrap`'s; this module only finds and measures it.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow};

use crate::error::BadInput;
use crate::hosts::bootstrap::AgentBinary;

/// The agent binary: the flag, $FLEETBENCH_AGENT, or `agent` beside this
/// executable.
pub(crate) fn find(flag: Option<&Path>) -> Result<PathBuf> {
    let path = match flag {
        Some(p) => p.to_path_buf(),
        None => match std::env::var_os("FLEETBENCH_AGENT") {
            Some(p) => PathBuf::from(p),
            None => std::env::current_exe()
                .context("locating this executable")?
                .with_file_name("agent"),
        },
    };
    if !path.is_file() {
        return Err(anyhow!(
            "agent binary not found at {} (build it with `cargo build --release -p agent`, or pass --agent-binary)",
            path.display()
        ));
    }
    Ok(path)
}

/// The agent binary to ship, hashed; one not found is bad input.
pub(crate) async fn local(flag: Option<&Path>) -> Result<AgentBinary> {
    let path = find(flag).map_err(BadInput)?;
    let hash = {
        let p = path.clone();
        tokio::task::spawn_blocking(move || fleetbench::binary::file_hash(&p))
            .await?
            .with_context(|| format!("hashing agent binary {}", path.display()))?
    };
    let size = std::fs::metadata(&path)
        .with_context(|| format!("reading {}", path.display()))?
        .len();
    Ok(AgentBinary {
        path,
        hash,
        size,
        arch: std::env::consts::ARCH.to_string(),
    })
}
