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

/// Adds the counts of an encoded (V2, deflate or not) histogram into
/// `target`, without building a histogram for it: the fold merges hundreds
/// of thousands of windows, and a decoded histogram of fleetbench's range is
/// a 170 KiB allocation each. `target` should auto-resize and share the
/// encoder's precision (3 digits, lowest 1), so counts land in their own
/// buckets. Returns the number of values added.
pub fn merge_encoded(target: &mut Histogram<u64>, bytes: &[u8]) -> Result<u64, String> {
    /// Reused across calls: an inflater's state is tens of KiB to set up.
    struct Scratch {
        inflater: flate2::Decompress,
        inflated: Vec<u8>,
        counts: Vec<(u64, u64)>,
    }
    thread_local! {
        static SCRATCH: std::cell::RefCell<Scratch> = std::cell::RefCell::new(Scratch {
            inflater: flate2::Decompress::new(true),
            inflated: Vec::new(),
            counts: Vec::new(),
        });
    }
    SCRATCH.with(|scratch| {
        let Scratch {
            inflater,
            inflated,
            counts,
        } = &mut *scratch.borrow_mut();
        counts.clear();
        decode_counts(bytes, inflater, inflated, counts)?;
        // Decoded whole before anything is recorded: a bad histogram changes
        // nothing.
        let mut added = 0;
        for &(value, count) in counts.iter() {
            target
                .record_n(value, count)
                .map_err(|e| format!("histogram value out of range: {e:?}"))?;
            added += count;
        }
        Ok(added)
    })
}

/// The (lowest equivalent value, count) pairs of an encoded histogram.
fn decode_counts(
    bytes: &[u8],
    inflater: &mut flate2::Decompress,
    inflated: &mut Vec<u8>,
    counts: &mut Vec<(u64, u64)>,
) -> Result<(), String> {
    const V2: u32 = 0x1c84_9303 | 0x10;
    const V2_DEFLATE: u32 = 0x1c84_9304 | 0x10;
    fn be32(b: &[u8], at: usize) -> Result<u32, String> {
        b.get(at..at + 4)
            .map(|s| u32::from_be_bytes(s.try_into().expect("4 bytes")))
            .ok_or_else(|| "truncated histogram".to_string())
    }
    fn be64(b: &[u8], at: usize) -> Result<u64, String> {
        b.get(at..at + 8)
            .map(|s| u64::from_be_bytes(s.try_into().expect("8 bytes")))
            .ok_or_else(|| "truncated histogram".to_string())
    }
    if bytes.is_empty() {
        return Ok(());
    }
    let body: &[u8] = match be32(bytes, 0)? {
        V2 => &bytes[4..],
        V2_DEFLATE => {
            let len = be32(bytes, 4)? as usize;
            let zipped = bytes.get(8..8 + len).ok_or("truncated histogram")?;
            inflater.reset(true);
            inflated.clear();
            for round in 0.. {
                if round > 16_384 {
                    return Err("histogram does not inflate".into());
                }
                if inflated.capacity() - inflated.len() < 1024 {
                    inflated.reserve(4096);
                }
                let before_in = inflater.total_in() as usize;
                let status = inflater
                    .decompress_vec(
                        &zipped[before_in.min(zipped.len())..],
                        inflated,
                        // Not `Finish`: with Finish the inflater may take the
                        // output space it is given as all there will be, and
                        // a histogram that inflates past it then fails as
                        // "corrupt" on the next call (wide histograms did).
                        flate2::FlushDecompress::None,
                    )
                    .map_err(|e| format!("bad histogram: {e}"))?;
                match status {
                    flate2::Status::StreamEnd => break,
                    _ if inflater.total_in() as usize >= zipped.len()
                        && inflated.capacity() > inflated.len() =>
                    {
                        return Err("truncated histogram".into());
                    }
                    _ => {}
                }
                if inflated.len() > 64 << 20 {
                    return Err("histogram too large".into());
                }
            }
            if be32(inflated, 0)? != V2 {
                return Err("bad histogram cookie".into());
            }
            &inflated[4..]
        }
        other => return Err(format!("bad histogram cookie {other:#x}")),
    };
    let payload_len = be32(body, 0)? as usize;
    let digits = be32(body, 8)?;
    let low = be64(body, 12)?;
    if digits == 0 || digits > 5 || low == 0 {
        return Err("bad histogram parameters".into());
    }
    let payload = body
        .get(36..36 + payload_len)
        .ok_or("truncated histogram")?;
    // The bucket layout of HdrHistogram for these parameters.
    let single_unit = 2 * 10u64.pow(digits);
    let sub_bucket_magnitude = 64 - (single_unit - 1).leading_zeros();
    let half_magnitude = sub_bucket_magnitude.max(1) - 1;
    let half_count = 1u64 << half_magnitude;
    let unit_magnitude = 63 - low.leading_zeros();
    let value_at = |index: u64| -> u64 {
        let bucket = (index >> half_magnitude) as i64 - 1;
        let mut sub = (index & (half_count - 1)) + half_count;
        let bucket = if bucket < 0 {
            sub -= half_count;
            0
        } else {
            bucket as u32
        };
        sub << (bucket + unit_magnitude)
    };
    let mut index = 0u64;
    let mut at = 0;
    while at < payload.len() {
        // LEB128 with a 9th byte of 8 bits, zig-zag encoded.
        let mut n = 0u64;
        let mut shift = 0;
        loop {
            let b = *payload.get(at).ok_or("truncated histogram")?;
            at += 1;
            if shift == 56 {
                n |= u64::from(b) << 56;
                break;
            }
            n |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                break;
            }
            shift += 7;
        }
        let v = ((n >> 1) as i64) ^ -((n & 1) as i64);
        if v < 0 {
            index += v.unsigned_abs();
        } else {
            if v > 0 {
                let value = value_at(index);
                if index > 1 << 24 || value > MAX_LATENCY_US.saturating_mul(4) {
                    return Err("histogram value out of range".into());
                }
                counts.push((value, v as u64));
            }
            index += 1;
        }
    }
    Ok(())
}

