//! The event log and everything that reads it back.
//!
//! # Layout
//! - `event_log`: the append-only sled log, one database per run
//!   ([`EventLog`] writes, [`LogReader`] reads while it does).
//! - `sealed`: a finished run's records in one checked, plain file
//!   (`sealed.log`), written when the run ends; what readers read, so that
//!   reading never opens (and so never rewrites) the sled database.
//! - `history`: runs read back into a fold: from the sealed file, through
//!   the coordinator still writing them, or (a run never sealed: its
//!   coordinator was killed) from a copy of its database
//!   (`runs`, `report`, `compare`, `export`, `verify`).
//! - `replay`: `replay --follow` and `--speed`, the live view fed from a log.
//! - `generate`: the hidden `generate-run`, synthetic runs written straight
//!   into a log (bench/replay.sh).
//!
//! The hub writes the log; nothing here knows the hub.

mod event_log;
pub(crate) mod generate;
pub(crate) mod history;
pub(crate) mod replay;
pub(crate) mod sealed;

pub(crate) use event_log::{EventLog, LogError, LogReader, list_runs, run_dir, seal};
