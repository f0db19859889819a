//! `coordinator enroll NAME`: an agent started by something else
//! (Kubernetes, systemd, cloud-init) admitted to a pool, with the
//! credentials file it needs.

use std::path::Path;

use anyhow::{Context, Result, anyhow};

use super::record::{Member, Pool};
use crate::cli::EnrollArgs;
use crate::error::BadInput;
use crate::hub;
use crate::output::outln;
use crate::trust;
use crate::trust::Trust;

/// `coordinator enroll NAME`: admits a new agent to the pool (a fresh id and
/// secret in the record) and writes the credentials file it needs, for an
/// agent started by something else (Kubernetes, systemd, cloud-init).
pub(crate) async fn enroll(data_dir: &Path, args: EnrollArgs) -> Result<()> {
    let mut pool = Pool::load(data_dir, &args.name).map_err(BadInput)?;
    let trust = Trust::load_or_create(data_dir)?;
    let id = pick_id(&pool, &args)?;
    let coordinator = dial_address(&pool, &args)?;
    let secret = trust::new_secret()?;
    let creds = fleetbench::credentials::Credentials {
        coordinator: coordinator.clone(),
        fingerprint: trust.fingerprint().to_string(),
        agent_id: id.clone(),
        secret: secret.clone(),
        run_id: String::new(),
        pool: args.name.clone(),
    };
    if let Some(path) = &args.output {
        trust::write_private(path, &creds.to_json())
            .with_context(|| format!("writing the credentials of agent {id}"))?;
    }
    pool.record.agents.push(Member {
        id: id.clone(),
        host: None,
        labels: args.labels.clone(),
        binary_hash: None,
    });
    pool.secrets.insert(id.clone(), secret);
    pool.save()?;
    match &args.output {
        Some(path) => {
            eprintln!(
                "agent {id} enrolled in pool {}; its credentials are in {} (mode 0600).\n\
                 Start it where it runs with:\n  agent attach --credentials {}\n\
                 (it dials {coordinator}, pinned to certificate {})",
                args.name,
                path.display(),
                path.display(),
                hub::short(trust.fingerprint())
            );
        }
        None => {
            outln!("{}", creds.to_json())?;
            eprintln!(
                "agent {id} enrolled in pool {}: put the line above in a file only its user can read (chmod 600) and run `agent attach --credentials FILE`",
                args.name
            );
        }
    }
    Ok(())
}

/// The new agent's id: `--id` (checked, not taken yet) or the first free
/// `enrolled-N`.
fn pick_id(pool: &Pool, args: &EnrollArgs) -> Result<String> {
    Ok(match &args.id {
        Some(id) => {
            if id.is_empty()
                || id.len() > 200
                || !id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._-:@#".contains(&b))
            {
                return Err(BadInput(anyhow!(
                    "agent id {id:?}: 1 to 200 letters, digits or ._-:@#"
                ))
                .into());
            }
            if pool.record.agents.iter().any(|m| &m.id == id) {
                return Err(
                    BadInput(anyhow!("pool {}: agent {id} exists already", args.name)).into(),
                );
            }
            id.clone()
        }
        None => (1..)
            .map(|n| format!("enrolled-{n}"))
            .find(|id| !pool.record.agents.iter().any(|m| &m.id == id))
            .expect("some number is free"),
    })
}

/// The address the agent dials: `--advertise`, the pool's advertise, or its
/// listen address unless that is every interface (then it must be said).
fn dial_address(pool: &Pool, args: &EnrollArgs) -> Result<String> {
    Ok(
        match args.advertise.clone().or(pool.record.advertise.clone()) {
            Some(a) => a,
            None if !pool.record.listen.ip().is_unspecified() => pool.record.listen.to_string(),
            None => {
                return Err(BadInput(anyhow!(
                "pool {} listens on {}: pass --advertise HOST:{}, the address the agent reaches this machine at",
                args.name,
                pool.record.listen,
                pool.record.listen.port()
            ))
            .into());
            }
        },
    )
}
