//! An SSH client session to one host (russh; never the `ssh` binary):
//! connect, verify the host key against known_hosts, authenticate, run
//! commands, and stream bytes into a remote command's stdin.
//!
//! The host key is checked inside the handshake, before authentication and
//! long before anything is uploaded. Authentication uses ssh-agent when
//! `SSH_AUTH_SOCK` is set, else the given identity file or the default ones.
//! Uploads go through russh's channel writer, which waits for the peer's
//! window, then send EOF and read until the channel closes, so the exit
//! status is always seen whether it arrives before or after EOF.
//!
//! What to run on the host is `bootstrap.rs`'s business, not this module's.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use russh::ChannelMsg;
use russh::client::{self, AuthResult, Handle};
use russh::keys::{PrivateKeyWithHashAlg, PublicKey};
use tokio::io::AsyncRead;

use super::known_hosts::{self, Verdict};

/// `user@host[:port]` from a workload file.
pub(crate) use fleetbench_workload::SshHost as Target;

/// How to reach and trust hosts.
#[derive(Debug, Clone)]
pub(crate) struct Options {
    pub identity: Option<PathBuf>,
    pub known_hosts: PathBuf,
    pub accept_new_host_keys: bool,
    pub connect_timeout: Duration,
}

/// Why an SSH step failed. Each names the host.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SshError {
    #[error("{target}: cannot connect: {reason}")]
    Connect { target: String, reason: String },
    #[error(
        "{target}: HOST KEY CHANGED: the {algorithm} key the host presented differs from {path}:{line}; refusing to connect (if the host was reinstalled, remove that line)"
    )]
    HostKeyChanged {
        target: String,
        algorithm: String,
        path: String,
        line: usize,
    },
    #[error("{target}: host key is revoked in {path}:{line}")]
    HostKeyRevoked {
        target: String,
        path: String,
        line: usize,
    },
    #[error(
        "{target}: unknown host: its {algorithm} key ({fingerprint}) is not in {path}; check it and pass --accept-new-host-keys to record it"
    )]
    UnknownHost {
        target: String,
        algorithm: String,
        fingerprint: String,
        path: String,
    },
    #[error("{target}: authentication refused for user {user:?} ({tried})")]
    Auth {
        target: String,
        user: String,
        tried: String,
    },
    #[error("{target}: {what}: {reason}")]
    Channel {
        target: String,
        what: String,
        reason: String,
    },
    #[error("{target}: ssh protocol error: {0}", target = .1)]
    Protocol(russh::Error, String),
}

impl From<russh::Error> for SshError {
    fn from(e: russh::Error) -> Self {
        SshError::Protocol(e, String::new())
    }
}

/// The handshake's view of the host key, decided against known_hosts.
struct Checker {
    target: Target,
    options: Options,
    /// A refusal, kept to report it precisely after russh gives up.
    refusal: Arc<Mutex<Option<SshError>>>,
}

impl client::Handler for Checker {
    type Error = SshError;

    async fn check_server_key(
        &mut self,
        key: &russh::keys::PublicKeyOrCertificate,
    ) -> Result<bool, SshError> {
        let russh::keys::PublicKeyOrCertificate::PublicKey { key, .. } = key else {
            self.refuse(SshError::Connect {
                target: self.target.to_string(),
                reason: "the host presented a certificate; fleetbench checks plain host keys only"
                    .into(),
            });
            return Ok(false);
        };
        let path = &self.options.known_hosts;
        let shown = path.display().to_string();
        let target = self.target.to_string();
        let verdict =
            known_hosts::check(path, &self.target.host, self.target.port, key).map_err(|e| {
                SshError::Connect {
                    target: target.clone(),
                    reason: format!("reading {shown}: {e}"),
                }
            })?;
        match verdict {
            Verdict::Known { .. } => Ok(true),
            Verdict::Changed { line } => {
                self.refuse(SshError::HostKeyChanged {
                    target,
                    algorithm: key.algorithm().to_string(),
                    path: shown,
                    line,
                });
                Ok(false)
            }
            Verdict::Revoked { line } => {
                self.refuse(SshError::HostKeyRevoked {
                    target,
                    path: shown,
                    line,
                });
                Ok(false)
            }
            Verdict::Unknown if self.options.accept_new_host_keys => {
                let line = known_hosts::learn(path, &self.target.host, self.target.port, key)
                    .map_err(|e| SshError::Connect {
                        target: target.clone(),
                        reason: format!("recording the host key in {shown}: {e}"),
                    })?;
                tracing::warn!("{target}: recorded new host key in {shown}:{line}");
                Ok(true)
            }
            Verdict::Unknown => {
                self.refuse(SshError::UnknownHost {
                    target,
                    algorithm: key.algorithm().to_string(),
                    fingerprint: key.fingerprint(Default::default()).to_string(),
                    path: shown,
                });
                Ok(false)
            }
        }
    }
}

