//! Turning a plain SSH host into agents: connect (host key checked first),
//! probe its OS and architecture, upload the static agent binary unless the
//! host already holds that exact build, check it executes there, then hand
//! each agent its credentials through stdin into a 0600 file and start it
//! detached, so it outlives the SSH session and dials back on its own.
//!
//! A host assumes nothing but a POSIX shell and `cat` (plus `uname`, `wc`,
//! `mkdir`, `chmod`, `mv`, `kill`, which every such shell has at hand).
//! Remote layout, under `remote_dir` (default `~/.fleetbench`):
//!
//! ```text
//! bin/agent-<sha256>         the agent, content-addressed; written to a temp name, then renamed
//! runs/<run>/<agent>.creds   credentials (0600, written from stdin)
//! runs/<run>/<agent>.log     the agent's stdout and stderr
//! ```
//!
//! Each step has its own timeout, and a failure names the host, the step and
//! the reason. Attaching (the agent dialing back) is watched by run control.

use std::path::PathBuf;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use fleetbench::credentials::Credentials;
use indicatif::ProgressBar;
use tokio::io::{AsyncRead, ReadBuf};

use super::ssh::{Options, Output, Session, Target};

/// The agent binary the coordinator ships.
#[derive(Debug, Clone)]
pub(crate) struct AgentBinary {
    pub path: PathBuf,
    pub hash: String,
    pub size: u64,
    /// `uname -m` of the hosts it runs on.
    pub arch: String,
}

/// A bootstrap step, as failures and progress name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Step {
    Connect,
    Probe,
    Upload,
    Verify,
    Start,
}

impl std::fmt::Display for Step {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Step::Connect => "connect",
            Step::Probe => "probe",
            Step::Upload => "upload",
            Step::Verify => "verify",
            Step::Start => "start",
        })
    }
}

#[derive(Debug, thiserror::Error)]
#[error("host {host}: {step} failed: {reason}")]
pub(crate) struct BootstrapError {
    pub host: String,
    pub step: Step,
    pub reason: String,
}

/// Per-step time limits.
#[derive(Debug, Clone)]
pub(crate) struct Timeouts {
    pub connect: Duration,
    pub probe: Duration,
    pub upload: Duration,
    pub start: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect: Duration::from_secs(10),
            probe: Duration::from_secs(10),
            upload: Duration::from_secs(300),
            start: Duration::from_secs(15),
        }
    }
}

/// What to deploy on one host.
pub(crate) struct HostJob {
    pub target: Target,
    pub ssh: Options,
    /// `~/...` or an absolute path on the host.
    pub remote_dir: String,
    /// (agent id, secret) of each agent to start there.
    pub agents: Vec<(String, String)>,
    pub run_id: String,
    pub fingerprint: String,
    /// host:port the agents dial; None: our address on this SSH connection
    /// and `grpc_port`.
    pub advertise: Option<String>,
    pub grpc_port: u16,
    pub timeouts: Timeouts,
}

/// A host with agents started on it.
pub(crate) struct Deployed {
    pub target: Target,
    /// (agent id, remote pid)
    pub agents: Vec<(String, u32)>,
    /// The agent binary was already there: nothing was uploaded.
    pub reused_binary: bool,
    pub uploaded_bytes: u64,
    pub session: Session,
    /// Shell word of the remote directory, and the run: to find this run's
    /// agents there again.
    pub dir: String,
    pub run_id: String,
}

/// Quotes a string for a POSIX shell.
pub(crate) fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// A remote directory as a shell word: `~/x` becomes `"$HOME"/'x'`.
pub(crate) fn remote_path(dir: &str) -> String {
    if dir == "~" {
        "\"$HOME\"".to_string()
    } else if let Some(rest) = dir.strip_prefix("~/") {
        format!("\"$HOME\"/{}", sh_quote(rest))
    } else {
        sh_quote(dir)
    }
}

/// Connects (host key first, then authentication) and probes the host:
/// it must run Linux on the architecture `binary` is built for.
pub(crate) async fn open(
    target: &Target,
    ssh: &Options,
    timeouts: &Timeouts,
    binary: &AgentBinary,
    bar: &ProgressBar,
) -> Result<Session, BootstrapError> {
    let host = target.to_string();
    let fail = |step: Step, reason: String| BootstrapError {
        host: host.clone(),
        step,
        reason,
    };

    bar.set_message(format!("{host}: connecting"));
    let session = tokio::time::timeout(timeouts.connect, Session::connect(target, ssh))
        .await
        .map_err(|_| fail(Step::Connect, timed_out(timeouts.connect)))?
        .map_err(|e| fail(Step::Connect, strip_host(&e.to_string(), &host)))?;

    bar.set_message(format!("{host}: probing"));
    let probe = exec_within(&session, Step::Probe, timeouts.probe, "uname -sm", None)
        .await
        .map_err(|(step, reason)| fail(step, reason))?;
    if !probe.success() {
        return Err(fail(
            Step::Probe,
            format!("`uname -sm` failed: {}", probe.stderr_text()),
        ));
    }
    let uname = probe.stdout_text();
    let mut parts = uname.split_whitespace();
    let (os, arch) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    if os != "Linux" || arch != binary.arch {
        return Err(fail(
            Step::Probe,
            format!(
                "the host is {os} {arch}, and no agent is built for it (this one is Linux {}); build one with `cargo build --release -p agent --target {arch}-unknown-linux-gnu` (crt-static) and pass it with --agent-binary",
                binary.arch
            ),
        ));
    }
    Ok(session)
}

