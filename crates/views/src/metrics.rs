//! The fold's metric families ([`Fold::series`](fleetbench_fold::Fold::series))
//! in the formats Prometheus-compatible systems take: the text exposition
//! a scrape reads (Prometheus text 0.0.4, or OpenMetrics 1.0 when asked),
//! and a remote-write request (protobuf, snappy-compressed) that
//! Prometheus, Mimir, Thanos and VictoriaMetrics accept.

use std::fmt::Write as _;

use fleetbench_fold::{Family, MetricKind};
use prost::Message;

/// `Content-Type` of [`text`] with `openmetrics` false.
pub const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";
/// `Content-Type` of [`text`] with `openmetrics` true.
pub const OPENMETRICS_TEXT: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The families as a scrape's body: OpenMetrics 1.0 (`# UNIT`, counters'
/// families named without `_total`, `# EOF` at the end) or Prometheus
/// text 0.0.4.
pub fn text(families: &[Family], openmetrics: bool) -> String {
    let mut out = String::new();
    for f in families {
        let kind = match f.kind {
            MetricKind::Counter => "counter",
            MetricKind::Gauge => "gauge",
            MetricKind::Histogram => "histogram",
        };
        // Prometheus text names a counter's family by its samples' name.
        let family = if openmetrics || f.kind != MetricKind::Counter {
            f.name.to_string()
        } else {
            format!("{}_total", f.name)
        };
        let _ = writeln!(out, "# HELP {family} {}", escape_help(f.help));
        let _ = writeln!(out, "# TYPE {family} {kind}");
        if openmetrics && !f.unit.is_empty() {
            let _ = writeln!(out, "# UNIT {family} {}", f.unit);
        }
        for s in &f.samples {
            out.push_str(f.name);
            out.push_str(s.suffix);
            if !s.labels.is_empty() {
                out.push('{');
                for (i, (k, v)) in s.labels.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    let _ = write!(out, "{k}=\"{}\"", escape_label(v));
                }
                out.push('}');
            }
            let _ = writeln!(out, " {}", number(s.value));
        }
    }
    if openmetrics {
        out.push_str("# EOF\n");
    }
    out
}

/// A label value escaped for the text formats: backslash, quote, newline.
fn escape_label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// A help text escaped for the text formats: backslash, newline.
fn escape_help(v: &str) -> String {
    v.replace('\\', "\\\\").replace('\n', "\\n")
}

/// A sample value: integers without a fraction, infinities as Prometheus
/// writes them.
fn number(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        }
    } else {
        format!("{v}")
    }
}

/// The families as one Prometheus remote-write request (protocol 1.0): a
/// `WriteRequest` with one time series per sample, each holding one sample
/// at `timestamp_ms`, and each family's metadata; protobuf, then snappy's
/// block format. Send it with [`REMOTE_WRITE_HEADERS`].
pub fn remote_write(families: &[Family], timestamp_ms: i64) -> Vec<u8> {
    let mut req = WriteRequest::default();
    for f in families {
        for s in &f.samples {
            let mut labels: Vec<Label> = s
                .labels
                .iter()
                .map(|(k, v)| Label {
                    name: (*k).to_string(),
                    value: v.clone(),
                })
                .collect();
            labels.push(Label {
                name: "__name__".into(),
                value: format!("{}{}", f.name, s.suffix),
            });
            labels.sort_by(|a, b| a.name.cmp(&b.name));
            req.timeseries.push(TimeSeries {
                labels,
                samples: vec![RwSample {
                    value: s.value,
                    timestamp: timestamp_ms,
                }],
            });
        }
        req.metadata.push(MetricMetadata {
            r#type: match f.kind {
                MetricKind::Counter => 1,
                MetricKind::Gauge => 2,
                MetricKind::Histogram => 3,
            },
            metric_family_name: f.name.to_string(),
            help: f.help.to_string(),
            unit: f.unit.to_string(),
        });
    }
    snap::raw::Encoder::new()
        .compress_vec(&req.encode_to_vec())
        .expect("snappy compresses any length that fits in memory")
}