/// An empty, auto-resizing histogram of fleetbench's precision, as small as
/// its values allow (for folding many windows).
pub fn new_growing_histogram() -> Histogram<u64> {
    let mut h = Histogram::new_with_bounds(1, 2, SIGFIGS).expect("bounds are static and valid");
    h.auto(true);
    h
}

/// A stage of a request whose time is kept apart (`WindowAcc::stages`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Stage {
    /// The name lookup, for a request that opened a connection to a host
    /// given by name.
    Dns,
    /// The TCP connect, for a request that opened a connection.
    Connect,
    /// The TLS handshake, for a request that opened a connection.
    Tls,
    /// From the send to the response's headers (time to first byte).
    Ttfb,
    /// From the response's headers to the end of its body (receiving).
    Receive,
}

impl Stage {
    /// Every stage, in the order of [`WindowAcc::stages`].
    pub const ALL: [Stage; 5] = [
        Stage::Dns,
        Stage::Connect,
        Stage::Tls,
        Stage::Ttfb,
        Stage::Receive,
    ];

    /// The stage's name on the wire and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Stage::Dns => "dns",
            Stage::Connect => "connect",
            Stage::Tls => "tls",
            Stage::Ttfb => "ttfb",
            Stage::Receive => "receive",
        }
    }
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
    /// An `exec` operation's command exited with a non-zero status (or could
    /// not be started).
    Exit,
    /// A response whose status is not in the operation's `expect_status`
    /// (and not a 4xx or 5xx, which keep their own classes).
    StatusOther,
    /// The request could not be sent as rendered: a template put bytes a
    /// URL or a header cannot hold (CR, LF, NUL, a space in a path). The
    /// workload, not the target, is at fault.
    InvalidRequest,
    /// https: the server's certificate is not signed by a trusted root.
    TlsUnknownIssuer,
    /// https: the server's certificate has expired (or is not valid yet).
    TlsExpired,
    /// https: the server's certificate is not for the name dialed.
    TlsNameMismatch,
    /// https: any other failed TLS handshake (versions, ciphers, alerts,
    /// a client certificate the server refused).
    TlsHandshake,
    /// gRPC status 1 (CANCELLED).
    GrpcCancelled,
    /// gRPC status 2 (UNKNOWN).
    GrpcUnknown,
    /// gRPC status 3 (INVALID_ARGUMENT).
    GrpcInvalidArgument,
    /// gRPC status 4 (DEADLINE_EXCEEDED).
    GrpcDeadlineExceeded,
    /// gRPC status 5 (NOT_FOUND).
    GrpcNotFound,
    /// gRPC status 6 (ALREADY_EXISTS).
    GrpcAlreadyExists,
    /// gRPC status 7 (PERMISSION_DENIED).
    GrpcPermissionDenied,
    /// gRPC status 8 (RESOURCE_EXHAUSTED).
    GrpcResourceExhausted,
    /// gRPC status 9 (FAILED_PRECONDITION).
    GrpcFailedPrecondition,
    /// gRPC status 10 (ABORTED).
    GrpcAborted,
    /// gRPC status 11 (OUT_OF_RANGE).
    GrpcOutOfRange,
    /// gRPC status 12 (UNIMPLEMENTED).
    GrpcUnimplemented,
    /// gRPC status 13 (INTERNAL).
    GrpcInternal,
    /// gRPC status 14 (UNAVAILABLE).
    GrpcUnavailable,
    /// gRPC status 15 (DATA_LOSS).
    GrpcDataLoss,
    /// gRPC status 16 (UNAUTHENTICATED).
    GrpcUnauthenticated,
}

