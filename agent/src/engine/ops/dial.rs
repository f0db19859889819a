//! Where an op's new connections go. An address in the URL is dialed as
//! is; a host name is resolved once per new connection (never per
//! request), the lookup's time kept as the request's `dns` stage, and the
//! connections are spread round-robin over every address (A and AAAA) the
//! name has. Which addresses were used, and how often, is said in a notice
//! at the phase's end.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use anyhow::{Context as _, Result, anyhow};
use fleetbench::window::Stage;

use super::slot::Scratch;

/// An op's target: an address, or a name to resolve per connection.
pub(crate) struct Dial {
    host: String,
    port: u16,
    /// Set when the URL holds an address: no lookup.
    fixed: Option<SocketAddr>,
    /// The round-robin's next turn.
    next: AtomicUsize,
    /// Connections per address, since the last notice.
    used: Mutex<BTreeMap<SocketAddr, u64>>,
}

impl Dial {
    /// The target `host:port`; a name must resolve now (a phase whose
    /// target has no address does not start).
    pub(crate) async fn new(host: &str, port: u16) -> Result<Dial> {
        let fixed = host
            .parse::<IpAddr>()
            .ok()
            .map(|ip| SocketAddr::new(ip, port));
        if fixed.is_none() {
            tokio::net::lookup_host((host, port))
                .await
                .with_context(|| format!("resolving {host}"))?
                .next()
                .ok_or_else(|| anyhow!("{host} has no address"))?;
        }
        Ok(Dial {
            host: host.to_string(),
            port,
            fixed,
            next: AtomicUsize::new(0),
            used: Mutex::new(BTreeMap::new()),
        })
    }

    /// The address for a new connection: the URL's, or the next of the
    /// name's addresses as resolved now (the lookup's time into `s`'s
    /// `dns` stage). `None`: the name did not resolve.
    pub(crate) async fn addr(&self, s: &mut Scratch) -> Option<SocketAddr> {
        let addr = match self.fixed {
            Some(a) => a,
            None => {
                let started = Instant::now();
                let found: Vec<SocketAddr> =
                    tokio::net::lookup_host((self.host.as_str(), self.port))
                        .await
                        .ok()?
                        .collect();
                s.stages[Stage::Dns as usize] =
                    Some(u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX));
                if found.is_empty() {
                    return None;
                }
                found[self.next.fetch_add(1, Ordering::Relaxed) % found.len()]
            }
        };
        *self
            .used
            .lock()
            .expect("never poisoned")
            .entry(addr)
            .or_default() += 1;
        Some(addr)
    }

    /// Where a name's connections went since the last call ("example.com
    /// resolved per connection: 10.0.0.1:443 x12, 10.0.0.2:443 x11");
    /// `None` for an address, or no connection.
    pub(crate) fn take_used(&self) -> Option<String> {
        let used = std::mem::take(&mut *self.used.lock().expect("never poisoned"));
        if self.fixed.is_some() || used.is_empty() {
            return None;
        }
        let spread: Vec<String> = used.iter().map(|(a, n)| format!("{a} x{n}")).collect();
        Some(format!(
            "{} resolved per connection: {}",
            self.host,
            spread.join(", ")
        ))
    }
}
