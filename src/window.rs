//! One window of results: what an agent accumulates while load runs and what
//! crosses the wire once per window (never anything per request).
//!
//! A [`WindowAcc`] is recorded into on the agent's hot path, so recording
//! allocates nothing; [`WindowAcc::to_pb`] serializes the latency histogram
//! (HDR, microseconds, V2 + deflate) once per window.

use hdrhistogram::Histogram;
use hdrhistogram::serialization::{Deserializer, Serializer, V2DeflateSerializer};

use crate::pb;

/// Highest latency the histograms hold: one hour, in microseconds. Larger
/// values are recorded as this value and counted in `latency_clamped`.
pub const MAX_LATENCY_US: u64 = 3_600_000_000;

/// Significant decimal digits kept by the histograms (0.1% value resolution).
pub const SIGFIGS: u8 = 3;

/// An empty latency histogram with fleetbench's bounds.
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_LATENCY_US, SIGFIGS).expect("bounds are static and valid")
}

/// Serializes a histogram as V2 + deflate.
pub fn encode_histogram(h: &Histogram<u64>) -> Vec<u8> {
    let mut out = Vec::with_capacity(128);
    V2DeflateSerializer::new()
        .serialize(h, &mut out)
        .expect("serializing into a Vec cannot fail");
    out
}

/// Decodes a V2 (deflate or not) histogram; an empty byte string is an empty
/// histogram.
pub fn decode_histogram(bytes: &[u8]) -> Result<Histogram<u64>, String> {
    if bytes.is_empty() {
        return Ok(new_histogram());
    }
    let mut reader = bytes;
    Deserializer::new()
        .deserialize(&mut reader)
        .map_err(|e| format!("bad latency histogram: {e:?}"))
}

/// Why a request failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ErrorClass {
    /// The TCP connection could not be made.
    Connect,
    /// No complete response within the timeout.
    Timeout,
    /// A response with a 4xx status.
    Status4xx,
    /// A response with a 5xx status (or another non-success status).
    Status5xx,
    /// The connection broke mid-request or the response was malformed.
    Io,
    /// An error drawn by the synthetic workload.
    Synthetic,
}

impl ErrorClass {
    pub const ALL: [ErrorClass; 6] = [
        ErrorClass::Connect,
        ErrorClass::Timeout,
        ErrorClass::Status4xx,
        ErrorClass::Status5xx,
        ErrorClass::Io,
        ErrorClass::Synthetic,
    ];

    pub fn name(self) -> &'static str {
        match self {
            ErrorClass::Connect => "connect",
            ErrorClass::Timeout => "timeout",
            ErrorClass::Status4xx => "status_4xx",
            ErrorClass::Status5xx => "status_5xx",
            ErrorClass::Io => "io",
            ErrorClass::Synthetic => "synthetic",
        }
    }
}

/// Results accumulated over one window by one worker thread of one agent.
#[derive(Debug, Clone)]
pub struct WindowAcc {
    pub ok: u64,
    pub errors: [u64; ErrorClass::ALL.len()],
    pub bytes_sent: u64,
    pub bytes_received: u64,
    pub latency: Histogram<u64>,
    pub latency_clamped: u64,
    pub max_send_lag_us: u64,
}

impl Default for WindowAcc {
    fn default() -> Self {
        Self::new()
    }
}

impl WindowAcc {
    pub fn new() -> Self {
        WindowAcc {
            ok: 0,
            errors: [0; ErrorClass::ALL.len()],
            bytes_sent: 0,
            bytes_received: 0,
            latency: new_histogram(),
            latency_clamped: 0,
            max_send_lag_us: 0,
        }
    }

    /// Records a latency; values past [`MAX_LATENCY_US`] are clamped and
    /// counted, never dropped.
    #[inline]
    pub fn record_latency(&mut self, us: u64) {
        let v = if us > MAX_LATENCY_US {
            self.latency_clamped += 1;
            MAX_LATENCY_US
        } else {
            us.max(1)
        };
        self.latency
            .record(v)
            .expect("value is within the histogram's bounds");
    }

    #[inline]
    pub fn record_ok(&mut self, latency_us: u64) {
        self.ok += 1;
        self.record_latency(latency_us);
    }

    /// Records a failed request; `latency_us` is `Some` when the failure has a
    /// meaningful duration (an error status, a timeout).
    #[inline]
    pub fn record_error(&mut self, class: ErrorClass, latency_us: Option<u64>) {
        self.errors[class as usize] += 1;
        if let Some(us) = latency_us {
            self.record_latency(us);
        }
    }

    #[inline]
    pub fn record_send_lag(&mut self, us: u64) {
        self.max_send_lag_us = self.max_send_lag_us.max(us);
    }

    pub fn requests(&self) -> u64 {
        self.ok + self.errors.iter().sum::<u64>()
    }

    pub fn merge(&mut self, other: &WindowAcc) {
        self.ok += other.ok;
        for (a, b) in self.errors.iter_mut().zip(other.errors) {
            *a += b;
        }
        self.bytes_sent += other.bytes_sent;
        self.bytes_received += other.bytes_received;
        self.latency
            .add(&other.latency)
            .expect("histograms share bounds");
        self.latency_clamped += other.latency_clamped;
        self.max_send_lag_us = self.max_send_lag_us.max(other.max_send_lag_us);
    }

    pub fn to_pb(&self, phase_index: u32, index: u32, width_ms: u32) -> pb::ResultWindow {
        pb::ResultWindow {
            phase_index,
            index,
            width_ms,
            ok: self.ok,
            errors: ErrorClass::ALL
                .iter()
                .filter(|c| self.errors[**c as usize] > 0)
                .map(|c| (c.name().to_string(), self.errors[*c as usize]))
                .collect(),
            bytes_sent: self.bytes_sent,
            bytes_received: self.bytes_received,
            latency_histogram: encode_histogram(&self.latency),
            latency_clamped: self.latency_clamped,
            max_send_lag_us: self.max_send_lag_us,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_round_trips_small() {
        let mut w = WindowAcc::new();
        for i in 0..10_000u64 {
            w.record_ok(100 + i % 900);
        }
        let p = w.to_pb(0, 3, 1000);
        assert!(
            p.latency_histogram.len() < 1000,
            "{} bytes",
            p.latency_histogram.len()
        );
        let h = decode_histogram(&p.latency_histogram).unwrap();
        assert_eq!(h.len(), 10_000);
        assert_eq!(h.value_at_quantile(0.5), w.latency.value_at_quantile(0.5));
    }

    #[test]
    fn out_of_range_latency_is_clamped_and_counted() {
        let mut w = WindowAcc::new();
        w.record_ok(MAX_LATENCY_US * 2);
        w.record_ok(0);
        assert_eq!(w.latency_clamped, 1);
        assert_eq!(w.latency.len(), 2);
        assert_eq!(w.latency.min(), 1);
    }

    #[test]
    fn errors_by_class_on_the_wire() {
        let mut w = WindowAcc::new();
        w.record_error(ErrorClass::Timeout, Some(5_000));
        w.record_error(ErrorClass::Connect, None);
        w.record_error(ErrorClass::Connect, None);
        let p = w.to_pb(0, 0, 1000);
        assert_eq!(p.errors.get("connect"), Some(&2));
        assert_eq!(p.errors.get("timeout"), Some(&1));
        assert_eq!(p.errors.len(), 2);
        assert_eq!(w.requests(), 3);
    }
}