impl ErrorClass {
    /// Every class, in the order of [`WindowAcc::errors`].
    pub const ALL: [ErrorClass; 29] = [
        ErrorClass::Connect,
        ErrorClass::Timeout,
        ErrorClass::Status4xx,
        ErrorClass::Status5xx,
        ErrorClass::Io,
        ErrorClass::Synthetic,
        ErrorClass::Exit,
        ErrorClass::StatusOther,
        ErrorClass::InvalidRequest,
        ErrorClass::TlsUnknownIssuer,
        ErrorClass::TlsExpired,
        ErrorClass::TlsNameMismatch,
        ErrorClass::TlsHandshake,
        ErrorClass::GrpcCancelled,
        ErrorClass::GrpcUnknown,
        ErrorClass::GrpcInvalidArgument,
        ErrorClass::GrpcDeadlineExceeded,
        ErrorClass::GrpcNotFound,
        ErrorClass::GrpcAlreadyExists,
        ErrorClass::GrpcPermissionDenied,
        ErrorClass::GrpcResourceExhausted,
        ErrorClass::GrpcFailedPrecondition,
        ErrorClass::GrpcAborted,
        ErrorClass::GrpcOutOfRange,
        ErrorClass::GrpcUnimplemented,
        ErrorClass::GrpcInternal,
        ErrorClass::GrpcUnavailable,
        ErrorClass::GrpcDataLoss,
        ErrorClass::GrpcUnauthenticated,
    ];

