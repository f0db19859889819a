//! `coordinator preview WORKLOAD`: the requests one worker of one agent
//! would send, rendered from the seeded generators, without sending any.

use std::io::Write as _;
use std::process::ExitCode;

use anyhow::Result;

use crate::cli::PreviewArgs;
use crate::error::BadInput;

pub(crate) fn preview(a: PreviewArgs) -> Result<ExitCode> {
    let (workload, _) =
        fleetbench_workload::Workload::load(&a.workload).map_err(|e| BadInput(e.into()))?;
    let phase = match &a.phase {
        None => &workload.phases[0],
        Some(name) => workload
            .phases
            .iter()
            .find(|p| &p.name == name)
            .ok_or_else(|| {
                let names: Vec<&str> = workload.phases.iter().map(|p| p.name.as_str()).collect();
                BadInput(anyhow::anyhow!(
                    "{} has no phase {name:?} (it has: {})",
                    a.workload.display(),
                    names.join(", ")
                ))
            })?,
    };
    let agents = workload.agents.count().max(1);
    if a.agent >= agents {
        return Err(BadInput(anyhow::anyhow!(
            "--agent {} is past the workload's {agents} agent(s) (indexes from 0)",
            a.agent
        ))
        .into());
    }
    let seat = fleetbench_workload::preview::Seat {
        agent: a.agent,
        agents,
        worker: a.worker,
    };
    // Streamed: each request is written as it is rendered, through one
    // buffer, so the first lines come at once and memory stays flat.
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    fleetbench_workload::preview::render_each(&workload, phase, seat, a.count, |r| {
        if a.json {
            serde_json::to_writer(&mut out, &r).map_err(std::io::Error::other)?;
            out.write_all(b"\n")
        } else {
            out.write_all(fleetbench_workload::preview::to_text(&r).as_bytes())
        }
    })?;
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}
