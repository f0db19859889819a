//! How values read and tick on a chart's axes: seconds, percentiles,
//! latencies, rates, percents and bytes as labels, and where the ticks of a
//! logarithmic or a byte axis go. Plain numbers in, text or numbers out: it
//! knows neither the chart model nor plotters. (The page's hosts table
//! writes its memory column with `bytes` too.)

use fleetbench::clock::format_us;

/// `1/(1-p)` at a power of ten as its percentile: 1 -> 0%, 10 -> 90%,
/// 1000 -> 99.9%; other points get no label.
pub(super) fn percentile_label(x: f64) -> String {
    let nines = x.log10();
    if (nines - nines.round()).abs() > 1e-6 || nines < -1e-6 {
        return String::new();
    }
    match nines.round() as usize {
        0 => "0%".into(),
        1 => "90%".into(),
        2 => "99%".into(),
        n => format!("99.{}%", "9".repeat(n - 2)),
    }
}

/// `v` with at most `places` decimals, trailing zeros dropped.
pub(super) fn trim(v: f64, places: usize) -> String {
    let s = format!("{v:.places$}");
    let s = if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    };
    if s == "-0" { "0".into() } else { s }
}

/// 1234 -> "1.23k".
pub(super) fn si(v: f64) -> String {
    let a = v.abs();
    for (scale, unit) in [(1e9, "G"), (1e6, "M"), (1e3, "k")] {
        if a >= scale {
            return format!("{}{unit}", trim(v / scale, 2));
        }
    }
    trim(v, 2)
}

/// A latency for an axis: `format_us` without trailing zeros ("1ms", "2.5ms").
pub(super) fn axis_us(us: f64) -> String {
    let s = format_us(us);
    let unit_at = s.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(s.len());
    let (number, unit) = s.split_at(unit_at);
    match number.parse::<f64>() {
        Ok(n) => format!("{}{unit}", trim(n, 2)),
        Err(_) => s,
    }
}

pub(super) fn bytes(v: f64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let (mut v, mut i) = (v, 0);
    while v.abs() >= 1024.0 && i < UNITS.len() - 1 {
        v /= 1024.0;
        i += 1;
    }
    format!("{} {}", trim(v, 1), UNITS[i])
}

/// The 1, 2 or 5 times a power of ten next to `v`: at or above it when `up`,
/// else at or below it.
pub(super) fn nice_log(v: f64, up: bool) -> f64 {
    let decade = 10f64.powf(v.log10().floor());
    let m = v / decade;
    let steps = [1.0, 2.0, 5.0, 10.0];
    let pick = if up {
        steps.iter().find(|s| **s >= m - 1e-9)
    } else {
        steps.iter().rev().find(|s| **s <= m + 1e-9)
    };
    decade * pick.copied().unwrap_or(1.0)
}

/// Ticks of a logarithmic axis: 1, 2 and 5 times the powers of ten in
/// `[lo, hi]` (only the powers when that makes too many).
pub(super) fn log_keys(lo: f64, hi: f64) -> Vec<f64> {
    let (first, last) = (lo.log10().floor() as i32, hi.log10().ceil() as i32);
    let keys = |steps: &[f64]| -> Vec<f64> {
        (first..=last)
            .flat_map(|e| steps.iter().map(move |m| m * 10f64.powi(e)))
            .filter(|v| (lo..=hi).contains(v))
            .collect()
    };
    let all = keys(&[1.0, 2.0, 5.0]);
    if all.len() > 10 { keys(&[1.0]) } else { all }
}

/// The tick step of a byte axis from 0 to `hi`: a round number of KiB, MiB
/// or GiB, for at most 7 steps.
pub(super) fn byte_step(hi: f64) -> f64 {
    let mut unit = 1.0;
    while hi / unit >= 1024.0 && unit < 1024f64.powi(4) {
        unit *= 1024.0;
    }
    [
        0.125, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0,
    ]
    .iter()
    .map(|m| m * unit)
    .find(|step| hi / step <= 7.0)
    .unwrap_or(1024.0 * unit)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn axis_labels_read_as_people_write_them() {
        assert_eq!(percentile_label(1.0), "0%");
        assert_eq!(percentile_label(10.0), "90%");
        assert_eq!(percentile_label(100.0), "99%");
        assert_eq!(percentile_label(10_000.0), "99.99%");
        assert_eq!(percentile_label(20.0), "");
        assert_eq!(axis_us(1000.0), "1ms");
        assert_eq!(axis_us(2500.0), "2.5ms");
        assert_eq!(axis_us(250.0), "250us");
        assert_eq!(si(1234.0), "1.23k");
        assert_eq!(si(12.5), "12.5");
        assert_eq!(bytes(1536.0), "1.5 KiB");
        assert_eq!(bytes(3.0 * 1024.0 * 1024.0 * 1024.0), "3 GiB");
        assert_eq!(trim(-0.01, 1), "0");
        assert_eq!(nice_log(2_600.0, false), 2_000.0);
        assert_eq!(nice_log(2_600.0, true), 5_000.0);
        assert_eq!(nice_log(7_000.0, true), 10_000.0);
        assert_eq!(nice_log(1_000.0, false), 1_000.0);
        assert_eq!(log_keys(2_000.0, 50_000.0), [2e3, 5e3, 1e4, 2e4, 5e4]);
    }
}