    /// The class's name on the wire, in the log and in reports.
    pub fn name(self) -> &'static str {
        match self {
            ErrorClass::Connect => "connect",
            ErrorClass::Timeout => "timeout",
            ErrorClass::Status4xx => "status_4xx",
            ErrorClass::Status5xx => "status_5xx",
            ErrorClass::Io => "io",
            ErrorClass::Synthetic => "synthetic",
            ErrorClass::Exit => "exit_status",
            ErrorClass::StatusOther => "status_other",
            ErrorClass::InvalidRequest => "invalid_request",
            ErrorClass::TlsUnknownIssuer => "tls_unknown_issuer",
            ErrorClass::TlsExpired => "tls_expired",
            ErrorClass::TlsNameMismatch => "tls_name_mismatch",
            ErrorClass::TlsHandshake => "tls_handshake",
            ErrorClass::GrpcCancelled => "grpc_cancelled",
            ErrorClass::GrpcUnknown => "grpc_unknown",
            ErrorClass::GrpcInvalidArgument => "grpc_invalid_argument",
            ErrorClass::GrpcDeadlineExceeded => "grpc_deadline_exceeded",
            ErrorClass::GrpcNotFound => "grpc_not_found",
            ErrorClass::GrpcAlreadyExists => "grpc_already_exists",
            ErrorClass::GrpcPermissionDenied => "grpc_permission_denied",
            ErrorClass::GrpcResourceExhausted => "grpc_resource_exhausted",
            ErrorClass::GrpcFailedPrecondition => "grpc_failed_precondition",
            ErrorClass::GrpcAborted => "grpc_aborted",
            ErrorClass::GrpcOutOfRange => "grpc_out_of_range",
            ErrorClass::GrpcUnimplemented => "grpc_unimplemented",
            ErrorClass::GrpcInternal => "grpc_internal",
            ErrorClass::GrpcUnavailable => "grpc_unavailable",
            ErrorClass::GrpcDataLoss => "grpc_data_loss",
            ErrorClass::GrpcUnauthenticated => "grpc_unauthenticated",
        }
    }

    /// The class of gRPC status `code` (1 to 16; `None` for OK and codes
    /// gRPC does not define, which count as `grpc_unknown` by the caller).
    pub fn grpc(code: u32) -> Option<ErrorClass> {
        let first = ErrorClass::GrpcCancelled as usize;
        let i = usize::try_from(code).ok()?.checked_sub(1)?;
        ErrorClass::ALL
            .get(first + i)
            .copied()
            .filter(|c| c.is_grpc())
    }

    /// A gRPC status class: only present in a CSV export's columns when
    /// some row has it (the others always are).
    pub fn is_grpc(self) -> bool {
        self as usize >= ErrorClass::GrpcCancelled as usize
    }
}

/// Results accumulated over one window by one worker thread of one agent.
#[derive(Debug, Clone)]
pub struct WindowAcc {
    /// Requests that succeeded.
    pub ok: u64,
    /// Failed requests, by [`ErrorClass`] (indexed by `class as usize`).
    pub errors: [u64; ErrorClass::ALL.len()],
    /// Bytes written to targets.
    pub bytes_sent: u64,
    /// Bytes read from targets.
    pub bytes_received: u64,
    /// Latencies in µs, ok and error alike (see [`new_histogram`]).
    pub latency: Histogram<u64>,
    /// Latencies above [`MAX_LATENCY_US`], recorded at it.
    pub latency_clamped: u64,
    /// Open loop: the largest lag, in µs, between a request's intended send
    /// time and its actual send.
    pub max_send_lag_us: u64,
    /// Open loop: every send's lag, in µs (see [`new_histogram`]; values
    /// past its range are recorded at its top).
    pub send_lag: Histogram<u64>,
    /// Open loop: sends the schedule called for in this window.
    pub scheduled: u64,
    /// Open loop: waits for an intended time that woke more than
    /// [`LATE_WAKE_US`] late, and the largest such lag.
    pub late_wakes: u64,
    /// The largest of those lags, in µs.
    pub max_wake_lag_us: u64,
    /// Event-loop probes of the load thread, those more than
    /// [`LATE_WAKE_US`] late, and the largest lag.
    pub loop_probes: u64,
    /// Probes more than [`LATE_WAKE_US`] late.
    pub loop_late: u64,
    /// The largest probe lag, in µs.
    pub max_loop_lag_us: u64,
    /// Open loop: sends that found every connection busy, the agent at its
    /// cap, and started late.
    pub busy_late: u64,
    /// Open loop: the agent's connections at the window's end (set on the
    /// first op's window by the phase, as `scheduled`).
    pub connections: u32,
    /// Per [`Stage`] (indexed by `stage as usize`), its times in µs; made
    /// by the first value (most ops have no stages).
    pub stages: [Option<Box<Histogram<u64>>>; Stage::ALL.len()],
}

/// A worker that waited for its intended send time and woke later than this
/// was held up by the agent itself (CPU, scheduler), not by the target.
pub const LATE_WAKE_US: u64 = 5_000;

impl Default for WindowAcc {
    fn default() -> Self {
        Self::new()
    }
}

