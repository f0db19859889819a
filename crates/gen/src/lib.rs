//! The deterministic per-worker runtime that the coordinator and the agent
//! must agree on bit for bit: seeded random streams ([`rng`]), the
//! generators' domain types ([`GenSpec`]) and wire form, `{{name}}`
//! templates, rendering per worker ([`WorkerGen`]), and the weighted op
//! choice with its stream seeds ([`OpPicker`], [`worker_seed`]).
//!
//! Depends only on the root `fleetbench` crate (for `pb`), serde and
//! humantime (RFC 3339 timestamps); the root crate, the wire contract below
//! it, must never depend on this one. The agent links this crate, not the
//! workload language: nothing here parses TOML or reads files. The workload
//! crate builds [`GenSpec`]s from a file; `coordinator preview` and the
//! agent's load engine render them.
//!
//! # Determinism
//! A generator's stream depends only on its seed (its own `seed`, else the
//! run's), a stable hash of its name (FNV-1a), the agent index and the worker
//! index: the same seed gives the same values for the same agent and worker
//! on every run and machine; another seed gives other values. The exceptions
//! are `timestamp` (the current time) and a `file` whose rows changed. The
//! float draws use `ln`/`exp`/`cos` of the platform's libm; the agent binary
//! is static, so every host runs the same code.
//!
//! # Per iteration
//! Within one iteration ([`WorkerGen::begin`]), a generator referenced several
//! times (in the URL and the body, say) yields the same value: it is drawn
//! once, lazily, into a buffer that is reused, so rendering allocates nothing
//! once the buffers have grown.
//!
//! # Sequences and files across agents and workers
//! With `Lane { agent: a, agents: A, worker: w, workers: W }`, worker `w` of
//! agent `a` is lane `a·W + w` of `A·W`. A `sequence` yields
//! `start + step·(lane + k·A·W)` on its `k`-th draw: every value once across
//! the fleet when every agent passes the same `W` (an agent with fewer workers
//! leaves gaps, never duplicates). A `file` in sequential order: worker `w`
//! takes rows `w, w+W, w+2W, …` (modulo the row count) of the rows its agent
//! holds: the whole file, or with `split = true` the agent's own contiguous
//! slice (agents' slices are disjoint and cover the file).

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod picker;
pub mod rng;
mod rows;
mod seed;
mod spec;
mod template;
mod wire;
mod worker;
mod zipf;

pub use picker::{OpPicker, STREAM_DRAWS, STREAM_OPS, STREAM_PACE, worker_seed};
pub use rows::{MAX_FILE_BYTES, Rows};
pub use seed::{fnv1a, stream_seed};
pub use spec::{
    Alphabet, BUILTINS, DEFAULT_PRECISION, EXACT, GenKind, GenSpec, Length, MAX_LENGTH, Order,
    TimeFormat,
};
pub use template::Template;
pub use worker::{Lane, WorkerGen};