impl Checker {
    fn refuse(&self, e: SshError) {
        *self.refusal.lock().expect("never poisoned") = Some(e);
    }
}

/// What a remote command printed and how it ended.
#[derive(Debug, Default)]
pub(crate) struct Output {
    pub status: Option<u32>,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

impl Output {
    pub(crate) fn success(&self) -> bool {
        self.status == Some(0)
    }

    /// How the command ended, for messages: "exit status 1".
    pub(crate) fn ended(&self) -> String {
        match self.status {
            Some(code) => format!("exit status {code}"),
            None => "no exit status".to_string(),
        }
    }

    pub(crate) fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).trim().to_string()
    }

    pub(crate) fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.stderr).trim().to_string()
    }
}

/// An authenticated SSH connection to one host.
pub(crate) struct Session {
    handle: Handle<Checker>,
    pub target: Target,
    /// Our address on the connection: the one the host can reach us by.
    pub local_addr: SocketAddr,
}

impl Session {
    pub(crate) async fn connect(target: &Target, options: &Options) -> Result<Session, SshError> {
        let name = target.to_string();
        let connect_err = |reason: String| SshError::Connect {
            target: name.clone(),
            reason,
        };
        let tcp = tokio::time::timeout(
            options.connect_timeout,
            tokio::net::TcpStream::connect((target.host.as_str(), target.port)),
        )
        .await
        .map_err(|_| connect_err(format!("no answer within {:?}", options.connect_timeout)))?
        .map_err(|e| connect_err(e.to_string()))?;
        let _ = tcp.set_nodelay(true);
        let local_addr = tcp.local_addr().map_err(|e| connect_err(e.to_string()))?;
        let config = Arc::new(client::Config {
            inactivity_timeout: Some(Duration::from_secs(60)),
            keepalive_interval: Some(Duration::from_secs(10)),
            nodelay: true,
            ..Default::default()
        });
        let refusal = Arc::new(Mutex::new(None));
        let checker = Checker {
            target: target.clone(),
            options: options.clone(),
            refusal: refusal.clone(),
        };
        let handshake = tokio::time::timeout(
            options.connect_timeout,
            client::connect_stream(config, tcp, checker),
        )
        .await
        .map_err(|_| {
            connect_err(format!(
                "SSH handshake took longer than {:?}",
                options.connect_timeout
            ))
        })?;
        let mut handle = match handshake {
            Ok(h) => h,
            Err(e) => {
                if let Some(refused) = refusal.lock().expect("never poisoned").take() {
                    return Err(refused);
                }
                return Err(match e {
                    SshError::Protocol(inner, _) => SshError::Protocol(inner, name),
                    other => other,
                });
            }
        };
        authenticate(&mut handle, target, options).await?;
        Ok(Session {
            handle,
            target: target.clone(),
            local_addr,
        })
    }

