//! The workload file: what a user writes, and the validated [`Workload`] the
//! coordinator runs.
//!
//! Parse, then validate. The TOML deserializes into `Raw*` structs that deny
//! unknown keys and keep the source span of every value that validation may
//! reject; [`Workload::parse`] turns them into domain types that cannot hold a
//! zero rate, a bad duration or a URL the agent cannot dial. Every rejection
//! names the file, the line and the column, and says what was expected.
//!
//! This module does not run anything and does not know about agents' shares
//! of the load: splitting a phase across agents is the coordinator's job.

use std::ops::Range;
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use toml::Spanned;

use fleetbench_gen::GenSpec;

use crate::generator::RawGenerator;
use crate::phase::RawPhase;
pub use crate::phase::{
    Arrival, Exec, Http, HttpVersion, Load, Op, OpKind, Phase, Segment, Shape, Synthetic, Tcp,
    TcpRead, Until,
};
use crate::source::{Number, RawCommand, Source, SpecError, duration_text, positive};

/// A validated workload.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Workload {
    pub name: String,
    pub agents: Agents,
    pub services: Vec<Service>,
    /// `[generator.NAME]` tables, by name.
    pub generators: Vec<GenSpec>,
    /// `[run] seed`: the default seed of every phase's generators and op
    /// choice (0 when not given, so a file always means the same stream).
    pub seed: u64,
    pub phases: Vec<Phase>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Agents {
    /// Agent processes started on the coordinator's own machine.
    pub local: u32,
    /// SSH hosts that agents are deployed to.
    pub hosts: Vec<SshHost>,
    /// Agents per SSH host.
    pub per_host: u32,
    /// Private key file for SSH (else ssh-agent, else the default keys).
    pub identity: Option<String>,
    /// known_hosts file (default ~/.ssh/known_hosts).
    pub known_hosts: Option<String>,
    /// Where fleetbench keeps its files on the hosts.
    pub remote_dir: String,
    /// The run goes on if at least this many hosts were bootstrapped.
    pub min_hosts: usize,
    /// How long to wait for every agent to attach.
    #[serde(with = "duration_text")]
    pub attach_timeout: Duration,
    /// How each phase's load is split over the agents.
    pub split: Split,
    /// Agents taken from a long-lived pool instead (no local or SSH agents).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pool: Option<PoolUse>,
}

/// How load is split across agents: each agent's share is its weight over
/// the sum of the weights. The share is logged with every phase.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum Split {
    /// Equal shares.
    Even,
    /// Weighted by each agent's logical cores (from its Hello).
    Cores,
    /// Explicit weights, one per agent in order: local agents first, then
    /// each host's `per_host` agents in the order of `hosts`.
    Weights(Vec<f64>),
}

/// `[agents] pool = "NAME"`, with `count` and `labels`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PoolUse {
    pub name: String,
    /// Agents to take; None: every agent of the pool that matches.
    pub count: Option<u32>,
    /// Only agents carrying every one of these labels.
    pub labels: std::collections::BTreeMap<String, String>,
}

/// `user@host[:port]`: an SSH host.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct SshHost {
    pub user: String,
    pub host: String,
    pub port: u16,
}

impl std::fmt::Display for SshHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.port == 22 {
            write!(f, "{}@{}", self.user, self.host)
        } else if self.host.contains(':') {
            write!(f, "{}@[{}]:{}", self.user, self.host, self.port)
        } else {
            write!(f, "{}@{}:{}", self.user, self.host, self.port)
        }
    }
}