impl WindowAcc {
    /// An empty window.
    pub fn new() -> Self {
        WindowAcc {
            ok: 0,
            errors: [0; ErrorClass::ALL.len()],
            bytes_sent: 0,
            bytes_received: 0,
            latency: new_histogram(),
            latency_clamped: 0,
            max_send_lag_us: 0,
            send_lag: new_histogram(),
            scheduled: 0,
            late_wakes: 0,
            max_wake_lag_us: 0,
            loop_probes: 0,
            loop_late: 0,
            max_loop_lag_us: 0,
            busy_late: 0,
            connections: 0,
            stages: [None, None, None, None, None],
        }
    }

    /// A load thread's timer that was due `us` ago fired now.
    #[inline]
    pub fn record_loop_lag(&mut self, us: u64) {
        self.loop_probes += 1;
        if us > LATE_WAKE_US {
            self.loop_late += 1;
        }
        self.max_loop_lag_us = self.max_loop_lag_us.max(us);
    }

    /// A worker that slept until its intended send time woke `us` after it.
    #[inline]
    pub fn record_wake_lag(&mut self, us: u64) {
        if us > LATE_WAKE_US {
            self.late_wakes += 1;
            self.max_wake_lag_us = self.max_wake_lag_us.max(us);
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

    /// Records a successful request and its latency.
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

    /// Open loop: a request was sent `us` after its intended time.
    #[inline]
    pub fn record_send_lag(&mut self, us: u64) {
        self.max_send_lag_us = self.max_send_lag_us.max(us);
        self.send_lag
            .record(us.min(MAX_LATENCY_US))
            .expect("value is within the histogram's bounds");
    }

    /// A request spent `us` in `stage`.
    #[inline]
    pub fn record_stage(&mut self, stage: Stage, us: u64) {
        self.stages[stage as usize]
            .get_or_insert_with(|| Box::new(new_growing_histogram()))
            .record(us.clamp(1, MAX_LATENCY_US))
            .expect("an auto-resizing histogram takes any value");
    }

    /// Requests finished, ok or not.
    pub fn requests(&self) -> u64 {
        self.ok + self.errors.iter().sum::<u64>()
    }

    /// Adds `other`'s counts and histogram into this window.
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
        self.send_lag
            .add(&other.send_lag)
            .expect("histograms share bounds");
        self.scheduled += other.scheduled;
        self.late_wakes += other.late_wakes;
        self.max_wake_lag_us = self.max_wake_lag_us.max(other.max_wake_lag_us);
        self.loop_probes += other.loop_probes;
        self.loop_late += other.loop_late;
        self.max_loop_lag_us = self.max_loop_lag_us.max(other.max_loop_lag_us);
        self.busy_late += other.busy_late;
        self.connections = self.connections.max(other.connections);
        for (mine, theirs) in self.stages.iter_mut().zip(&other.stages) {
            if let Some(h) = theirs {
                match mine {
                    Some(m) => m.add(h.as_ref()).expect("auto-resizing histogram"),
                    None => *mine = Some(h.clone()),
                }
            }
        }
    }

    /// Nothing recorded (an op no iteration picked in this window).
    pub fn is_empty(&self) -> bool {
        self.requests() == 0
            && self.scheduled == 0
            && self.late_wakes == 0
            && self.loop_probes == 0
            && self.busy_late == 0
    }

    /// The window as the wire carries it: window `index` (of `width_ms`)
    /// of phase `phase_index`, with its histograms encoded (the send lag's
    /// only when it holds a value: closed loop sends none); `op` is left for
    /// the caller.
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
            op: String::new(),
            late_wakes: self.late_wakes,
            max_wake_lag_us: self.max_wake_lag_us,
            scheduled: self.scheduled,
            loop_probes: self.loop_probes,
            loop_late: self.loop_late,
            max_loop_lag_us: self.max_loop_lag_us,
            send_lag_histogram: if self.send_lag.is_empty() {
                Vec::new()
            } else {
                encode_histogram(&self.send_lag)
            },
            busy_late: self.busy_late,
            connections: self.connections,
            stage_histograms: Stage::ALL
                .iter()
                .filter_map(|s| {
                    let h = self.stages[*s as usize].as_ref()?;
                    Some((s.name().to_string(), encode_histogram(h)))
                })
                .collect(),
        }
    }
}

