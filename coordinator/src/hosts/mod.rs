//! Reaching hosts: SSH sessions, known_hosts, turning a host into agents,
//! the fleet of a run, and the `[[service]]` processes around it.
//!
//! # Layout
//! - `known_hosts`: known_hosts parsing and learning.
//! - `ssh`: the russh client (connect, host key check, auth, exec).
//! - `bootstrap`: one host: probe, content-addressed upload, exec check,
//!   credentials, detached start.
//! - `fleet`: every host in parallel, with progress, and cleanup.
//! - `listeners`: who listens on a TCP port, from /proc (here or a host's).
//! - `services`: `[[service]]` processes, local and on SSH hosts.
//!
//! Each module here uses only those listed above it, and the hub (to log).

pub(crate) mod bootstrap;
pub(crate) mod fleet;
pub(crate) mod known_hosts;
pub(crate) mod listeners;
pub(crate) mod services;
pub(crate) mod ssh;
