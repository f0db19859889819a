//! The workload language: a TOML file → a validated [`Workload`] → the wire
//! messages agents receive; every rejection names the file, line and column.
//! `coordinator preview` renders a worker's requests from it.
//!
//! Parse, then validate. The TOML deserializes into `Raw*` structs that deny
//! unknown keys and keep the source span of every value that validation may
//! reject; [`Workload::parse`] turns them into domain types that cannot hold
//! a zero rate, a bad duration or a URL the agent cannot dial.
//!
//! Depends on the root `fleetbench` crate (`pb`, clock) and `fleetbench-gen`
//! (generator types, templates, op choice). No I/O beyond reading the
//! workload file and its data files. The agent must never depend on this
//! crate (it would link the TOML parser); only the coordinator does.

#![forbid(unsafe_code)]

mod data_file;
mod generator;
pub mod phase;
pub mod preview;
mod source;
pub mod spec;

pub use source::{SpecError, WINDOW};
pub use spec::*;
