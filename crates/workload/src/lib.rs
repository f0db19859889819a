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
//!
//! # Layout
//! - `spec`: the file as a whole ([`Workload`]), `[run]`, and the checks
//!   that span tables.
//! - `agents`: `[agents]` ([`Agents`], [`Split`], [`PoolUse`], [`SshHost`]).
//! - `service`: `[[service]]` ([`Service`], [`Ready`], [`Command`]).
//! - `phase`: `[[phase]]`: length, load shape, think time, `until` ([`Phase`],
//!   [`Load`], [`Until`]).
//! - `ops`: what an iteration does: http, tcp, exec, synthetic ([`Op`],
//!   [`OpKind`]).
//! - `threshold`: `[[threshold]]` ([`Threshold`]), and the same written on
//!   one line (`report --threshold`).
//! - `generator`: `[generator.NAME]` tables into `fleetbench_gen::GenSpec`s;
//!   `data_file`: the CSV and line files they read.
//! - `source`: spans to positions ([`SpecError`]), and the raw values and
//!   checks every table shares.
//! - [`preview`]: a worker's requests, rendered as the agent would send them.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod agents;
mod data_file;
mod generator;
mod grpc;
mod ops;
mod phase;
pub mod preview;
mod service;
mod source;
mod spec;
mod threshold;
mod tls;

pub use agents::{Agents, OnLoss, PoolUse, Split, SshHost, valid_pool_name};
pub use grpc::{GRPC_CODES, Grpc};
pub use ops::{Exec, Http, HttpVersion, Op, OpKind, Synthetic, Tcp, TcpRead};
pub use phase::{
    Arrival, DEFAULT_MAX_CONNECTIONS, Load, MAX_SEND_SLACK, Phase, Segment, Shape, Until,
};
pub use service::{Command, Ready, Service, expand_service_hosts};
pub use source::{SpecError, WINDOW};
pub use spec::Workload;
pub use threshold::{METRICS, Threshold};
pub use tls::{PemFile, Tls};
