//! `coordinator verify [RUN | --all]`: checks runs' logs and says which are
//! whole, incomplete or damaged, without writing to any of them.

use std::path::Path;
use std::process::ExitCode;

use anyhow::{Result, anyhow};

use crate::cli::VerifyArgs;
use crate::error::BadInput;
use crate::log::history::{self, Damaged};
use crate::log::sealed::SEALED;
use crate::log::{list_runs, run_dir};
use crate::output;

/// What a check found of one run.
enum Found {
    /// Sealed, and every record, checksum and the chain hash check out.
    Whole(u64),
    /// Readable, but never sealed: its coordinator did not finish.
    Unsealed(u64),
    /// A coordinator is writing it.
    Running(u64),
    Damaged(String),
    /// It could not be read at all (not damage: a permission, say).
    Unreadable(String),
}

pub(crate) async fn verify(data: &Path, a: VerifyArgs) -> Result<ExitCode> {
    let ids = match (&a.run, a.all) {
        (Some(run), false) => vec![history::resolve(data, run).map_err(BadInput)?],
        (None, true) => list_runs(data)?,
        (Some(_), true) => return Err(BadInput(anyhow!("give a run or --all, not both")).into()),
        (None, false) => {
            return Err(
                BadInput(anyhow!("which run? give a run id (or `latest`), or --all")).into(),
            );
        }
    };
    let (mut damaged, mut unreadable) = (0, 0);
    let mut out = String::new();
    for id in &ids {
        let (word, detail) = match check(data, id).await {
            Found::Whole(n) => ("whole", format!("{n} records, sealed")),
            Found::Unsealed(n) => (
                "incomplete",
                format!("{n} records, not sealed (its coordinator did not finish)"),
            ),
            Found::Running(n) => ("running", format!("{n} records so far")),
            Found::Damaged(why) => {
                damaged += 1;
                ("DAMAGED", why)
            }
            Found::Unreadable(why) => {
                unreadable += 1;
                ("UNREADABLE", why)
            }
        };
        out.push_str(&format!("{id}  {word:<10}  {detail}\n"));
    }
    if ids.is_empty() {
        out.push_str(&format!("no runs in {}\n", data.display()));
    }
    output::print(out)?;
    Ok(match (damaged, unreadable) {
        (0, 0) => ExitCode::SUCCESS,
        (0, _) => ExitCode::FAILURE,
        _ => ExitCode::from(4),
    })
}

async fn check(data: &Path, id: &str) -> Found {
    let sealed = run_dir(data, id).join(SEALED).exists();
    let mut n = 0u64;
    match history::scan(data, id, &mut |_, _| {
        n += 1;
        Ok(())
    })
    .await
    {
        Ok(true) => Found::Running(n),
        Ok(false) if sealed => Found::Whole(n),
        Ok(false) => Found::Unsealed(n),
        Err(e) => match e.downcast_ref::<Damaged>() {
            Some(d) => Found::Damaged(d.detail.clone()),
            None => Found::Unreadable(format!("{e:#}")),
        },
    }
}
