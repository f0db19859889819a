//! fleetbench's shared core: everything the coordinator and the agent agree on.
//!
//! # Layout
//! - [`pb`]: the generated wire and log types (proto/fleetbench.proto). They
//!   stay at the edges: the coordinator and the agent convert them into the
//!   domain types below.
//! - [`spec`]: the workload file. Parse (raw TOML structs that deny unknown
//!   keys), then validate into a [`spec::Workload`] that cannot hold a zero
//!   rate or a bad URL; errors name the file, line and column.
//! - [`window`]: one window of results (counts, error classes, bytes, an HDR
//!   latency histogram) as the agent accumulates it and the wire carries it.
//! - [`fold`]: the one aggregation over a run's log records. The live view,
//!   the end-of-run summary and `report` all call it.
//! - [`generator`]: generated data: `[generator.NAME]` specs, `{{NAME}}`
//!   templates, and their rendering per worker (seeded, allocation-free).
//! - [`report`]: renders what the fold computed as a table, JSON, CSV or HTML.
//! - [`html`]: the HTML report of a run and of two runs compared: one
//!   self-contained page with SVG charts (plotters).
//! - [`compare`]: two runs' reports side by side, change against noise,
//!   regression limits.
//! - [`export`]: a run's windows (per agent) or raw log records as JSON
//!   Lines or CSV.
//! - [`stats`]: the Mann-Whitney U test `compare` tells change from noise with.
//! - [`binary`]: the hash that identifies an agent binary.
//! - [`credentials`]: what an agent needs to attach (address, pinned
//!   certificate fingerprint, id, secret).
//! - [`tls`]: dialing the coordinator over TLS pinned to its certificate's
//!   fingerprint (the agent's link, and `report` on a running run).
//! - [`clock`]: Unix-microsecond time and human durations.
//! - [`rng`]: a small seeded generator and the latency distributions of the
//!   synthetic workload; deterministic across platforms and crate versions.
//!
//! The event log itself (sled) lives in the coordinator crate: the agent links
//! this crate and must not link sled.

#![forbid(unsafe_code)]

pub mod binary;
pub mod clock;
pub mod compare;
pub mod credentials;
pub mod export;
pub mod fold;
pub mod generator;
pub mod html;
pub mod phase;
pub mod preview;
pub mod report;
pub mod rng;
pub mod spec;
pub mod stats;
pub mod tls;
pub mod window;

/// Generated protobuf types and gRPC stubs, package `fleetbench.v1`.
#[allow(clippy::all, missing_docs)]
pub mod pb {
    tonic::include_proto!("fleetbench.v1");
}

/// Version of fleetbench, shared by the coordinator and the agent.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Revision of the wire protocol spoken by this build (`Hello.protocol`).
pub const PROTOCOL: u32 = 1;
