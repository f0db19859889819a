//! What no honest agent sends, judged from one event alone (so the fold
//! stays order-independent): the fold keeps such a window out of the
//! numbers and counts it as bad, and the coordinator's hub cuts off an
//! agent that sends one before it reaches the log.

use fleetbench::pb;
use fleetbench::pb::event::Kind;

/// No window holds more than this many of anything (requests, errors,
/// sends): a trillion, in one window of one agent, is not a measurement.
const MAX_WINDOW_COUNT: u64 = 1_000_000_000_000;
/// No window is wider than an hour, nor starts more than 31 days into its
/// phase.
const MAX_WIDTH_MS: u32 = 3_600_000;
const MAX_START_MS: u64 = 31 * 24 * 3_600_000;
/// No host moves more than this many bytes over its network in a second
/// (100 TB/s), nor holds more memory.
const MAX_HOST_BYTES: u64 = 100_000_000_000_000;
/// No window has more stage histograms than this (an agent sends three).
const MAX_STAGES: usize = 8;
/// No notice says more than this (the agent's own are a line or two).
pub const MAX_NOTICE_BYTES: usize = 8 * 1024;

/// Why `w` cannot be an honest window, if it cannot: zero or absurd
/// width, an index past a month, or a count no window can hold. The
/// histograms are not decoded here ([`window_fault`] does that too).
pub(crate) fn implausible_window(w: &pb::ResultWindow) -> Option<String> {
    let counts = [
        ("ok", w.ok),
        ("bytes_sent / 10^6", w.bytes_sent / 1_000_000),
        ("bytes_received / 10^6", w.bytes_received / 1_000_000),
        ("latency_clamped", w.latency_clamped),
        ("scheduled", w.scheduled),
        ("late_wakes", w.late_wakes),
        ("loop_probes", w.loop_probes),
        ("loop_late", w.loop_late),
        ("busy_late", w.busy_late),
    ];
    if !(1..=MAX_WIDTH_MS).contains(&w.width_ms) {
        return Some(format!("window width {} ms", w.width_ms));
    }
    if u64::from(w.index) * u64::from(w.width_ms) > MAX_START_MS {
        return Some(format!("window index {} (past 31 days)", w.index));
    }
    if let Some((name, c)) = counts.iter().find(|(_, c)| *c > MAX_WINDOW_COUNT) {
        return Some(format!("{name} = {c} in one window"));
    }
    let requests = w.errors.values().fold(w.ok, |a, &c| a.saturating_add(c));
    (requests > MAX_WINDOW_COUNT).then(|| format!("{requests} requests in one window"))
}

/// Why `w` cannot be an honest window: `implausible_window`, or a
/// histogram that does not decode.
pub fn window_fault(w: &pb::ResultWindow) -> Option<String> {
    if let Some(why) = implausible_window(w) {
        return Some(why);
    }
    if w.stage_histograms.len() > MAX_STAGES
        || w.stage_histograms
            .keys()
            .any(|k| k.is_empty() || k.len() > 32)
    {
        return Some(format!(
            "{} stage histograms (at most {MAX_STAGES}, named in 1 to 32 bytes)",
            w.stage_histograms.len()
        ));
    }
    let stages = w
        .stage_histograms
        .iter()
        .map(|(name, bytes)| (format!("{name:?} stage histogram"), bytes));
    let histograms = [
        ("latency histogram".to_string(), &w.latency_histogram),
        ("send-lag histogram".to_string(), &w.send_lag_histogram),
    ];
    for (name, bytes) in histograms.into_iter().chain(stages) {
        let mut scratch = fleetbench::window::new_growing_histogram();
        if let Err(e) = fleetbench::window::merge_encoded(&mut scratch, bytes) {
            return Some(format!("its {name} does not decode ({e})"));
        }
    }
    None
}

/// Why `m` cannot be an honest host sample: a value that is not a number,
/// negative, or beyond any machine.
pub fn host_metrics_fault(m: &pb::HostMetrics) -> Option<String> {
    let fractions = [
        ("cpu_pct", f64::from(m.cpu_pct)),
        ("agent_cpu_pct", f64::from(m.agent_cpu_pct)),
        ("load_1", m.load_1),
    ];
    if let Some((name, v)) = fractions
        .iter()
        .find(|(_, v)| !v.is_finite() || *v < 0.0 || *v > 1e7)
    {
        return Some(format!("host metric {name} = {v}"));
    }
    let bytes = [
        ("mem_used_bytes", m.mem_used_bytes),
        ("mem_total_bytes", m.mem_total_bytes),
        ("net_rx_bytes", m.net_rx_bytes),
        ("net_tx_bytes", m.net_tx_bytes),
    ];
    bytes
        .iter()
        .find(|(_, v)| *v > MAX_HOST_BYTES)
        .map(|(name, v)| format!("host metric {name} = {v}"))
}

/// Why `ev` cannot be an honest event, judged from the event alone: a
/// window or host sample as above, a notice longer than
/// [`MAX_NOTICE_BYTES`], or sequence number 0.
pub fn event_fault(ev: &pb::Event) -> Option<String> {
    if ev.seq == 0 {
        return Some("sequence number 0".into());
    }
    match ev.kind.as_ref()? {
        Kind::Window(w) => window_fault(w)
            .map(|why| format!("window {} of phase {}: {why}", w.index, w.phase_index)),
        Kind::HostMetrics(m) => host_metrics_fault(m),
        Kind::Notice(n) if n.message.len() > MAX_NOTICE_BYTES => Some(format!(
            "a notice of {} bytes (at most {MAX_NOTICE_BYTES})",
            n.message.len()
        )),
        Kind::PhaseEnded(p) if u64::from(p.windows) * 1000 > MAX_START_MS => Some(format!(
            "phase {} ended after {} windows",
            p.phase_index, p.windows
        )),
        _ => None,
    }
}