    /// Runs `command`, feeding it `stdin` (then EOF), and collects its output.
    pub(crate) async fn exec(
        &self,
        command: &str,
        stdin: Option<&mut (dyn AsyncRead + Unpin + Send)>,
    ) -> Result<Output, SshError> {
        let target = self.target.to_string();
        let fail = |what: &str, e: russh::Error| SshError::Channel {
            target: target.clone(),
            what: what.to_string(),
            reason: e.to_string(),
        };
        let channel = self
            .handle
            .channel_open_session()
            .await
            .map_err(|e| fail("opening a session", e))?;
        channel
            .exec(true, command.as_bytes())
            .await
            .map_err(|e| fail("starting a command", e))?;
        // Send stdin while reading the channel: a command that exits early
        // (a full disk, a failing `mkdir`) closes the channel, and the
        // upload must stop there with the command's own words, not wait for
        // a window that will never open again.
        let (mut read, write) = channel.split();
        let send = async {
            if let Some(input) = stdin {
                write.data(input).await?;
            }
            write.eof().await
        };
        tokio::pin!(send);
        let mut sending = true;
        let mut send_error = None;
        let mut out = Output::default();
        loop {
            tokio::select! {
                sent = &mut send, if sending => {
                    sending = false;
                    if let Err(e) = sent {
                        send_error = Some(e);
                    }
                }
                msg = read.wait() => match msg {
                    Some(ChannelMsg::Data { data }) => out.stdout.extend_from_slice(&data),
                    Some(ChannelMsg::ExtendedData { data, ext: 1 }) => out.stderr.extend_from_slice(&data),
                    Some(ChannelMsg::ExitStatus { exit_status }) => out.status = Some(exit_status),
                    Some(ChannelMsg::ExitSignal { signal_name, .. }) => {
                        // A named signal's variant is its name (TERM, KILL).
                        let name = match signal_name {
                            russh::Sig::Custom(name) => name,
                            known => format!("{known:?}"),
                        };
                        out.stderr
                            .extend_from_slice(format!("killed by signal {name}").as_bytes());
                        out.status.get_or_insert(128);
                    }
                    Some(ChannelMsg::Failure) => {
                        return Err(SshError::Channel {
                            target: target.clone(),
                            what: "starting a command".into(),
                            reason: "the host refused to run it".into(),
                        });
                    }
                    // Exit status and EOF come in either order: read until Close.
                    Some(ChannelMsg::Close) | None => break,
                    Some(_) => {}
                }
            }
        }
        if out.status.is_none()
            && let Some(e) = send_error
        {
            return Err(fail("sending data", e));
        }
        Ok(out)
    }

    pub(crate) async fn close(self) {
        let _ = self
            .handle
            .disconnect(russh::Disconnect::ByApplication, "", "en")
            .await;
    }
}

async fn authenticate(
    handle: &mut Handle<Checker>,
    target: &Target,
    options: &Options,
) -> Result<(), SshError> {
    let mut tried = Vec::new();
    if let Some(sock) = std::env::var_os("SSH_AUTH_SOCK") {
        match russh::keys::agent::client::AgentClient::connect_uds(&sock).await {
            Ok(mut agent) => {
                let identities = agent.request_identities().await.unwrap_or_default();
                for id in identities {
                    let russh::keys::agent::AgentIdentity::PublicKey { key, .. } = id else {
                        continue;
                    };
                    let hash = rsa_hash(handle, &key).await;
                    tried.push(format!("agent key {}", key.fingerprint(Default::default())));
                    if let Ok(AuthResult::Success) = handle
                        .authenticate_publickey_with(target.user.clone(), key, hash, &mut agent)
                        .await
                    {
                        return Ok(());
                    }
                }
            }
            Err(e) => tried.push(format!(
                "ssh-agent at {} unusable: {e}",
                Path::new(&sock).display()
            )),
        }
    }
    let files: Vec<PathBuf> = match &options.identity {
        Some(p) => vec![p.clone()],
        None => ["id_ed25519", "id_ecdsa", "id_rsa"]
            .iter()
            .map(|n| known_hosts::home().join(".ssh").join(n))
            .filter(|p| p.is_file())
            .collect(),
    };
    for path in files {
        let key = match russh::keys::load_secret_key(&path, None) {
            Ok(k) => Arc::new(k),
            Err(e) => {
                tried.push(format!("{}: {e}", path.display()));
                continue;
            }
        };
        let hash = rsa_hash(handle, key.public_key()).await;
        tried.push(path.display().to_string());
        match handle
            .authenticate_publickey(target.user.clone(), PrivateKeyWithHashAlg::new(key, hash))
            .await
        {
            Ok(AuthResult::Success) => return Ok(()),
            Ok(AuthResult::Failure { .. }) => {}
            Err(e) => {
                return Err(SshError::Auth {
                    target: target.to_string(),
                    user: target.user.clone(),
                    tried: format!("{}; {e}", tried.join(", ")),
                });
            }
        }
    }
    Err(SshError::Auth {
        target: target.to_string(),
        user: target.user.clone(),
        tried: if tried.is_empty() {
            "no ssh-agent and no key file: set SSH_AUTH_SOCK or [agents] identity".into()
        } else {
            format!("tried {}", tried.join(", "))
        },
    })
}

async fn rsa_hash(handle: &Handle<Checker>, key: &PublicKey) -> Option<russh::keys::HashAlg> {
    if !key.algorithm().is_rsa() {
        return None;
    }
    handle
        .best_supported_rsa_hash()
        .await
        .ok()
        .flatten()
        .flatten()
}
