//! The event log and everything that reads it back.
//!
//! # Layout
//! - `event_log`: the append-only sled log, one database per run
//!   ([`EventLog`] writes, [`LogReader`] reads while it does).
//! - `history`: runs read back into a fold, directly or through the
//!   coordinator still writing them (`runs`, `report`, `compare`, `export`).
//! - `replay`: `replay --follow` and `--speed`, the live view fed from a log.
//! - `generate`: the hidden `generate-run`, synthetic runs written straight
//!   into a log (bench/replay.sh).
//!
//! The hub writes the log; nothing here knows the hub.

mod event_log;
pub(crate) mod generate;
pub(crate) mod history;
pub(crate) mod replay;

pub(crate) use event_log::{EventLog, LogError, LogReader, list_runs, run_dir};