/// A xorshift64* stream for the tests' random histograms (the seeded
/// streams of the load engine live in `fleetbench-gen`, which depends on
/// this crate).
#[cfg(test)]
struct TestRng(u64);

#[cfg(test)]
impl TestRng {
    fn new(seed: u64) -> TestRng {
        TestRng(seed.wrapping_mul(0x2545_F491_4F6C_DD1D) | 1)
    }

    fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
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
    fn merge_encoded_equals_the_official_decoder() {
        let mut rng = TestRng::new(5);
        for round in 0..50 {
            let mut w = WindowAcc::new();
            let n = rng.next_u64() % 2000;
            for _ in 0..n {
                let scale = 10u64.pow((rng.next_u64() % 9) as u32);
                w.record_ok(1 + rng.next_u64() % scale.max(1));
            }
            let bytes = w.to_pb(0, 0, 1000).latency_histogram;
            let official = decode_histogram(&bytes).unwrap();
            let mut mine = new_growing_histogram();
            let added = merge_encoded(&mut mine, &bytes).unwrap();
            assert_eq!(added, official.len(), "round {round}");
            assert_eq!(mine.len(), official.len());
            if n > 0 {
                assert_eq!(mine.min(), official.min(), "round {round}");
                assert_eq!(mine.max(), official.max(), "round {round}");
                for q in [0.5, 0.9, 0.99, 0.999] {
                    assert_eq!(
                        mine.value_at_quantile(q),
                        official.value_at_quantile(q),
                        "round {round} q {q}"
                    );
                }
            }
        }
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

    /// Open loop sends the send lags as a histogram; closed loop sends no
    /// bytes for it (the field stays off the wire).
    #[test]
    fn send_lags_travel_only_when_recorded() {
        let mut w = WindowAcc::new();
        w.record_ok(500);
        assert!(w.to_pb(0, 0, 1000).send_lag_histogram.is_empty());
        for lag in [0, 12, 12, 4_000, MAX_LATENCY_US * 3] {
            w.record_send_lag(lag);
        }
        let mut other = WindowAcc::new();
        other.record_send_lag(7);
        w.merge(&other);
        let p = w.to_pb(0, 0, 1000);
        assert_eq!(p.max_send_lag_us, MAX_LATENCY_US * 3);
        let h = decode_histogram(&p.send_lag_histogram).unwrap();
        assert_eq!(h.len(), 6);
        assert_eq!(h.value_at_quantile(0.5), 12);
        assert_eq!(h.min(), 0);
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

#[cfg(test)]
mod wide_histograms {
    use super::*;

    /// Wide, irregular histograms (an open loop behind a stall: latencies
    /// from microseconds to seconds) merge from their bytes exactly as the
    /// official decoder reads them.
    #[test]
    fn wide_histograms_merge_exactly() {
        let mut rng = TestRng::new(9);
        for case in 0..400 {
            let mut h = new_histogram();
            let n = 1 + (rng.next_u64() % 20_000);
            let spread = 10f64.powf(1.0 + rng.next_f64() * 6.5);
            for _ in 0..n {
                let v = (rng.next_f64() * spread) as u64 + 1;
                h.record(v.min(MAX_LATENCY_US)).unwrap();
            }
            let bytes = encode_histogram(&h);
            let mut merged = new_growing_histogram();
            let added = merge_encoded(&mut merged, &bytes)
                .unwrap_or_else(|e| panic!("case {case} ({n} values, spread {spread}): {e}"));
            assert_eq!(added, h.len(), "case {case}");
            let official = decode_histogram(&bytes).unwrap();
            assert_eq!(official.len(), h.len());
            for q in [0.5, 0.9, 0.99, 1.0] {
                assert_eq!(
                    merged.value_at_quantile(q),
                    official.value_at_quantile(q),
                    "case {case} q {q}"
                );
            }
        }
    }
}
