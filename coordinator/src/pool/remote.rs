//! What the pool commands do on a host: the shell snippets (find a pool
//! agent by its credentials file, stop it, start it detached), the paths of
//! a pool agent's files there, and running one host's step in an SSH
//! session opened and closed around it.
//!
//! Bootstrapping itself (probe, upload, exec check) is `bootstrap`'s.

use std::time::Duration;

use anyhow::Result;
use indicatif::ProgressBar;

use super::record::Record;
use crate::hosts::bootstrap::{
    self, AgentBinary, BootstrapError, Step, Timeouts, remote_path, sh_quote,
};
use crate::hosts::fleet;
use crate::hosts::ssh::{self, Target};

/// What a pool command needs on every host (cloned into each host's task).
#[derive(Clone)]
pub(crate) struct PoolHosts {
    pub ssh: ssh::Options,
    /// The local agent binary (shipped by `up` and `upgrade`).
    pub binary: AgentBinary,
    pub record: Record,
    pub timeouts: Timeouts,
}

/// One host's task of a pool command.
pub(crate) struct OnHost {
    pub target: Target,
    pub bar: ProgressBar,
    pub pool: PoolHosts,
}

impl OnHost {
    /// Opens an SSH session to the host, runs `work` in it, and closes the
    /// session whatever happened.
    pub(crate) async fn in_session<T>(
        &self,
        work: impl AsyncFnOnce(&ssh::Session) -> Result<T, BootstrapError>,
    ) -> Result<T, BootstrapError> {
        let p = &self.pool;
        let session =
            bootstrap::open(&self.target, &p.ssh, &p.timeouts, &p.binary, &self.bar).await?;
        let result = work(&session).await;
        session.close().await;
        result
    }

    /// `failed` for this host.
    pub(crate) fn failed(&self, step: Step, reason: String) -> BootstrapError {
        step_failed(&self.target, step, reason)
    }
}

/// Runs `step` on each of `hosts`, at most `parallel` at once, each with a
/// progress bar; results in the order of `hosts`.
pub(crate) async fn each_host<T, Fut>(
    hosts: Vec<Target>,
    parallel: usize,
    pool: PoolHosts,
    step: impl Fn(OnHost) -> Fut,
) -> Vec<(Target, Result<T, BootstrapError>)>
where
    T: Send + 'static,
    Fut: std::future::Future<Output = Result<T, BootstrapError>> + Send + 'static,
{
    fleet::each_host(hosts, parallel, move |target, bar| {
        step(OnHost {
            target,
            bar,
            pool: pool.clone(),
        })
    })
    .await
}

/// Finds the agents started with the credentials file `creds` (a shell
/// word), or with any under the directory `creds` when it ends in `/`, on a
/// host: a shell snippet setting `$pids`.
pub(crate) fn find_agents_sh(creds: &str) -> String {
    let end = if creds.ends_with('/') { "" } else { " " };
    format!(
        "pids=''; pat={creds}; for p in /proc/[0-9]*; do c=$(tr '\\0' ' ' < $p/cmdline 2>/dev/null) || continue; \
         case \"$c\" in *\" attach --credentials $pat{end}\"*) pids=\"$pids ${{p#/proc/}}\";; esac; done; "
    )
}

/// Stops the processes in `$pids` (TERM, then KILL after 5 s).
pub(crate) const STOP_PIDS_SH: &str = "if [ -n \"$pids\" ]; then kill $pids 2>/dev/null; i=0; \
     while [ $i -lt 50 ]; do alive=''; for p in $pids; do [ -d /proc/$p ] && alive=\"$alive $p\"; done; \
     [ -z \"$alive\" ] && break; sleep 0.1; i=$((i+1)); done; \
     [ -n \"$alive\" ] && kill -9 $alive 2>/dev/null; fi; ";

/// Starts an agent detached: the last command of a script, printing its pid.
pub(crate) fn start_agent_sh(bin: &str, creds: &str, log: &str, lease: &str) -> String {
    format!(
        "if command -v setsid >/dev/null 2>&1; then d=setsid; else d=nohup; fi; \
         $d {bin} attach --credentials {creds} --lease {lease} </dev/null >{log} 2>&1 & echo $!"
    )
}

/// Paths of one pool agent on a host, as shell words.
pub(crate) struct AgentPaths {
    pub dir: String,
    pub creds: String,
    pub log: String,
}

pub(crate) fn agent_paths(remote_dir: &str, pool: &str, id: &str) -> AgentPaths {
    let dir = format!("{}/pools/{}", remote_path(remote_dir), sh_quote(pool));
    AgentPaths {
        creds: format!("{dir}/{}.creds", sh_quote(id)),
        log: format!("{dir}/{}.log", sh_quote(id)),
        dir,
    }
}

/// The shell word of the agent binary `hash` on a host.
pub(crate) fn binary_path(remote_dir: &str, hash: &str) -> String {
    format!("{}/bin/agent-{hash}", remote_path(remote_dir))
}

pub(crate) fn step_failed(host: &Target, step: Step, reason: String) -> BootstrapError {
    BootstrapError {
        host: host.to_string(),
        step,
        reason,
    }
}

/// Runs `script` on the host (with `stdin`, if any) within `limit`; a
/// non-zero exit is a failure of `step`.
pub(crate) async fn exec(
    session: &ssh::Session,
    step: Step,
    script: &str,
    stdin: Option<&[u8]>,
    limit: Duration,
) -> Result<ssh::Output, BootstrapError> {
    let mut input: &[u8] = stdin.unwrap_or_default();
    let reader: Option<&mut (dyn tokio::io::AsyncRead + Unpin + Send)> = if stdin.is_some() {
        Some(&mut input)
    } else {
        None
    };
    let run = session.exec(script, reader);
    let out = tokio::time::timeout(limit, run)
        .await
        .map_err(|_| {
            step_failed(
                &session.target,
                step,
                format!("timed out after {:.0}s", limit.as_secs_f64()),
            )
        })?
        .map_err(|e| step_failed(&session.target, step, e.to_string()))?;
    if !out.success() {
        return Err(step_failed(
            &session.target,
            step,
            format!("{}: {}", out.ended(), out.stderr_text()),
        ));
    }
    Ok(out)
}
