//! `[[service]]`: processes a run starts before its phases (the system under
//! test, a built-in target) on this machine or on SSH hosts, when each is
//! ready, and `{service.NAME.host}` in targets.
//!
//! Starting and stopping services is the coordinator's; this module only
//! says what the file asks for.

use std::collections::BTreeMap;
use std::ops::Range;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use toml::Spanned;

use crate::agents::SshHost;
use crate::ops::check_url;
use crate::source::{RawCommand, Source, SpecError, duration_text, positive};

/// A validated `[[service]]`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Service {
    /// Distinct among the file's services; `{service.NAME.host}` names it.
    pub name: String,
    /// SSH hosts the service runs on; empty: this machine.
    pub hosts: Vec<SshHost>,
    /// A local file shipped to the hosts (content-addressed, like the agent);
    /// `{binary}` in the command is its path there.
    pub binary: Option<String>,
    /// What to run.
    pub command: Command,
    /// Environment variables set for the command, by name.
    pub env: Vec<(String, String)>,
    /// When the service counts as started; None: at once.
    pub ready: Option<Ready>,
    /// How long to wait for `ready`.
    #[serde(with = "duration_text")]
    pub ready_timeout: Duration,
    /// Leave it running after the run.
    pub keep: bool,
}

/// When a service is ready.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum Ready {
    /// This port accepts TCP connections on every host of the service
    /// (127.0.0.1 for a local service).
    TcpPort(u16),
    /// This `host:port` accepts TCP connections.
    TcpAddr(String),
    /// A GET of this URL answers 2xx (`{service.NAME.host}` allowed).
    Http(String),
}

/// A service's command line. `{agent}` in any argument stands for the path of
/// the agent binary (so the built-in target can be a service), `{binary}`
/// for the shipped `binary`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum Command {
    /// Run with `sh -c`.
    Shell(String),
    /// Run directly, no shell.
    Argv(Vec<String>),
}

impl Service {
    /// Whether any part of the command holds `needle`.
    pub fn command_mentions(&self, needle: &str) -> bool {
        match &self.command {
            Command::Shell(s) => s.contains(needle),
            Command::Argv(a) => a.iter().any(|x| x.contains(needle)),
        }
    }

    /// The address by which agents reach the service: its first host, or
    /// this machine.
    pub fn address(&self) -> String {
        self.hosts
            .first()
            .map_or_else(|| "127.0.0.1".to_string(), |h| h.host.clone())
    }
}

/// Replaces `{service.NAME.host}` with each service's address.
pub fn expand_service_hosts(text: &str, services: &[Service]) -> String {
    let mut out = text.to_string();
    for s in services {
        out = out.replace(&format!("{{service.{}.host}}", s.name), &s.address());
    }
    out
}