/// Connects, probes, uploads if needed, verifies and starts the agents.
pub(crate) async fn deploy(
    job: HostJob,
    binary: &AgentBinary,
    bar: &ProgressBar,
) -> Result<Deployed, BootstrapError> {
    let host = job.target.to_string();
    let fail = |step: Step, reason: String| BootstrapError {
        host: host.clone(),
        step,
        reason,
    };
    let session = open(&job.target, &job.ssh, &job.timeouts, binary, bar).await?;

    let dir = remote_path(&job.remote_dir);
    let shipped = ship(&session, &dir, "agent", binary, bar, &job.timeouts)
        .await
        .map_err(|(step, reason)| fail(step, reason))?;
    let (bin, reused, uploaded) = (shipped.path, shipped.reused, shipped.uploaded);

    bar.set_message(format!("{host}: starting agents"));
    let coordinator = job.advertise.clone().unwrap_or_else(|| {
        std::net::SocketAddr::new(session.local_addr.ip(), job.grpc_port).to_string()
    });
    let all_ids: Vec<String> = job.agents.iter().map(|(id, _)| id.clone()).collect();
    let agents = match start_agents(&session, &job, &dir, &bin, &coordinator).await {
        Ok(agents) => agents,
        Err((step, reason)) => {
            // Some may have started: none may be left behind.
            kill_run_agents(&session, &dir, &job.run_id, Some(&all_ids)).await;
            return Err(fail(step, reason));
        }
    };
    bar.set_message(format!(
        "{host}: {} agent(s) started, waiting for them to attach",
        agents.len()
    ));
    Ok(Deployed {
        target: job.target,
        agents,
        reused_binary: reused,
        uploaded_bytes: uploaded,
        session,
        dir,
        run_id: job.run_id,
    })
}

/// Hands each agent its credentials and starts it detached.
async fn start_agents(
    session: &Session,
    job: &HostJob,
    dir: &str,
    bin: &str,
    coordinator: &str,
) -> Result<Vec<(String, u32)>, (Step, String)> {
    let run_dir = format!("{dir}/runs/{}", sh_quote(&job.run_id));
    let mut agents = Vec::new();
    for (id, secret) in &job.agents {
        let creds = Credentials {
            coordinator: coordinator.to_string(),
            fingerprint: job.fingerprint.clone(),
            agent_id: id.clone(),
            secret: secret.clone(),
            run_id: job.run_id.clone(),
            pool: String::new(),
        };
        let base = format!("{run_dir}/{}", sh_quote(id));
        // The start is the last, backgrounded command: `cat` before it reads
        // our stdin to EOF, and the agent's own stdin, stdout and stderr are
        // redirected so the session does not wait for it.
        let script = format!(
            "set -e; umask 077; mkdir -p {run_dir}; cat > {base}.creds; \
             if command -v setsid >/dev/null 2>&1; then d=setsid; else d=nohup; fi; \
             $d {bin} attach --credentials {base}.creds </dev/null >{base}.log 2>&1 & echo $!"
        );
        let json = creds.to_json();
        let mut input: &[u8] = json.as_bytes();
        let out = exec_within(
            session,
            Step::Start,
            job.timeouts.start,
            &script,
            Some(&mut input),
        )
        .await?;
        match out
            .stdout_text()
            .parse::<u32>()
            .ok()
            .filter(|_| out.success())
        {
            Some(pid) => agents.push((id.clone(), pid)),
            None => {
                return Err((
                    Step::Start,
                    format!(
                        "starting agent {id}: {}: {}",
                        out.ended(),
                        out.stderr_text()
                    ),
                ));
            }
        }
    }
    Ok(agents)
}

/// A binary on a host.
pub(crate) struct Shipped {
    /// Shell word of its path there.
    pub path: String,
    /// It was already there: nothing was uploaded.
    pub reused: bool,
    pub uploaded: u64,
}

