//! The workload file as a whole: the validated [`Workload`] the coordinator
//! runs, the top-level raw TOML (`[run]`, `[agents]`, `[[service]]`,
//! `[generator.NAME]`, `[[phase]]`, `[[threshold]]`), and the checks that
//! span tables (a phase's `{service.NAME.host}`, split weights against the
//! agent count).
//!
//! Each table validates in its own module; this one calls them in the
//! order the file's errors are reported, and names the file, the line and
//! the column of the first one.

use std::path::Path;

use serde::{Deserialize, Serialize};
use toml::Spanned;

use fleetbench_gen::GenSpec;

use crate::agents::{Agents, RawAgents, check_split, validate_agents};
use crate::generator::{RawGenerators, validate_all};
use crate::ops::OpKind;
use crate::phase::{Context, Phase, RawPhase, validate_phase};
use crate::service::{RawService, Service, check_service_refs, validate_service};
use crate::source::{Source, SpecError};
use crate::threshold::{RawThreshold, Threshold, validate_thresholds};

/// A validated workload.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Workload {
    /// `[run] name`, else the file's stem.
    pub name: String,
    /// Where the agents come from.
    pub agents: Agents,
    /// `[[service]]`s, in file order.
    pub services: Vec<Service>,
    /// `[generator.NAME]` tables, by name.
    pub generators: Vec<GenSpec>,
    /// `[run] seed`: the default seed of every phase's generators and op
    /// choice (0 when not given, so a file always means the same stream).
    pub seed: u64,
    /// `[[phase]]`s, at least one, run in file order.
    pub phases: Vec<Phase>,
    /// `[[threshold]]`s, in file order (each metric key of a table is one).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub thresholds: Vec<Threshold>,
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
    generator: RawGenerators,
    phase: Option<Spanned<Vec<Spanned<RawPhase>>>>,
    #[serde(default)]
    threshold: Vec<Spanned<RawThreshold>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRun {
    name: Option<Spanned<String>>,
    seed: Option<Spanned<i64>>,
}

// ---------------------------------------------------------------- validation

impl Workload {
    /// Reads and validates a workload file; also returns its text.
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
        let (name, seed) = validate_run(&src, raw.run)?;
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
        let generators = validate_all(&src, raw.generator, base_dir)?;
        let cx = Context {
            agents: agents.count(),
            generators: &generators,
            seed,
        };
        let phases = validate_phases(&src, raw_phases, &cx, &services)?;
        check_split(&src, &agents, agents_span)?;
        let thresholds = validate_thresholds(&src, raw.threshold, &phases)?;
        Ok(Workload {
            name,
            agents,
            services,
            generators,
            seed,
            phases,
            thresholds,
        })
    }

    /// The validated configuration as JSON, as the log records it.
    pub fn resolved_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("workload serializes: plain data")
    }
}

/// `[run]`: the run's name (default: the file's stem) and seed (default 0).
fn validate_run(src: &Source, run: Option<RawRun>) -> Result<(String, u64), SpecError> {
    let (run_name, run_seed) = match run {
        Some(r) => (r.name, r.seed),
        None => (None, None),
    };
    let seed = match &run_seed {
        Some(s) => {
            src.int_within(s, 0..=i64::MAX, |_| "run.seed must be zero or more".into())? as u64
        }
        None => 0,
    };
    let name = match run_name {
        Some(n) if n.get_ref().trim().is_empty() => {
            return Err(src.error(n.span(), "run.name must not be empty"));
        }
        Some(n) => n.into_inner(),
        None => Path::new(src.path)
            .file_stem()
            .map_or_else(|| "run".to_string(), |s| s.to_string_lossy().into_owned()),
    };
    Ok((name, seed))
}

/// Every `[[phase]]`, with distinct names, whose targets name only
/// defined services.
fn validate_phases(
    src: &Source,
    raw: Vec<Spanned<RawPhase>>,
    cx: &Context,
    services: &[Service],
) -> Result<Vec<Phase>, SpecError> {
    let mut phases: Vec<Phase> = Vec::new();
    for p in raw {
        let span = p.span();
        let phase = validate_phase(src, p, cx)?;
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
                OpKind::Http(h) => check_service_refs(src, span.clone(), &h.url, services)?,
                OpKind::Tcp(t) => check_service_refs(src, span.clone(), &t.address, services)?,
                OpKind::Grpc(g) => check_service_refs(src, span.clone(), &g.url, services)?,
                OpKind::Exec(_) | OpKind::Synthetic(_) => {}
            }
        }
        phases.push(phase);
    }
    Ok(phases)
}
