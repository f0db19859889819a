//! fleetbench's wire contract: what the coordinator and the agent must agree
//! on, and nothing else.
//!
//! - [`pb`]: the generated wire and log types (proto/fleetbench.proto). They
//!   stay at the edges: the coordinator and the agent convert them into
//!   their domain types.
//! - [`window`]: one window of results (counts, error classes, bytes, an HDR
//!   latency histogram) as the agent accumulates it and the wire carries it,
//!   and the histogram codec the fold merges with.
//! - [`credentials`]: what an agent needs to attach (address, pinned
//!   certificate fingerprint, id, secret).
//! - [`tls`]: dialing the coordinator over TLS pinned to its certificate's
//!   fingerprint (the agent's link, and `report` on a running run).
//! - [`binary`]: the hash that identifies an agent binary.
//! - [`clock`]: Unix-microsecond time and human durations.
//!
//! Every other crate of the workspace may depend on this one; it depends on
//! none of them. The agent links it, so it stays small: no TOML, no sled,
//! no SSH, no rendering.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod binary;
pub mod clock;
pub mod credentials;
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
