//! The load shape's intended rate, at an instant and over a window.

use fleetbench::pb;

/// The intended total rate (requests/s across agents) `t_s` seconds into
/// the phase: piecewise linear over the shape's segments, the last
/// segment's `to` holding after it ends; 0 for a shape without segments.
pub fn intended_rate(shape: &pb::LoadShape, t_s: f64) -> f64 {
    let mut start = 0.0;
    for seg in &shape.segments {
        let len = seg.duration_ms as f64 / 1000.0;
        if t_s < start + len {
            let f = if len > 0.0 {
                ((t_s - start) / len).clamp(0.0, 1.0)
            } else {
                1.0
            };
            return seg.from + (seg.to - seg.from) * f;
        }
        start += len;
    }
    shape.segments.last().map_or(0.0, |s| s.to)
}

/// The intended rate averaged over `[from_s, to_s)`: the sends a window of
/// that span should hold, per second. Exact for piecewise-linear shapes
/// (the mean of a linear piece is its value in the middle).
pub fn intended_mean(shape: &pb::LoadShape, from_s: f64, to_s: f64) -> f64 {
    if to_s <= from_s {
        return intended_rate(shape, from_s);
    }
    // Cut [from, to) at segment boundaries; each piece is linear.
    let mut cuts = vec![from_s];
    let mut edge = 0.0;
    for seg in &shape.segments {
        edge += seg.duration_ms as f64 / 1000.0;
        if edge > from_s && edge < to_s {
            cuts.push(edge);
        }
    }
    cuts.push(to_s);
    let area: f64 = cuts
        .windows(2)
        .map(|c| (c[1] - c[0]) * intended_rate(shape, (c[0] + c[1]) / 2.0))
        .sum();
    area / (to_s - from_s)
}
