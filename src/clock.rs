//! Time as fleetbench records it: Unix microseconds (`i64`) on the wire and in
//! the log, `std::time::Duration` in the domain, and durations written the way
//! people write them (`"30s"`, `"2m"`, `"1.5ms"`) in workload files and flags.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Now, as Unix microseconds.
pub fn now_us() -> i64 {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO);
    i64::try_from(since.as_micros()).unwrap_or(i64::MAX)
}

/// Parses a human duration: `"250ms"`, `"10s"`, `"2m"`, `"1h30m"`, `"1.5s"`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if let Some((number, unit)) = split_decimal(text) {
        let scale = match unit {
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return Err(format!("unknown unit {unit:?} (use us, ms, s, m or h)")),
        };
        return Duration::try_from_secs_f64(number * scale).map_err(|e| e.to_string());
    }
    humantime::parse_duration(text).map_err(|e| e.to_string())
}

/// `"1.5ms"` -> (1.5, "ms"), only when the number has a decimal point.
fn split_decimal(text: &str) -> Option<(f64, &str)> {
    let end = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(end);
    if !number.contains('.') {
        return None;
    }
    Some((number.parse().ok()?, unit.trim()))
}

/// Parses a point in time for `--since`: a duration back from `now_us`
/// (`"1h"`, `"90m ago"`) or an RFC 3339 time (`"2026-11-29T19:00:00Z"`, the
/// `Z` and the `T` optional); returns Unix microseconds.
pub fn parse_since(text: &str, now_us: i64) -> Result<i64, String> {
    let text = text.trim();
    let back = text.strip_suffix("ago").map_or(text, str::trim_end);
    if let Ok(d) = parse_duration(back) {
        return Ok(now_us - i64::try_from(d.as_micros()).unwrap_or(i64::MAX));
    }
    let t = humantime::parse_rfc3339_weak(text).map_err(|_| {
        format!(
            "{text:?} is neither a duration back from now (like 1h or \"30m ago\") nor a time (like 2026-11-29T19:00:00Z)"
        )
    })?;
    let since = t.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
    Ok(i64::try_from(since.as_micros()).unwrap_or(i64::MAX))
}

/// Formats a duration in microseconds for people: `850us`, `1.25ms`, `2.50s`.
pub fn format_us(us: f64) -> String {
    if us < 1_000.0 {
        format!("{us:.0}us")
    } else if us < 1_000_000.0 {
        format!("{:.2}ms", us / 1_000.0)
    } else {
        format!("{:.2}s", us / 1_000_000.0)
    }
}

/// RFC 3339 (UTC, seconds) of a Unix-microsecond instant.
pub fn rfc3339(us: i64) -> String {
    let t = UNIX_EPOCH + Duration::from_micros(u64::try_from(us).unwrap_or(0));
    humantime::format_rfc3339_seconds(t).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_as_people_write_them() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1.5ms"), Ok(Duration::from_micros(1500)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert!(parse_duration("ten seconds").is_err());
        assert!(parse_duration("1.5parsecs").is_err());
    }

    #[test]
    fn since_takes_a_duration_back_or_a_time() {
        let now = 1_800_000_000_000_000;
        assert_eq!(parse_since("1h", now), Ok(now - 3_600_000_000));
        assert_eq!(parse_since("90m ago", now), Ok(now - 5_400_000_000));
        assert_eq!(
            parse_since("2026-11-29T19:00:00Z", now),
            Ok(1_795_978_800_000_000)
        );
        assert_eq!(
            parse_since("2026-11-29 19:00:00", now),
            Ok(1_795_978_800_000_000)
        );
        assert!(
            parse_since("yesterday", now)
                .unwrap_err()
                .contains("neither")
        );
    }

    #[test]
    fn formats_latency_by_magnitude() {
        assert_eq!(format_us(850.0), "850us");
        assert_eq!(format_us(1250.0), "1.25ms");
        assert_eq!(format_us(2_500_000.0), "2.50s");
    }
}