/// The headers a remote-write POST carries (protocol 1.0).
pub const REMOTE_WRITE_HEADERS: [(&str, &str); 3] = [
    ("content-type", "application/x-protobuf"),
    ("content-encoding", "snappy"),
    ("x-prometheus-remote-write-version", "0.1.0"),
];

/// `prometheus.WriteRequest` (Prometheus's prompb/remote.proto).
#[derive(Clone, PartialEq, Message)]
struct WriteRequest {
    #[prost(message, repeated, tag = "1")]
    timeseries: Vec<TimeSeries>,
    #[prost(message, repeated, tag = "3")]
    metadata: Vec<MetricMetadata>,
}

/// `prometheus.TimeSeries`: labels sorted by name, samples in time order.
#[derive(Clone, PartialEq, Message)]
struct TimeSeries {
    #[prost(message, repeated, tag = "1")]
    labels: Vec<Label>,
    #[prost(message, repeated, tag = "2")]
    samples: Vec<RwSample>,
}

/// `prometheus.Label`.
#[derive(Clone, PartialEq, Message)]
struct Label {
    #[prost(string, tag = "1")]
    name: String,
    #[prost(string, tag = "2")]
    value: String,
}

/// `prometheus.Sample`: a value at a Unix time in milliseconds.
#[derive(Clone, PartialEq, Message)]
struct RwSample {
    #[prost(double, tag = "1")]
    value: f64,
    #[prost(int64, tag = "2")]
    timestamp: i64,
}

/// `prometheus.MetricMetadata`: type (1 counter, 2 gauge, 3 histogram),
/// family name, help and unit.
#[derive(Clone, PartialEq, Message)]
struct MetricMetadata {
    #[prost(int32, tag = "1")]
    r#type: i32,
    #[prost(string, tag = "2")]
    metric_family_name: String,
    #[prost(string, tag = "4")]
    help: String,
    #[prost(string, tag = "5")]
    unit: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use fleetbench_fold::Sample;

    fn families() -> Vec<Family> {
        vec![
            Family {
                name: "fleetbench_requests",
                help: "Requests.",
                unit: "",
                kind: MetricKind::Counter,
                samples: vec![Sample {
                    suffix: "_total",
                    labels: vec![("phase", "a \"b\"\n".into())],
                    value: 12.0,
                }],
            },
            Family {
                name: "fleetbench_request_duration_seconds",
                help: "Latency.",
                unit: "seconds",
                kind: MetricKind::Histogram,
                samples: vec![Sample {
                    suffix: "_bucket",
                    labels: vec![("le", "+Inf".into())],
                    value: 3.0,
                }],
            },
        ]
    }

    #[test]
    fn the_two_text_formats_name_counters_as_each_wants() {
        let prom = text(&families(), false);
        assert!(
            prom.contains("# TYPE fleetbench_requests_total counter\n"),
            "{prom}"
        );
        assert!(prom.contains("fleetbench_requests_total{phase=\"a \\\"b\\\"\\n\"} 12\n"));
        assert!(!prom.contains("# EOF"));
        assert!(!prom.contains("# UNIT"));
        let om = text(&families(), true);
        assert!(om.contains("# TYPE fleetbench_requests counter\n"), "{om}");
        assert!(om.contains("# UNIT fleetbench_request_duration_seconds seconds\n"));
        assert!(om.ends_with("# EOF\n"));
    }

    #[test]
    fn remote_write_is_snappy_protobuf_with_sorted_labels() {
        let body = remote_write(&families(), 1_700_000_000_123);
        let raw = snap::raw::Decoder::new().decompress_vec(&body).unwrap();
        let req = WriteRequest::decode(raw.as_slice()).unwrap();
        assert_eq!(req.timeseries.len(), 2);
        let names: Vec<_> = req.timeseries[0].labels.iter().map(|l| &l.name).collect();
        assert_eq!(names, ["__name__", "phase"]);
        assert_eq!(
            req.timeseries[0].labels[0].value,
            "fleetbench_requests_total"
        );
        assert_eq!(req.timeseries[1].samples[0].timestamp, 1_700_000_000_123);
        assert_eq!(req.metadata[1].r#type, 3);
    }
}
