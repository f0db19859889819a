//! `[agents]`: where a run's agents come from (local processes, SSH hosts,
//! or a long-lived pool) and how each phase's load is split over them.
//!
//! Starting agents, bootstrapping hosts and serving pools are the
//! coordinator's; this module only says what the file asks for.

use std::collections::BTreeMap;
use std::ops::Range;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use toml::Spanned;

use crate::source::{Number, Source, SpecError, count, duration_text, positive};

/// The validated `[agents]` table.
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
    /// What the run does when an agent is lost during a phase.
    pub on_loss: OnLoss,
    /// With `on_loss = "continue"`: the run stops once fewer agents than
    /// this are left (`None`: it goes on with any).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min: Option<u32>,
}

/// `[agents] on_loss`: what losing an agent during a phase does to the run.
/// Either way the verdict is `invalid`, naming the agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OnLoss {
    /// The phase and the run go on without it (while `min` agents are
    /// left): the default.
    Continue,
    /// The run stops at once.
    Fail,
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
    /// The pool's name (see [`valid_pool_name`]).
    pub name: String,
    /// Agents to take; None: every agent of the pool that matches.
    pub count: Option<u32>,
    /// Only agents carrying every one of these labels.
    pub labels: BTreeMap<String, String>,
}

/// `user@host[:port]`: an SSH host.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct SshHost {
    /// The login user (`$USER`, else root, when the text names none).
    pub user: String,
    /// Host name or address (an IPv6 address without its brackets).
    pub host: String,
    /// SSH port, 22 unless written.
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

/// A pool's name: it names a directory and shows in agent ids.
pub fn valid_pool_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        && !name.starts_with('.')
}

// ---------------------------------------------------------------- raw TOML

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAgents {
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
    on_loss: Option<Spanned<String>>,
    min: Option<Spanned<i64>>,
    count: Option<Spanned<i64>>,
    labels: Option<Spanned<BTreeMap<String, String>>>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RawSplit {
    Named(String),
    Weights(Vec<Number>),
}

// ---------------------------------------------------------------- validation

/// Validates `[agents]` on its own. The split's weights are checked against
/// the agent count later, by [`check_split`], once the phases are valid.
pub(crate) fn validate_agents(src: &Source, raw: Spanned<RawAgents>) -> Result<Agents, SpecError> {
    let span = raw.span();
    let raw = raw.into_inner();
    let pool = validate_pool(src, &raw, raw.hosts.as_ref().is_none_or(Vec::is_empty))?;
    let hosts = validate_hosts(src, raw.hosts.unwrap_or_default())?;
    let local = validate_local(src, raw.local, &hosts, pool.is_some(), span)?;
    let per_host = match &raw.per_host {
        Some(n) => src.int_within(n, 1..=256, |v| {
            format!("agents.per_host must be between 1 and 256, not {v}")
        })? as u32,
        None => 1,
    };
    let min_hosts = match &raw.min_hosts {
        Some(n) => src.int_within(n, 0..=hosts.len() as i64, |v| {
            format!(
                "agents.min_hosts must be between 0 and the number of hosts ({}), not {v}",
                hosts.len()
            )
        })? as usize,
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
        Some(s) => validate_split(src, s)?,
    };
    let on_loss = match &raw.on_loss {
        None => OnLoss::Continue,
        Some(s) => match s.get_ref().as_str() {
            "continue" => OnLoss::Continue,
            "fail" => OnLoss::Fail,
            other => {
                return Err(src.error(
                    s.span(),
                    format!("agents.on_loss is \"continue\" or \"fail\", not {other:?}"),
                ));
            }
        },
    };
    let mut agents = Agents {
        on_loss,
        min: None,
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
    };
    if let Some(n) = &raw.min {
        let count = agents.count();
        agents.min = Some(src.int_within(n, 1..=i64::from(count.max(1)), |v| {
            format!("agents.min must be between 1 and the run's {count} agent(s), not {v}")
        })? as u32);
    }
    Ok(agents)
}

/// `hosts`: each one parsed, none twice.
fn validate_hosts(src: &Source, raw: Vec<Spanned<String>>) -> Result<Vec<SshHost>, SpecError> {
    let mut hosts = Vec::new();
    for h in raw {
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
    Ok(hosts)
}

/// `local`: required unless there are hosts or a pool; at least 1 without
/// hosts. `table` is the span of `[agents]`, for a missing key.
fn validate_local(
    src: &Source,
    raw: Option<Spanned<i64>>,
    hosts: &[SshHost],
    pooled: bool,
    table: Range<usize>,
) -> Result<u32, SpecError> {
    match raw {
        None if pooled => Ok(0),
        None if hosts.is_empty() => Err(src.error(
            table,
            "[agents] needs `local = N` (agent processes on this machine), `hosts = [\"user@host\", ...]` (SSH hosts) or `pool = \"NAME\"` (a pool's agents)",
        )),
        None => Ok(0),
        Some(n) => {
            let lo = if hosts.is_empty() { 1 } else { 0 };
            let n = src.int_within(&n, lo..=1024, |v| {
                format!("agents.local must be between {lo} and 1024, not {v}")
            })?;
            Ok(n as u32)
        }
    }
}

/// `split`: "even", "cores" or a list of weights.
fn validate_split(src: &Source, s: Spanned<RawSplit>) -> Result<Split, SpecError> {
    let span = s.span();
    match s.into_inner() {
        RawSplit::Named(n) if n == "even" => Ok(Split::Even),
        RawSplit::Named(n) if n == "cores" => Ok(Split::Cores),
        RawSplit::Named(n) => Err(src.error(
            span,
            format!(
                "agents.split {n:?} is not \"even\", \"cores\" or a list of weights like [1, 2, 1]"
            ),
        )),
        RawSplit::Weights(w) => {
            let w: Vec<f64> = w.into_iter().map(Number::get).collect();
            if w.iter().any(|x| !x.is_finite() || *x < 0.0) || w.iter().sum::<f64>() <= 0.0 {
                return Err(src.error(
                    span,
                    "agents.split weights must be zero or more, and not all zero",
                ));
            }
            Ok(Split::Weights(w))
        }
    }
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
        Some(n) => Some(src.int_within(n, 1..=100_000, |v| {
            format!("agents.count must be between 1 and 100000, not {v}")
        })? as u32),
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

/// Explicit split weights fit the agents: one per agent, so a pool's
/// `count` must be given. `table` is the span of `[agents]`.
pub(crate) fn check_split(
    src: &Source,
    agents: &Agents,
    table: Range<usize>,
) -> Result<(), SpecError> {
    let Split::Weights(w) = &agents.split else {
        return Ok(());
    };
    if agents.pool.as_ref().is_some_and(|p| p.count.is_none()) {
        return Err(src.error(
            table,
            "agents.split weights need agents.count with a pool: one weight per agent taken, in the pool's order",
        ));
    }
    if w.len() != agents.count() as usize {
        return Err(src.error(
            table,
            format!(
                "agents.split lists {} for {}; give one per agent (local agents first, then per_host per host in order)",
                count(w.len(), "weight"),
                count(agents.count() as usize, "agent")
            ),
        ));
    }
    Ok(())
}
