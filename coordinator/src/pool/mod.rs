//! Long-lived agent pools: agents bootstrapped once that stay up between
//! runs, so that a run needs no SSH at all.
//!
//! A pool lives in `DATA/pools/NAME/` (see `record`). On a host, a pool
//! agent's files are `REMOTE/pools/NAME/<id>.creds` (0600) and `<id>.log`,
//! beside the content-addressed `REMOTE/bin/agent-<sha256>` that runs too
//! use. Pool agents dial the pool's fixed port; every coordinator process
//! that serves the pool (a run using it, `pool ls`, `pool up`, `pool
//! upgrade`) listens there with the one TLS identity of `DATA/tls`, holding
//! the `holder` lock, so one process at a time serves a pool and two runs
//! never hold the same agent.
//!
//! This module owns the pool commands and the record; the agents' side of a
//! pool is in the agent's `link`, the admission rules in `hub`, and a run
//! that takes its agents from a pool in `run::pool_use`.
//!
//! # Layout
//! - `record`: `pool.json`, `secrets.json`, `seen.json`, the holder lock.
//! - `lookout`: the look-only hub that sees who dials in.
//! - `remote`: what the commands run on a host, in an SSH session.
//! - `up`, `ls`, `upgrade`, `down`, `enroll`: one file per command.

mod down;
mod enroll;
mod lookout;
mod ls;
pub(crate) mod record;
mod remote;
mod up;
mod upgrade;

pub(crate) use down::down;
pub(crate) use enroll::enroll;
pub(crate) use ls::ls;
pub(crate) use up::up;
pub(crate) use upgrade::upgrade;