// ---------------------------------------------------------------- raw TOML

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawService {
    name: Spanned<String>,
    hosts: Option<Vec<Spanned<String>>>,
    local: Option<bool>,
    binary: Option<Spanned<String>>,
    #[serde(default)]
    args: Vec<String>,
    command: Option<Spanned<RawCommand>>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    ready: Option<Spanned<RawReady>>,
    keep: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawReady {
    tcp: Option<Spanned<RawTcp>>,
    http: Option<Spanned<String>>,
    timeout: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RawTcp {
    Port(i64),
    Addr(String),
}

// ---------------------------------------------------------------- validation

/// Validates one `[[service]]`; `earlier` are the ones before it in the file.
pub(crate) fn validate_service(
    src: &Source,
    s: RawService,
    earlier: &[Service],
) -> Result<Service, SpecError> {
    let name_span = s.name.span();
    let name = s.name.into_inner();
    src.plain_name(&name, name_span.clone(), "service")?;
    if earlier.iter().any(|e| e.name == name) {
        return Err(src.error(name_span, format!("service {name:?} is defined twice")));
    }
    let mut hosts: Vec<SshHost> = Vec::new();
    for h in s.hosts.unwrap_or_default() {
        let host: SshHost = h
            .get_ref()
            .parse()
            .map_err(|e| src.error(h.span(), format!("service.hosts: {e}")))?;
        hosts.push(host);
    }
    if s.local == Some(true) && !hosts.is_empty() {
        return Err(src.error(
            name_span,
            format!("service {name:?} has both `local = true` and `hosts`; pick one"),
        ));
    }
    let binary = match s.binary {
        Some(b) if b.get_ref().trim().is_empty() => {
            return Err(src.error(b.span(), "service binary must be a path to a local file"));
        }
        Some(b) => Some(b.into_inner()),
        None => None,
    };
    let command = match (s.command, &binary) {
        (Some(c), _) => validate_command(src, c)?,
        (None, Some(_)) => Command::Argv(
            std::iter::once("{binary}".to_string())
                .chain(s.args)
                .collect(),
        ),
        (None, None) => {
            return Err(src.error(
                name_span,
                format!("service {name:?} needs `command` (run as given) or `binary` (a local file to ship) with `args`"),
            ));
        }
    };
    let (ready, ready_timeout) = match s.ready {
        None => (None, Duration::from_secs(10)),
        Some(r) => validate_ready(src, r)?,
    };
    check_env_names(src, &s.env, &name, name_span)?;
    Ok(Service {
        name,
        hosts,
        binary,
        command,
        env: s.env.into_iter().collect(),
        ready,
        ready_timeout,
        keep: s.keep.unwrap_or(false),
    })
}

/// `command`: a non-empty string or argv.
fn validate_command(src: &Source, c: Spanned<RawCommand>) -> Result<Command, SpecError> {
    let command_span = c.span();
    match c.into_inner() {
        RawCommand::Shell(c) if c.trim().is_empty() => None,
        RawCommand::Shell(c) => Some(Command::Shell(c)),
        RawCommand::Argv(a) if a.is_empty() || a[0].is_empty() => None,
        RawCommand::Argv(a) => Some(Command::Argv(a)),
    }
    .ok_or_else(|| src.error(command_span, "service command must not be empty"))
}

/// `ready = { tcp = PORT | "host:port" }` or `{ http = URL }`, with an
/// optional `timeout` (10 s).
fn validate_ready(
    src: &Source,
    r: Spanned<RawReady>,
) -> Result<(Option<Ready>, Duration), SpecError> {
    let r_span = r.span();
    let r = r.into_inner();
    let ready = match (r.tcp, r.http) {
        (Some(t), None) => Some(validate_ready_tcp(src, t)?),
        (None, Some(u)) => {
            check_url(u.get_ref()).map_err(|why| {
                src.error(u.span(), format!("ready.http {:?} {why}", u.get_ref()))
            })?;
            Some(Ready::Http(u.into_inner()))
        }
        (Some(_), Some(_)) => {
            return Err(src.error(r_span, "ready takes `tcp` or `http`, not both"));
        }
        (None, None) => None,
    };
    let timeout = match &r.timeout {
        Some(t) => positive(src, t, "ready.timeout")?,
        None => Duration::from_secs(10),
    };
    Ok((ready, timeout))
}

/// `ready.tcp`: a port, or `host:port`.
fn validate_ready_tcp(src: &Source, t: Spanned<RawTcp>) -> Result<Ready, SpecError> {
    let span = t.span();
    match t.into_inner() {
        RawTcp::Port(p) if (1..=65535).contains(&p) => Ok(Ready::TcpPort(p as u16)),
        RawTcp::Port(p) => {
            Err(src.error(span, format!("ready.tcp port must be 1 to 65535, not {p}")))
        }
        RawTcp::Addr(text) => {
            let ok = text.rsplit_once(':').is_some_and(|(host, port)| {
                !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0)
            });
            if !ok {
                return Err(src.error(
                    span,
                    format!("ready.tcp {text:?} must be a port or host:port, like 8080 or \"127.0.0.1:8080\""),
                ));
            }
            Ok(Ready::TcpAddr(text))
        }
    }
}

/// Every `env` name is a shell-safe variable name.
fn check_env_names(
    src: &Source,
    env: &BTreeMap<String, String>,
    service: &str,
    name_span: Range<usize>,
) -> Result<(), SpecError> {
    for key in env.keys() {
        let ok = key
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !ok {
            return Err(src.error(
                name_span,
                format!("service {service:?}: env name {key:?} must be letters, digits and '_', not starting with a digit"),
            ));
        }
    }
    Ok(())
}

/// Every `{service.NAME.host}` in `text` names a defined service.
pub(crate) fn check_service_refs(
    src: &Source,
    span: Range<usize>,
    text: &str,
    services: &[Service],
) -> Result<(), SpecError> {
    let mut rest = text;
    while let Some(start) = rest.find("{service.") {
        let tail = &rest[start + "{service.".len()..];
        let Some(end) = tail.find('}') else { break };
        let inner = &tail[..end];
        let name = inner.strip_suffix(".host").unwrap_or(inner);
        if !inner.ends_with(".host") || !services.iter().any(|s| s.name == name) {
            let known: Vec<&str> = services.iter().map(|s| s.name.as_str()).collect();
            return Err(src.error(
                span,
                format!(
                    "{{service.{inner}}} in {text:?} names no service's host; write {{service.NAME.host}} with NAME one of: {}",
                    if known.is_empty() { "(no services defined)".to_string() } else { known.join(", ") }
                ),
            ));
        }
        rest = &tail[end..];
    }
    Ok(())
}
