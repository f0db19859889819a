//! The load engine: runs the phases the coordinator commands, one at a
//! time, and pushes their result windows into the outbox. It never talks to
//! the coordinator itself: the link hands it [`Command`]s and reads whether
//! it is idle.
//!
//! # Layout
//! - `load`: the command loop, a phase's threads and their workers, and the
//!   windows they record.
//! - `schedule`: open-loop send times from a rate shape.
//! - `ops`: what an iteration runs (`http`, `tcp`, `exec`, `synthetic`).

mod load;
mod ops;
mod schedule;

pub(crate) use load::{Command, EngineConfig, run};