impl std::str::FromStr for SshHost {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (user, rest) = match s.split_once('@') {
            Some((u, r)) if !u.is_empty() => (u.to_string(), r),
            Some(_) => return Err(format!("{s:?} has an empty user before '@'")),
            None => (std::env::var("USER").unwrap_or_else(|_| "root".into()), s),
        };
        let (host, port) = if let Some(r) = rest.strip_prefix('[') {
            let (h, tail) = r
                .split_once(']')
                .ok_or_else(|| format!("{s:?} has an unclosed '['"))?;
            let port = match tail.strip_prefix(':') {
                Some(p) => p
                    .parse()
                    .map_err(|_| format!("{s:?} has a bad port {p:?}"))?,
                None if tail.is_empty() => 22,
                None => return Err(format!("{s:?} has {tail:?} after ']'")),
            };
            (h.to_string(), port)
        } else {
            match rest.rsplit_once(':') {
                Some((h, p)) => (
                    h.to_string(),
                    p.parse()
                        .map_err(|_| format!("{s:?} has a bad port {p:?}"))?,
                ),
                None => (rest.to_string(), 22),
            }
        };
        let bracketed = rest.starts_with('[');
        if host.is_empty()
            || port == 0
            || (!bracketed && host.contains(':'))
            || !host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || ".-_:%".contains(c))
            || !user
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || ".-_".contains(c))
        {
            return Err(format!(
                "{s:?} is not user@host[:port] (an IPv6 address goes in brackets: user@[::1]:22)"
            ));
        }
        Ok(SshHost { user, host, port })
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Service {
    pub name: String,
    /// SSH hosts the service runs on; empty: this machine.
    pub hosts: Vec<SshHost>,
    /// A local file shipped to the hosts (content-addressed, like the agent);
    /// `{binary}` in the command is its path there.
    pub binary: Option<String>,
    pub command: Command,
    pub env: Vec<(String, String)>,
    pub ready: Option<Ready>,
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

// ---------------------------------------------------------------- raw TOML

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWorkload {
    run: Option<RawRun>,
    agents: Spanned<RawAgents>,
    #[serde(default)]
    service: Vec<RawService>,
    #[serde(default)]
    generator: std::collections::BTreeMap<Spanned<String>, RawGenerator>,
    phase: Option<Spanned<Vec<Spanned<RawPhase>>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRun {
    name: Option<Spanned<String>>,
    seed: Option<Spanned<i64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAgents {
    local: Option<Spanned<i64>>,
    hosts: Option<Vec<Spanned<String>>>,
    per_host: Option<Spanned<i64>>,
    identity: Option<String>,
    known_hosts: Option<String>,
    remote_dir: Option<Spanned<String>>,
    min_hosts: Option<Spanned<i64>>,
    attach_timeout: Option<Spanned<String>>,
    split: Option<Spanned<RawSplit>>,
    pool: Option<Spanned<String>>,
    count: Option<Spanned<i64>>,
    labels: Option<Spanned<std::collections::BTreeMap<String, String>>>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RawSplit {
    Named(String),
    Weights(Vec<Number>),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawService {
    name: Spanned<String>,
    hosts: Option<Vec<Spanned<String>>>,
    local: Option<bool>,
    binary: Option<Spanned<String>>,
    #[serde(default)]
    args: Vec<String>,
    command: Option<Spanned<RawCommand>>,
    #[serde(default)]
    env: std::collections::BTreeMap<String, String>,
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

impl Agents {
    /// Agents the run asks for: local ones plus per_host on every host, or
    /// the pool's `count` (1 when it takes every matching agent: the real
    /// number is known once they attach).
    pub fn count(&self) -> u32 {
        match &self.pool {
            Some(p) => p.count.unwrap_or(1),
            None => self.local + self.per_host * self.hosts.len() as u32,
        }
    }
}

impl Workload {
    /// Reads and validates a workload file.
    pub fn load(path: &Path) -> Result<(Workload, String), SpecError> {
        let text = std::fs::read_to_string(path).map_err(|source| SpecError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let workload = Workload::parse(&path.display().to_string(), &text)?;
        Ok((workload, text))
    }

    /// Validates workload text; `path` is only used to name it in errors and
    /// as the default run name.
    pub fn parse(path: &str, text: &str) -> Result<Workload, SpecError> {
        let src = Source { path, text };
        let raw: RawWorkload = toml::from_str(text).map_err(|e| {
            let span = e.span().unwrap_or(0..0);
            src.error(span, e.message().trim().to_string())
        })?;

        let (run_name, run_seed) = match raw.run {
            Some(r) => (r.name, r.seed),
            None => (None, None),
        };
        let seed = match &run_seed {
            Some(s) if *s.get_ref() < 0 => {
                return Err(src.error(s.span(), "run.seed must be zero or more"));
            }
            Some(s) => *s.get_ref() as u64,
            None => 0,
        };
        let name = match run_name {
            Some(n) if n.get_ref().trim().is_empty() => {
                return Err(src.error(n.span(), "run.name must not be empty"));
            }
            Some(n) => n.into_inner(),
            None => Path::new(path)
                .file_stem()
                .map_or_else(|| "run".to_string(), |s| s.to_string_lossy().into_owned()),
        };

        let agents_span = raw.agents.span();
        let agents = validate_agents(&src, raw.agents)?;

        let mut services = Vec::new();
        for s in raw.service {
            services.push(validate_service(&src, s, &services)?);
        }

        let Some(raw_phases) = raw.phase else {
            return Err(src.error(
                0..0,
                "the workload has no [[phase]]: add at least one, with a name, a duration and an [phase.http] or [phase.synthetic] table",
            ));
        };
        let phases_span = raw_phases.span();
        let raw_phases = raw_phases.into_inner();
        if raw_phases.is_empty() {
            return Err(src.error(phases_span, "`phase` must hold at least one phase"));
        }
        let base_dir = Path::new(path).parent().unwrap_or(Path::new("."));
        let mut generators = Vec::new();
        for (name, g) in raw.generator {
            generators.push(crate::generator::validate(&src, &name, g, base_dir)?);
        }
        let cx = crate::phase::Context {
            agents: agents.count(),
            generators: &generators,
            seed,
        };
        let mut phases: Vec<Phase> = Vec::new();
        for p in raw_phases {
            let span = p.span();
            let phase = crate::phase::validate_phase(&src, p, &cx)?;
            if phases.iter().any(|q| q.name == phase.name) {
                return Err(src.error(
                    span,
                    format!(
                        "phase {:?} is defined twice; phases need distinct names",
                        phase.name
                    ),
                ));
            }
            for op in &phase.ops {
                match &op.kind {
                    OpKind::Http(h) => check_service_refs(&src, span.clone(), &h.url, &services)?,
                    OpKind::Tcp(t) => {
                        check_service_refs(&src, span.clone(), &t.address, &services)?
                    }
                    OpKind::Exec(_) | OpKind::Synthetic(_) => {}
                }
            }
            phases.push(phase);
        }
        if let (Split::Weights(_), Some(p)) = (&agents.split, &agents.pool)
            && p.count.is_none()
        {
            return Err(src.error(
                agents_span,
                "agents.split weights need agents.count with a pool: one weight per agent taken, in the pool's order",
            ));
        }
        if let Split::Weights(w) = &agents.split
            && w.len() != agents.count() as usize
        {
            return Err(src.error(
                agents_span,
                format!(
                    "agents.split lists {} weights for {} agents; give one per agent (local agents first, then per_host per host in order)",
                    w.len(),
                    agents.count()
                ),
            ));
        }
        Ok(Workload {
            name,
            agents,
            services,
            generators,
            seed,
            phases,
        })
    }

    /// The validated configuration as JSON, as the log records it.
    pub fn resolved_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("workload serializes: plain data")
    }
}

fn validate_agents(src: &Source, raw: Spanned<RawAgents>) -> Result<Agents, SpecError> {
    let span = raw.span();
    let raw = raw.into_inner();
    let pool = validate_pool(src, &raw, raw.hosts.as_ref().is_none_or(Vec::is_empty))?;
    let mut hosts = Vec::new();
    for h in raw.hosts.unwrap_or_default() {
        let host: SshHost = h
            .get_ref()
            .parse()
            .map_err(|e| src.error(h.span(), format!("agents.hosts: {e}; write it like \"bench@10.0.0.11\" or \"bench@10.0.0.12:2222\"")))?;
        if hosts.contains(&host) {
            return Err(src.error(
                h.span(),
                format!(
                    "agents.hosts lists {host} twice; use per_host for more agents on one host"
                ),
            ));
        }
        hosts.push(host);
    }
    let local = match raw.local {
        None if pool.is_some() => 0,
        None if hosts.is_empty() => {
            return Err(src.error(
                span,
                "[agents] needs `local = N` (agent processes on this machine), `hosts = [\"user@host\", ...]` (SSH hosts) or `pool = \"NAME\"` (a pool's agents)",
            ));
        }
        None => 0,
        Some(n)
            if *n.get_ref() < 0
                || *n.get_ref() > 1024
                || (*n.get_ref() == 0 && hosts.is_empty()) =>
        {
            let lo = if hosts.is_empty() { 1 } else { 0 };
            return Err(src.error(
                n.span(),
                format!(
                    "agents.local must be between {lo} and 1024, not {}",
                    n.get_ref()
                ),
            ));
        }
        Some(n) => *n.get_ref() as u32,
    };
    let per_host = match raw.per_host {
        Some(n) if *n.get_ref() < 1 || *n.get_ref() > 256 => {
            return Err(src.error(
                n.span(),
                format!(
                    "agents.per_host must be between 1 and 256, not {}",
                    n.get_ref()
                ),
            ));
        }
        Some(n) => *n.get_ref() as u32,
        None => 1,
    };
    let min_hosts = match raw.min_hosts {
        Some(n) if *n.get_ref() < 0 || *n.get_ref() as usize > hosts.len() => {
            return Err(src.error(
                n.span(),
                format!(
                    "agents.min_hosts must be between 0 and the number of hosts ({}), not {}",
                    hosts.len(),
                    n.get_ref()
                ),
            ));
        }
        Some(n) => *n.get_ref() as usize,
        None => hosts.len(),
    };
    let remote_dir = match raw.remote_dir {
        Some(d)
            if d.get_ref().trim().is_empty()
                || !(d.get_ref().starts_with('/') || d.get_ref().starts_with('~')) =>
        {
            return Err(src.error(
                d.span(),
                "agents.remote_dir must be an absolute path or start with ~/",
            ));
        }
        Some(d) => d.into_inner(),
        None => "~/.fleetbench".to_string(),
    };
    let attach_timeout = match &raw.attach_timeout {
        Some(t) => positive(src, t, "agents.attach_timeout")?,
        None => Duration::from_secs(30),
    };
    let split = match raw.split {
        None => Split::Even,
        Some(s) => {
            let span = s.span();
            match s.into_inner() {
                RawSplit::Named(n) if n == "even" => Split::Even,
                RawSplit::Named(n) if n == "cores" => Split::Cores,
                RawSplit::Named(n) => {
                    return Err(src.error(
                        span,
                        format!("agents.split {n:?} is not \"even\", \"cores\" or a list of weights like [1, 2, 1]"),
                    ));
                }
                RawSplit::Weights(w) => {
                    let w: Vec<f64> = w.into_iter().map(Number::get).collect();
                    if w.iter().any(|x| !x.is_finite() || *x < 0.0) || w.iter().sum::<f64>() <= 0.0
                    {
                        return Err(src.error(
                            span,
                            "agents.split weights must be zero or more, and not all zero",
                        ));
                    }
                    Split::Weights(w)
                }
            }
        }
    };
    Ok(Agents {
        split,
        local,
        hosts,
        per_host,
        identity: raw.identity,
        known_hosts: raw.known_hosts,
        remote_dir,
        min_hosts,
        attach_timeout,
        pool,
    })
}

/// `pool`, `count` and `labels` of `[agents]`.
fn validate_pool(
    src: &Source,
    raw: &RawAgents,
    no_hosts: bool,
) -> Result<Option<PoolUse>, SpecError> {
    let Some(name) = &raw.pool else {
        if let Some(c) = &raw.count {
            return Err(src.error(c.span(), "agents.count needs `pool = \"NAME\"`"));
        }
        if let Some(l) = &raw.labels {
            return Err(src.error(l.span(), "agents.labels needs `pool = \"NAME\"`"));
        }
        return Ok(None);
    };
    if !valid_pool_name(name.get_ref()) {
        return Err(src.error(
            name.span(),
            "agents.pool must be a pool name: 1 to 64 letters, digits, '.', '-' or '_'",
        ));
    }
    if let Some(l) = &raw.local {
        return Err(src.error(
            l.span(),
            "agents.local cannot be used with agents.pool: a run takes its agents from the pool",
        ));
    }
    if !no_hosts {
        return Err(src.error(
            name.span(),
            "agents.hosts cannot be used with agents.pool: the pool's hosts are set by `coordinator pool up`",
        ));
    }
    let count = match &raw.count {
        Some(n) if !(1..=100_000).contains(n.get_ref()) => {
            return Err(src.error(
                n.span(),
                format!(
                    "agents.count must be between 1 and 100000, not {}",
                    n.get_ref()
                ),
            ));
        }
        Some(n) => Some(*n.get_ref() as u32),
        None => None,
    };
    Ok(Some(PoolUse {
        name: name.get_ref().clone(),
        count,
        labels: raw
            .labels
            .as_ref()
            .map(|l| l.get_ref().clone())
            .unwrap_or_default(),
    }))
}

/// A pool's name: it names a directory and shows in agent ids.
pub fn valid_pool_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        && !name.starts_with('.')
}

fn validate_service(
    src: &Source,
    s: RawService,
    earlier: &[Service],
) -> Result<Service, SpecError> {
    let name_span = s.name.span();
    let name = s.name.into_inner();
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    {
        return Err(src.error(
            name_span,
            format!("service name {name:?} must be non-empty letters, digits, '-', '_' or '.'"),
        ));
    }
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
        (Some(c), _) => {
            let command_span = c.span();
            match c.into_inner() {
                RawCommand::Shell(c) if c.trim().is_empty() => None,
                RawCommand::Shell(c) => Some(Command::Shell(c)),
                RawCommand::Argv(a) if a.is_empty() || a[0].is_empty() => None,
                RawCommand::Argv(a) => Some(Command::Argv(a)),
            }
            .ok_or_else(|| src.error(command_span, "service command must not be empty"))?
        }
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
        Some(r) => {
            let r_span = r.span();
            let r = r.into_inner();
            let ready = match (r.tcp, r.http) {
                (Some(t), None) => {
                    let span = t.span();
                    match t.into_inner() {
                        RawTcp::Port(p) if (1..=65535).contains(&p) => {
                            Some(Ready::TcpPort(p as u16))
                        }
                        RawTcp::Port(p) => {
                            return Err(src.error(
                                span,
                                format!("ready.tcp port must be 1 to 65535, not {p}"),
                            ));
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
                            Some(Ready::TcpAddr(text))
                        }
                    }
                }
                (None, Some(u)) => {
                    crate::phase::check_url(u.get_ref()).map_err(|why| {
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
            (ready, timeout)
        }
    };
    for key in s.env.keys() {
        let ok = key
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !ok {
            return Err(src.error(
                name_span.clone(),
                format!("service {name:?}: env name {key:?} must be letters, digits and '_', not starting with a digit"),
            ));
        }
    }
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

/// Every `{service.NAME.host}` in `text` names a defined service.
fn check_service_refs(
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

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[run]
name = "quickstart"

[agents]
local = 2

[[phase]]
name = "load"
duration = "10s"
warmup = "2s"

[phase.http]
url = "http://127.0.0.1:18080/"
concurrency = 16
"#;

    fn reject(text: &str) -> String {
        match Workload::parse("w.toml", text) {
            Ok(w) => panic!("accepted: {w:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn the_issue_example_parses() {
        let w = Workload::parse("w.toml", GOOD).unwrap();
        assert_eq!(w.name, "quickstart");
        assert_eq!(w.agents.local, 2);
        assert_eq!(w.phases[0].duration, Duration::from_secs(10));
        assert_eq!(w.phases[0].warmup, Duration::from_secs(2));
        assert_eq!(w.phases[0].load, Load::Closed { concurrency: 16 });
    }

    #[test]
    fn unknown_key_names_the_key_and_line() {
        let e = reject(&GOOD.replace("concurrency = 16", "concurrency = 16\nrats = 5"));
        assert!(e.starts_with("w.toml:16:1: "), "{e}");
        assert!(e.contains("rats"), "{e}");
    }

    #[test]
    fn zero_rate_is_rejected_with_position() {
        let e = reject(&GOOD.replace("concurrency = 16", "rate = 0"));
        assert_eq!(
            e,
            "w.toml:15:8: phase \"load\": rate must be a number of requests per second above zero (at most 1e9), not 0"
        );
    }

    #[test]
    fn bad_duration_says_how_to_write_one() {
        let e = reject(&GOOD.replace("\"10s\"", "\"ten\""));
        assert!(
            e.starts_with("w.toml:10:12: phase.duration: \"ten\" is not a duration"),
            "{e}"
        );
        assert!(e.contains("\"30s\""), "{e}");
    }

    #[test]
    fn https_and_garbage_urls_are_rejected() {
        let e = reject(&GOOD.replace("http://127.0.0.1:18080/", "https://x/"));
        assert!(e.contains("https"), "{e}");
        let e = reject(&GOOD.replace("http://127.0.0.1:18080/", "127.0.0.1:18080"));
        assert!(e.contains("must start with http://"), "{e}");
        let e = reject(&GOOD.replace("http://127.0.0.1:18080/", "http://:80/"));
        assert!(e.contains("has no host"), "{e}");
        let e = reject(&GOOD.replace("18080", "99999"));
        assert!(e.contains("bad port"), "{e}");
    }

    #[test]
    fn missing_keys_are_named() {
        let e = reject(&GOOD.replace("duration = \"10s\"\n", ""));
        assert!(e.contains("duration"), "{e}");
        let e = reject(&GOOD.replace("concurrency = 16\n", ""));
        assert!(e.contains("needs `concurrency = N`"), "{e}");
        let e = reject(&GOOD.replace("local = 2", ""));
        assert!(e.contains("needs `local = N`"), "{e}");
    }

    #[test]
    fn warmup_must_fit() {
        let e = reject(&GOOD.replace("\"2s\"", "\"1500ms\""));
        assert!(e.contains("whole number of 1s windows"), "{e}");
        let e = reject(&GOOD.replace("\"2s\"", "\"10s\""));
        assert!(e.contains("must be shorter than phase.duration"), "{e}");
    }

    #[test]
    fn ssh_hosts_parse_and_bad_ones_are_named() {
        let text = GOOD.replace(
            "local = 2",
            "hosts = [\"bench@10.1.0.11\", \"bench@10.1.0.12:2222\"]\nper_host = 3",
        );
        let w = Workload::parse("w.toml", &text).unwrap();
        assert_eq!(w.agents.local, 0);
        assert_eq!(w.agents.hosts[1].port, 2222);
        assert_eq!(w.agents.count(), 6);
        assert_eq!(w.agents.min_hosts, 2);
        assert_eq!(w.agents.remote_dir, "~/.fleetbench");
        let e = reject(&GOOD.replace("local = 2", "hosts = [\"bench@:22\"]"));
        assert!(e.starts_with("w.toml:6:10: agents.hosts:"), "{e}");
        let e = reject(&GOOD.replace("local = 2", "hosts = [\"a@h\", \"a@h\"]"));
        assert!(e.contains("twice"), "{e}");
        let e = reject(&GOOD.replace("local = 2", "hosts = [\"a@h\"]\nmin_hosts = 2"));
        assert!(
            e.contains("agents.min_hosts must be between 0 and the number of hosts (1)"),
            "{e}"
        );
        let e = reject(&GOOD.replace("local = 2", "hosts = [\"a@h\"]\nremote_dir = \"relative\""));
        assert!(e.contains("remote_dir"), "{e}");
        let e = reject(&GOOD.replace("local = 2", "local = 0"));
        assert!(e.contains("between 1 and 1024"), "{e}");
    }

    #[test]
    fn pool_agents_parse_and_bad_ones_are_named() {
        let text = GOOD.replace(
            "local = 2",
            "pool = \"nightly\"\ncount = 3\nlabels = { zone = \"a\" }",
        );
        let w = Workload::parse("w.toml", &text).unwrap();
        let pool = w.agents.pool.as_ref().unwrap();
        assert_eq!(pool.name, "nightly");
        assert_eq!(pool.count, Some(3));
        assert_eq!(pool.labels["zone"], "a");
        assert_eq!(w.agents.count(), 3);
        let e = reject(&GOOD.replace("local = 2", "pool = \"a/b\""));
        assert!(e.contains("agents.pool must be a pool name"), "{e}");
        let e = reject(&GOOD.replace("local = 2", "local = 2\npool = \"p\""));
        assert!(
            e.contains("agents.local cannot be used with agents.pool"),
            "{e}"
        );
        let e = reject(&GOOD.replace("local = 2", "hosts = [\"a@h\"]\npool = \"p\""));
        assert!(
            e.contains("agents.hosts cannot be used with agents.pool"),
            "{e}"
        );
        let e = reject(&GOOD.replace("local = 2", "pool = \"p\"\ncount = 0"));
        assert!(
            e.contains("agents.count must be between 1 and 100000, not 0"),
            "{e}"
        );
        let e = reject(&GOOD.replace("local = 2", "local = 2\ncount = 2"));
        assert!(e.contains("agents.count needs `pool"), "{e}");
        let e = reject(&GOOD.replace("local = 2", "pool = \"p\"\nsplit = [1, 2]"));
        assert!(
            e.contains("agents.split weights need agents.count with a pool"),
            "{e}"
        );
    }

    #[test]
    fn ssh_host_strings() {
        let h: SshHost = "u@[fe80::1]:2200".parse().unwrap();
        assert_eq!((h.host.as_str(), h.port), ("fe80::1", 2200));
        assert_eq!(h.to_string(), "u@[fe80::1]:2200");
        assert!("u@h:0".parse::<SshHost>().is_err());
        assert!("u@h:x".parse::<SshHost>().is_err());
        assert!("u@fe80::1".parse::<SshHost>().is_err(), "unbracketed IPv6");
        assert!("u@h;rm".parse::<SshHost>().is_err());
        assert_eq!("root@h1".parse::<SshHost>().unwrap().to_string(), "root@h1");
    }

    #[test]
    fn remote_services_and_url_templates() {
        let text = GOOD.replace(
            "[[phase]]",
            "[[service]]\nname = \"target\"\nhosts = [\"root@10.0.0.14\"]\nbinary = \"{agent}\"\nargs = [\"serve\", \"--listen\", \"0.0.0.0:8080\"]\nready = { tcp = 8080 }\n\n[[phase]]",
        )
        .replace("http://127.0.0.1:18080/", "http://{service.target.host}:8080/");
        let w = Workload::parse("w.toml", &text).unwrap();
        let s = &w.services[0];
        assert_eq!(s.ready, Some(Ready::TcpPort(8080)));
        assert_eq!(
            s.command,
            Command::Argv(vec![
                "{binary}".into(),
                "serve".into(),
                "--listen".into(),
                "0.0.0.0:8080".into()
            ])
        );
        let OpKind::Http(h) = &w.phases[0].ops[0].kind else {
            panic!()
        };
        assert_eq!(
            expand_service_hosts(&h.url, &w.services),
            "http://10.0.0.14:8080/"
        );
        let e = reject(&text.replace("{service.target.host}", "{service.nope.host}"));
        assert!(
            e.contains("names no service's host") && e.contains("target"),
            "{e}"
        );
        let e = reject(&text.replace("binary = \"{agent}\"\n", ""));
        assert!(e.contains("needs `command`"), "{e}");
        let e = reject(&text.replace("tcp = 8080", "tcp = 70000"));
        assert!(e.contains("1 to 65535"), "{e}");
    }

    #[test]
    fn synthetic_phase_parses() {
        let text = GOOD.replace(
            "[phase.http]\nurl = \"http://127.0.0.1:18080/\"\nconcurrency = 16",
            "[phase.synthetic]\nlatency = { dist = \"exponential\", mean = \"2ms\" }\nerror_ratio = 0.01\nrate = 1000",
        );
        let w = Workload::parse("w.toml", &text).unwrap();
        match &w.phases[0].ops[0].kind {
            OpKind::Synthetic(s) => {
                assert_eq!(
                    s.latency,
                    fleetbench_gen::rng::Latency::Exponential { mean: 2000 }
                );
                assert_eq!(s.error_ratio, 0.01);
            }
            other => panic!("{other:?}"),
        }
        assert!(
            matches!(&w.phases[0].load, Load::Open { shape, .. } if shape.rate_at(3.0) == 1000.0)
        );
    }
}