/// Makes sure `binary` is on the host as `DIR/bin/NAME-<sha256>` (uploading
/// it unless that exact file is there), then checks that it executes.
pub(crate) async fn ship(
    session: &Session,
    dir: &str,
    name: &str,
    binary: &AgentBinary,
    bar: &ProgressBar,
    timeouts: &Timeouts,
) -> Result<Shipped, (Step, String)> {
    let host = session.target.to_string();
    let bin = format!("{dir}/bin/{}-{}", sh_quote(name), binary.hash);
    // Already there, whole? (Content-addressed: same name, same bytes.)
    let have = session
        .exec(
            &format!("if [ -x {bin} ]; then wc -c < {bin}; else echo missing; fi"),
            None,
        )
        .await
        .map_err(|e| (Step::Probe, e.to_string()))?;
    let reused = have.success() && have.stdout_text() == binary.size.to_string();
    let mut uploaded = 0;
    if !reused {
        bar.set_message(format!("{host}: uploading {name}"));
        bar.set_length(binary.size);
        bar.set_position(0);
        let file = tokio::fs::File::open(&binary.path).await.map_err(|e| {
            (
                Step::Upload,
                format!("opening {}: {e}", binary.path.display()),
            )
        })?;
        let mut reader = Counting {
            inner: file,
            bar: bar.clone(),
        };
        let tmp = format!("{dir}/bin/.{}-{}.$$", sh_quote(name), binary.hash);
        let script = format!(
            "set -e; mkdir -p {dir}/bin; cat > {tmp}; chmod 755 {tmp}; n=$(wc -c < {tmp}); \
             if [ \"$n\" -ne {size} ]; then rm -f {tmp}; echo \"short upload: $n of {size} bytes arrived\" >&2; exit 3; fi; \
             mv -f {tmp} {bin}",
            size = binary.size
        );
        let started = Instant::now();
        let out = exec_within(
            session,
            Step::Upload,
            timeouts.upload,
            &script,
            Some(&mut reader),
        )
        .await?;
        if !out.success() {
            let err = out.stderr_text();
            let reason = if err.contains("No space left") {
                format!("disk full on the host: {err}")
            } else {
                format!("{}: {err}", out.ended())
            };
            return Err((Step::Upload, reason));
        }
        uploaded = binary.size;
        tracing::info!(
            "{host}: uploaded {name} ({} bytes) in {:.2}s",
            binary.size,
            started.elapsed().as_secs_f64()
        );
    }
    // Does it run here? A binary that is not static fails right now, with the
    // shell's own words, instead of as a process that never comes up.
    bar.set_message(format!("{host}: verifying {name}"));
    if name == "agent" {
        let version = format!("{bin} --version");
        let check = exec_within(session, Step::Verify, timeouts.probe, &version, None).await?;
        if !check.success() {
            let why = [check.stderr_text(), check.stdout_text()]
                .join(" ")
                .trim()
                .to_string();
            return Err((
                Step::Verify,
                format!(
                    "exec failed ({}): {why}; the agent must be a static binary (see .cargo/config.toml)",
                    check.ended()
                ),
            ));
        }
    }
    Ok(Shipped {
        path: bin,
        reused,
        uploaded,
    })
}

/// Kills this run's agents on a host: those of `ids`, or all of them. An
/// agent is found by its credentials path in its command line, so a pid
/// reused by another process is never hit (best effort: agents also exit on
/// their own once their coordinator is gone for good).
pub(crate) async fn kill_run_agents(
    session: &Session,
    dir: &str,
    run_id: &str,
    ids: Option<&[String]>,
) {
    let base = format!("{dir}/runs/{}/", sh_quote(run_id));
    let patterns: Vec<String> = match ids {
        Some(ids) => ids
            .iter()
            .map(|id| format!("{base}{}.creds", sh_quote(id)))
            .collect(),
        None => vec![base],
    };
    let mut script = String::new();
    for pat in patterns {
        script.push_str(&format!(
            "pat={pat}; for p in /proc/[0-9]*; do c=$(tr '\\0' ' ' < $p/cmdline 2>/dev/null) || continue; \
             case \"$c\" in *\"attach --credentials $pat\"*) kill ${{p#/proc/}} 2>/dev/null;; esac; done; "
        ));
    }
    script.push_str("true");
    let _ = tokio::time::timeout(Duration::from_secs(10), session.exec(&script, None)).await;
}

/// Runs `command` on the host as `step`, feeding it `stdin`, within `limit`.
async fn exec_within(
    session: &Session,
    step: Step,
    limit: Duration,
    command: &str,
    stdin: Option<&mut (dyn AsyncRead + Unpin + Send)>,
) -> Result<Output, (Step, String)> {
    tokio::time::timeout(limit, session.exec(command, stdin))
        .await
        .map_err(|_| (step, timed_out(limit)))?
        .map_err(|e| (step, e.to_string()))
}

/// What a step that ran out of time failed with.
fn timed_out(limit: Duration) -> String {
    format!("timed out after {:.0}s", limit.as_secs_f64())
}

/// `host: reason` -> `reason` (the error already names the host).
fn strip_host(message: &str, host: &str) -> String {
    message
        .strip_prefix(&format!("{host}: "))
        .unwrap_or(message)
        .to_string()
}

/// Counts bytes read into a progress bar.
struct Counting<R> {
    inner: R,
    bar: ProgressBar,
}

impl<R: AsyncRead + Unpin> AsyncRead for Counting<R> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        let n = buf.filled().len() - before;
        self.bar.inc(n as u64);
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_survives_hostile_names() {
        assert_eq!(sh_quote("a b"), "'a b'");
        assert_eq!(sh_quote("it's"), r"'it'\''s'");
        assert_eq!(remote_path("~/.fleetbench"), "\"$HOME\"/'.fleetbench'");
        assert_eq!(remote_path("/opt/fb"), "'/opt/fb'");
    }
}
