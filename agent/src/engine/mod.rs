//! The load engine: runs the phases the coordinator commands, one at a
//! time, and pushes their result windows into the outbox. It never talks to
//! the coordinator itself: the link hands it [`Command`]s and reads whether
//! it is idle.
//!
//! # Layout
//! - `command`: the command loop (one phase at a time).
//! - `plan`: a phase as this agent runs it (its share, ops, schedule, budget).
//! - `phase`: one phase: its threads started, their windows merged and
//!   pushed, its start and end reported.
//! - `thread`: one load thread and its workers, and the windows they record.
//! - `schedule`: open-loop send times from a rate shape.
//! - `alarm`: precise wake-ups (a timerfd per load thread) for sends and
//!   synthetic latencies.
//! - `ops`: what an iteration runs (`http`, `tcp`, `exec`, `synthetic`).

mod alarm;
mod command;
mod ops;
mod phase;
mod plan;
mod schedule;
mod thread;

pub(crate) use command::{Command, EngineConfig, run};
