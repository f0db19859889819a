//! `coordinator preview WORKLOAD`: the requests one worker of one agent
//! would send, rendered from the seeded generators, without sending any.

use std::process::ExitCode;

use anyhow::Result;

use crate::cli::PreviewArgs;
use crate::error::BadInput;
use crate::output;

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
    for r in fleetbench_workload::preview::render(&workload, phase, seat, a.count) {
        let line = if a.json {
            format!("{}\n", serde_json::to_string(&r).expect("plain data"))
        } else {
            fleetbench_workload::preview::to_text(&r)
        };
        output::print(line)?;
    }
    Ok(ExitCode::SUCCESS)
}
