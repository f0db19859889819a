//! Both pages as a browser gets them, from synthetic folds, parsed back as
//! XML: well-formed and self-contained, every expected chart with every
//! series drawn, phase starts and warm-ups marked, text from the log
//! escaped; the compare page; a step-load run's operations, offered
//! load, stop marks and limited banner; and a dead service's banner.

use plotters::style::RGBColor;

use super::compare_charts::compare_charts;
use super::run_charts::run_charts;
use super::{render, render_compare};
use fleetbench::pb;
use fleetbench::pb::event::Kind;
use fleetbench::pb::log_record::Record;
use fleetbench::window::{ErrorClass, WindowAcc};
use fleetbench_fold::testlog::{agent_event, dead_service, fold_of, host_metrics, shape, stream};
use fleetbench_fold::{Fold, Report, ReportOptions};
use fleetbench_gen::rng::Rng;

const T0: i64 = 1_700_000_000_000_000;
const NOTICE: &str = "<script>alert('x')</script> & \"more\"";

fn record(record: Record) -> pb::LogRecord {
    pb::LogRecord {
        logged_at_us: T0 + 20_000_000,
        record: Some(record),
    }
}

/// A finished run of two agents on two hosts: phase "warm & up" (6 s,
/// 2 s of warm-up) then "load" (5 s), windows with errors, host metrics
/// for every second, and a notice full of markup. `slow` scales the
/// latencies; `extra` adds a third phase.
fn report(slow: u64, extra: bool) -> Report {
    let agents = [("a1", "host-1"), ("a2", "host<2>")];
    let mut phases = vec![("warm & up", 1_000, 6u32, 2_000), ("load", 8_000, 5, 0)];
    if extra {
        phases.push(("extra", 14_000, 3, 0));
    }
    let mut records = vec![record(Record::RunStarted(pb::RunStarted {
        run_id: "run-1".into(),
        name: "demo <&>".into(),
        started_at_us: T0,
        coordinator_version: "0.1.0".into(),
        ..Default::default()
    }))];
    for (id, host) in agents {
        records.push(record(Record::AgentAttached(pb::AgentAttached {
            hello: Some(pb::Hello {
                agent_id: id.into(),
                hostname: host.into(),
                cores: 4,
                ..Default::default()
            }),
            ..Default::default()
        })));
    }
    let mut rng = Rng::new(slow);
    let mut seq = [0u64; 2];
    for (index, (name, start_ms, seconds, warmup_ms)) in phases.iter().enumerate() {
        records.push(record(Record::PhaseScheduled(pb::PhaseScheduled {
            phase_index: index as u32,
            name: (*name).into(),
            start_at_us: T0 + start_ms * 1000,
            duration_ms: u64::from(*seconds) * 1000,
            warmup_ms: *warmup_ms,
            window_ms: 1000,
            agent_ids: agents.iter().map(|a| a.0.to_string()).collect(),
            ..Default::default()
        })));
        for (a, (id, _)) in agents.iter().enumerate() {
            for i in 0..*seconds {
                let mut w = WindowAcc::new();
                for _ in 0..200 + rng.next_u64() % 100 {
                    w.record_ok(slow * (200 + rng.next_u64() % 2_000));
                }
                for _ in 0..rng.next_u64() % 5 {
                    w.record_error(ErrorClass::Status5xx, Some(slow * 50));
                }
                seq[a] += 1;
                records.push(agent_event(
                    id,
                    seq[a],
                    0,
                    Kind::Window(w.to_pb(index as u32, i, 1000)),
                ));
            }
        }
    }
    for (a, (id, _)) in agents.iter().enumerate() {
        for s in 0..18i64 {
            seq[a] += 1;
            records.push(host_metrics(
                id,
                seq[a],
                T0 + s * 1_000_000,
                pb::HostMetrics {
                    cpu_pct: 20.0 + (s % 7) as f32 * 5.0 + a as f32 * 10.0,
                    mem_used_bytes: (1 << 30) + (s as u64) * (8 << 20),
                    net_rx_bytes: 100_000 + s as u64 * 1_000,
                    net_tx_bytes: 50_000 + a as u64 * 20_000,
                    ..Default::default()
                },
            ));
        }
    }
    records.push(record(Record::Notice(pb::CoordinatorNotice {
        level: "warn".into(),
        message: NOTICE.into(),
        agent_id: String::new(),
    })));
    records.push(record(Record::RunFinished(pb::RunFinished {
        status: "completed".into(),
        reason: String::new(),
    })));
    let mut fold = Fold::new();
    records.iter().for_each(|r| fold.apply(r));
    fold.report(&ReportOptions::default())
}

fn parse(html: &str) -> roxmltree::Document<'_> {
    let options = roxmltree::ParsingOptions {
        allow_dtd: true,
        ..Default::default()
    };
    roxmltree::Document::parse_with_options(html, options)
        .unwrap_or_else(|e| panic!("the page is not well-formed: {e}\n{html}"))
}

/// Nothing in the page makes the browser fetch anything.
fn assert_self_contained(doc: &roxmltree::Document) {
    for node in doc.descendants().filter(|n| n.is_element()) {
        let name = node.tag_name().name();
        assert!(
            ![
                "script", "link", "img", "image", "iframe", "object", "embed", "use"
            ]
            .contains(&name),
            "<{name}> in the page"
        );
        for attr in node.attributes() {
            assert!(
                !["src", "href", "srcset", "action", "data", "poster"].contains(&attr.name()),
                "<{name} {}={:?}>",
                attr.name(),
                attr.value()
            );
            assert!(
                !attr.value().contains("url("),
                "url() in <{name} {}>",
                attr.name()
            );
        }
        if name == "style" {
            let css = node.text().unwrap_or_default();
            assert!(!css.contains("url(") && !css.contains("@import"), "{css}");
        }
    }
}

/// A chart of the page: its id, its legend (series name, colour) and its svg.
struct Figure<'a> {
    id: String,
    legend: Vec<(String, String)>,
    svg: roxmltree::Node<'a, 'a>,
}

fn charts<'a>(doc: &'a roxmltree::Document) -> Vec<Figure<'a>> {
    doc.descendants()
        .filter(|n| n.has_tag_name("figure"))
        .map(|f| {
            let id = f.attribute("id").expect("figure id").to_string();
            let legend = f
                .descendants()
                .filter(|n| n.attribute("class") == Some("series"))
                .map(|li| {
                    let name: String = li
                        .descendants()
                        .filter(|n| n.is_text())
                        .map(|t| t.text().unwrap())
                        .collect();
                    (name, li.attribute("data-color").unwrap().to_string())
                })
                .collect();
            let svg = f
                .children()
                .find(|n| n.has_tag_name("svg"))
                .unwrap_or_else(|| panic!("{id} has no svg"));
            Figure { id, legend, svg }
        })
        .collect()
}

/// The texts an svg shows.
fn texts(svg: roxmltree::Node) -> Vec<String> {
    svg.descendants()
        .filter(|n| n.has_tag_name("text"))
        .map(|n| n.text().unwrap_or_default().trim().to_string())
        .collect()
}

fn polylines<'a>(svg: roxmltree::Node<'a, 'a>, color: &str) -> Vec<Vec<(f64, f64)>> {
    svg.descendants()
        .filter(|n| n.has_tag_name("polyline") && n.attribute("stroke") == Some(color))
        .map(|n| {
            n.attribute("points")
                .unwrap_or_default()
                .split_whitespace()
                .map(|xy| {
                    let (x, y) = xy.split_once(',').expect("x,y");
                    (x.parse().unwrap(), y.parse().unwrap())
                })
                .collect()
        })
        .collect()
}

/// Every series of every chart of `r` has its points, and the svg draws
/// them: a solid segment is one polyline of its colour with all its
/// points.
fn assert_every_series_drawn(r: &Report, charts: &[Figure]) {
    for model in run_charts(r) {
        let Figure { svg, .. } = charts
            .iter()
            .find(|c| c.id == format!("chart-{}", model.id))
            .unwrap_or_else(|| panic!("chart-{} not on the page", model.id));
        for s in &model.series {
            assert!(
                s.points().count() >= 2,
                "{}: {} has no line",
                model.id,
                s.name
            );
            let RGBColor(r, g, b) = s.color;
            let drawn = polylines(*svg, &format!("#{r:02X}{g:02X}{b:02X}"));
            assert!(!drawn.is_empty(), "{}: {} not drawn", model.id, s.name);
            if !s.dashed {
                for seg in &s.segments {
                    assert!(
                        drawn.iter().any(|p| p.len() == seg.len()),
                        "{}: a segment of {} with {} points is not drawn",
                        model.id,
                        s.name,
                        seg.len()
                    );
                }
            }
        }
    }
}

#[test]
fn run_report_is_well_formed_and_fetches_nothing() {
    let html = render(&report(1, false));
    let doc = parse(&html);
    assert_self_contained(&doc);
    // The headline table comes first, one row per phase.
    let table = doc
        .descendants()
        .find(|n| n.attribute("class") == Some("headline"))
        .expect("headline table");
    let rows: Vec<_> = table.children().filter(|n| n.has_tag_name("tr")).collect();
    assert_eq!(rows.len(), 3, "header + 2 phases");
    let first = rows[1].children().next().unwrap().text().unwrap();
    assert_eq!(first, "warm & up");
}

#[test]
fn run_report_draws_one_chart_per_expected_series() {
    let r = report(1, false);
    let html = render(&r);
    let doc = parse(&html);
    let charts = charts(&doc);
    let names = |c: &Figure| -> Vec<String> { c.legend.iter().map(|l| l.0.clone()).collect() };
    let expected: Vec<(&str, Vec<&str>)> = vec![
        ("chart-throughput", vec!["requests/s", "errors/s"]),
        ("chart-latency", vec!["p50", "p90", "p99", "max"]),
        ("chart-distribution", vec!["warm & up", "load"]),
        ("chart-agents", vec!["a1 (host-1)", "a2 (host<2>)"]),
        ("chart-host-cpu", vec!["host-1", "host<2>"]),
        ("chart-host-memory", vec!["host-1", "host<2>"]),
        (
            "chart-host-network",
            vec![
                "host-1 received",
                "host-1 sent",
                "host<2> received",
                "host<2> sent",
            ],
        ),
    ];
    assert_eq!(
        charts.iter().map(|c| c.id.as_str()).collect::<Vec<_>>(),
        expected.iter().map(|e| e.0).collect::<Vec<_>>()
    );
    for (chart, (id, series)) in charts.iter().zip(&expected) {
        assert_eq!(names(chart), *series, "{id}");
    }
    assert_every_series_drawn(&r, &charts);
    // Two phases: each series of a run-time chart is drawn in two pieces.
    let throughput = &run_charts(&r)[0];
    assert_eq!(throughput.series[0].segments.len(), 2);
    assert_eq!(throughput.series[0].segments[0].len(), 6);
    assert_eq!(throughput.series[0].segments[1].len(), 5);
}

#[test]
fn phase_starts_and_warmup_are_marked_on_the_time_axis() {
    let r = report(1, false);
    let html = render(&r);
    let doc = parse(&html);
    let charts = charts(&doc);
    for Figure { id, svg, .. } in charts.iter().filter(|c| c.id != "chart-distribution") {
        let texts = texts(*svg);
        for phase in ["warm & up", "load"] {
            assert!(texts.iter().any(|t| t == phase), "{id}: {phase} not marked");
        }
        let marks = polylines(*svg, "#707070");
        assert_eq!(marks.len(), 2, "{id}: one line per phase start");
        let shaded: Vec<_> = svg
            .descendants()
            .filter(|n| n.has_tag_name("rect") && n.attribute("fill") == Some("#E4E4E4"))
            .collect();
        assert_eq!(shaded.len(), 1, "{id}: one warm-up");
        let width: f64 = shaded[0].attribute("width").unwrap().parse().unwrap();
        assert!(width > 10.0, "{id}: warm-up {width} px wide");
    }
    // Phases sit on the run's time axis by their start.
    assert_eq!(r.phases[0].start_s, 1.0);
    assert_eq!(r.phases[1].start_s, 8.0);
    let model = run_charts(&r);
    assert_eq!(model[0].marks.lines[1], (8.0, "load".to_string()));
    assert_eq!(model[0].marks.shaded, vec![(1.0, 3.0)]);
    assert_eq!(model[0].series[0].segments[1][0].0, 8.5);
}

#[test]
fn text_from_the_log_is_escaped() {
    let html = render(&report(1, false));
    assert!(!html.contains("<script"), "raw markup from the log");
    assert!(html.contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;"));
    assert!(html.contains("<title>fleetbench run demo &lt;&amp;&gt; (run-1)</title>"));
    let doc = parse(&html);
    let notice = doc
        .descendants()
        .find(|n| n.attribute("class") == Some("notices"))
        .expect("notices listed");
    let items: Vec<&str> = notice
        .children()
        .filter(|n| n.has_tag_name("li"))
        .map(|n| n.text().unwrap())
        .collect();
    assert_eq!(items, vec![format!("warn: {NOTICE}")]);
}

#[test]
fn compare_overlays_both_runs_per_phase() {
    let (base, candidate) = (report(1, false), report(3, true));
    let html = render_compare(&base, &candidate);
    let doc = parse(&html);
    assert_self_contained(&doc);
    let charts = charts(&doc);
    let ids: Vec<&str> = charts.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(
        ids,
        [
            "chart-throughput-0",
            "chart-latency-0",
            "chart-distribution-0",
            "chart-throughput-1",
            "chart-latency-1",
            "chart-distribution-1"
        ]
    );
    for Figure { id, legend, svg } in &charts {
        let names: Vec<&str> = legend.iter().map(|l| l.0.as_str()).collect();
        assert!(
            names.iter().any(|n| n.starts_with("base")),
            "{id}: {names:?}"
        );
        assert!(
            names.iter().any(|n| n.starts_with("candidate")),
            "{id}: {names:?}"
        );
        for (name, color) in legend {
            assert!(!polylines(*svg, color).is_empty(), "{id}: {name} not drawn");
        }
    }
    let latency = &charts[1].legend;
    assert_eq!(latency.len(), 8, "p50/p90/p99/max of both runs");
    // Time runs from each phase's start: the "load" phase of both runs
    // starts at 0 on its charts.
    let model = compare_charts(1, &base.phases[1], &candidate.phases[1]);
    assert_eq!(model[0].series[0].segments[0][0].0, 0.5);
    assert_eq!(model[0].x_range, (0.0, 5.0));
    // The candidate is three times slower: its p99 change is positive.
    let text: String = doc
        .descendants()
        .filter(|n| n.is_text())
        .map(|n| n.text().unwrap())
        .collect();
    assert!(text.contains("Only in the candidate run: extra."), "{text}");
    let p99 = doc
        .descendants()
        .filter(|n| n.has_tag_name("tr"))
        .find(|tr| tr.first_element_child().and_then(|c| c.text()) == Some("p99"))
        .expect("p99 row");
    let change = p99.last_element_child().unwrap().text().unwrap();
    assert!(change.starts_with('+'), "p99 change {change}");
}

#[test]
fn a_run_without_results_renders_without_charts() {
    let html = render(&Fold::new().report(&ReportOptions::default()));
    let doc = parse(&html);
    assert_self_contained(&doc);
    assert_eq!(
        doc.descendants().filter(|n| n.has_tag_name("svg")).count(),
        0
    );
    assert!(html.contains("logged no results"));
}

/// A step-load run: one open-loop phase of two operations on two
/// agents, rate stepping 100 -> 200 -> 400/s, stopped at window 7; agent
/// a1 wakes late (limited), a2 keeps up.
fn step_report() -> Report {
    let agents = [("a1", "host-1"), ("a2", "host-2")];
    let mut records = vec![record(Record::RunStarted(pb::RunStarted {
        run_id: "run-2".into(),
        name: "steps".into(),
        started_at_us: T0,
        ..Default::default()
    }))];
    let steps = [
        (3_000, 100.0, 100.0),
        (3_000, 200.0, 200.0),
        (4_000, 400.0, 400.0),
    ];
    records.push(record(Record::PhaseScheduled(pb::PhaseScheduled {
        phase_index: 0,
        name: "step <load>".into(),
        start_at_us: T0 + 1_000_000,
        duration_ms: 10_000,
        window_ms: 1000,
        agent_ids: agents.iter().map(|a| a.0.to_string()).collect(),
        ops: vec!["read".into(), "write".into()],
        shape: Some(shape(&steps, "poisson")),
        ..Default::default()
    })));
    let mut rng = Rng::new(9);
    let mut seq = [0u64; 2];
    for i in 0..8u32 {
        let rate = if i < 3 {
            100
        } else if i < 6 {
            200
        } else {
            400
        };
        for (a, (id, _)) in agents.iter().enumerate() {
            for (op, share, latency) in [("read", 4, 300), ("write", 1, 2_000)] {
                let n = rate / 2 * share / 5;
                let mut w = WindowAcc::new();
                for _ in 0..n {
                    w.record_ok(latency * (1 + u64::from(i) / 3) + rng.next_u64() % 100);
                }
                let mut w = w.to_pb(0, i, 1000);
                w.op = op.into();
                w.scheduled = n;
                if a == 0 {
                    w.late_wakes = n / 5;
                    w.max_wake_lag_us = 40_000;
                }
                seq[a] += 1;
                records.push(agent_event(id, seq[a], 0, Kind::Window(w)));
            }
        }
    }
    records.push(record(Record::PhaseStopRequested(pb::PhaseStopRequested {
        phase_index: 0,
        reason: "p99 8.1ms > 5ms".into(),
        window_index: 7,
        rate: 400.0,
        condition_met: true,
        threshold: None,
    })));
    let mut fold = Fold::new();
    records.iter().for_each(|r| fold.apply(r));
    fold.report(&ReportOptions::default())
}

#[test]
fn operations_offered_load_and_stops_are_drawn() {
    let r = step_report();
    let html = render(&r);
    let doc = parse(&html);
    assert_self_contained(&doc);
    let charts = charts(&doc);
    let legend = |id: &str| -> Vec<String> {
        charts
            .iter()
            .find(|c| c.id == id)
            .unwrap_or_else(|| panic!("no {id}"))
            .legend
            .iter()
            .map(|l| l.0.clone())
            .collect()
    };
    assert_eq!(
        legend("chart-throughput"),
        ["requests/s", "errors/s", "offered/s", "intended rate"]
    );
    assert_eq!(legend("chart-ops"), ["read", "write"]);
    assert_eq!(legend("chart-op-latency"), ["read", "write"]);
    assert_every_series_drawn(&r, &charts);
    // The intended rate is the steps, the offered rate what was scheduled.
    let throughput = &run_charts(&r)[0];
    let intended: Vec<f64> = throughput.series[3].points().map(|p| p.1).collect();
    assert_eq!(
        intended,
        [100.0, 100.0, 100.0, 200.0, 200.0, 200.0, 400.0, 400.0]
    );
    let offered: Vec<f64> = throughput.series[2].points().map(|p| p.1).collect();
    assert_eq!(offered[0], 100.0);
    // The stop is marked on every time-axis chart, labelled, at the
    // start of window 7 (phase start 1 s + 7 s).
    assert_eq!(
        throughput.marks.stops,
        [(8.0, "stopped: p99 8.1ms > 5ms".to_string())]
    );
    for Figure { id, svg, .. } in charts.iter().filter(|c| c.id != "chart-distribution") {
        let texts = texts(*svg);
        assert!(
            texts.iter().any(|t| t == "stopped: p99 8.1ms > 5ms"),
            "{id}: stop not labelled"
        );
        assert!(!polylines(*svg, "#303030").is_empty(), "{id}: no stop line");
    }
    // The banner names the limited agent; the other is not named.
    let banners: Vec<String> = doc
        .descendants()
        .filter(|n| n.attribute("class") == Some("limited"))
        .map(|n| {
            n.descendants()
                .filter(|t| t.is_text())
                .filter_map(|t| t.text())
                .collect()
        })
        .collect();
    assert_eq!(banners.len(), 1, "{banners:?}");
    assert!(
        banners[0].starts_with(
            "LOAD-GENERATOR-LIMITED: in phase step <load> the numbers describe agent a1, \
             not the target: 20% of sends woke more than 5 ms late (max 40 ms)"
        ),
        "{}",
        banners[0]
    );
    // The operations table: one row per op, shares adding up.
    let table = doc
        .descendants()
        .find(|n| n.attribute("class") == Some("ops"))
        .expect("ops table");
    let rows: Vec<Vec<&str>> = table
        .children()
        .filter(|n| n.has_tag_name("tr"))
        .skip(1)
        .map(|tr| tr.children().filter_map(|td| td.text()).collect())
        .collect();
    assert_eq!(rows.len(), 2);
    assert_eq!(&rows[0][..4], ["step <load>", "read", "1360", "80.0%"]);
    assert_eq!(&rows[1][..4], ["step <load>", "write", "340", "20.0%"]);
    assert!(html.contains("stopped at window 7 (t=7s, rate 400/s): p99 8.1ms &gt; 5ms"));
}

#[test]
fn compare_warns_about_a_limited_run_and_marks_stops() {
    let (base, candidate) = (report(1, false), step_report());
    let mut limited = candidate.clone();
    limited.phases[0].name = "load".into();
    let html = render_compare(&base, &limited);
    let doc = parse(&html);
    assert_self_contained(&doc);
    assert!(html.contains("candidate run: in phase load the numbers describe agent a1"));
    assert!(html.contains("This comparison is not trustworthy"));
    let model = compare_charts(0, &base.phases[1], &limited.phases[0]);
    assert_eq!(model[0].marks.stops.len(), 1);
    assert_eq!(model[0].marks.stops[0].0, 7.0);
}

/// The verdict opens the page in its colour's banner (green passed, red
/// failed or invalid, amber interrupted), every reason listed; the
/// thresholds get a table with the value measured.
#[test]
fn the_verdict_banner_and_the_thresholds_table() {
    // (That run has no end record; here it is judged passed.)
    let mut r = report(1, false);
    r.verdict = fleetbench_fold::Verdict::Passed;
    r.reasons.clear();
    let passed = render(&r);
    let doc = parse(&passed);
    let banner = |doc: &roxmltree::Document| {
        doc.descendants()
            .find(|n| {
                n.attribute("class")
                    .is_some_and(|c| c.starts_with("verdict "))
            })
            .map(|n| (n.attribute("class").unwrap().to_string(), n))
            .expect("a verdict banner")
            .0
    };
    // The banner comes before the headline table.
    let first = passed.find("class=\"verdict ").unwrap();
    assert!(first < passed.find("class=\"headline\"").unwrap());
    assert_eq!(banner(&doc), "verdict passed");
    assert!(!passed.contains("class=\"thresholds\""));

    let mut other = r.clone();
    other.verdict = fleetbench_fold::Verdict::Interrupted;
    assert_eq!(banner(&parse(&render(&other))), "verdict interrupted");

    let mut records = vec![record(Record::RunStarted(pb::RunStarted {
        run_id: "run-1".into(),
        thresholds: vec![fleetbench_fold::testlog::threshold(
            "p99", "", 1.0, "p99<1us",
        )],
        ..Default::default()
    }))];
    records.push(record(Record::RunFinished(pb::RunFinished {
        status: "failed".into(),
        reason: "<boom>".into(),
    })));
    let mut fold = Fold::new();
    records.iter().for_each(|x| fold.apply(x));
    r = fold.report(&ReportOptions::default());
    let html = render(&r);
    let doc = parse(&html);
    assert_eq!(banner(&doc), "verdict failed");
    let reasons: Vec<String> = doc
        .descendants()
        .filter(|n| {
            n.has_tag_name("li") && n.parent().and_then(|p| p.attribute("class")) == Some("reasons")
        })
        .map(|n| n.text().unwrap_or("").to_string())
        .collect();
    assert_eq!(reasons.len(), 2, "{html}");
    assert_eq!(reasons[0], "failed: the run failed: <boom>");
    let cells: Vec<String> = doc
        .descendants()
        .find(|n| n.attribute("class") == Some("thresholds"))
        .expect("the thresholds table")
        .descendants()
        .filter(|n| n.has_tag_name("td"))
        .map(|n| n.text().unwrap_or("").to_string())
        .collect();
    assert_eq!(cells[..2], ["p99<1us", "FAILED"]);
    assert_eq!(cells[2], "-", "no request was measured");
}

/// A service that died during the run gets a banner above the headline
/// table, with the end of its stderr (escaped) in a `<pre>`.
#[test]
fn a_dead_service_gets_a_banner_with_its_stderr() {
    let mut records = stream(3);
    records.extend(dead_service());
    let html = render(&fold_of(&records).report(&ReportOptions::default()));
    let doc = parse(&html);
    assert_self_contained(&doc);
    let banner = doc
        .descendants()
        .find(|n| n.attribute("class") == Some("limited service"))
        .expect("a service banner");
    let strong = banner
        .children()
        .find(|n| n.has_tag_name("strong"))
        .unwrap();
    assert_eq!(strong.text(), Some("SERVICE DIED"));
    let text: String = banner
        .children()
        .filter(|n| n.is_text())
        .filter_map(|n| n.text())
        .collect();
    assert!(
        text.contains("target (pid 4242) exited during phase load, 5.5s in"),
        "{text}"
    );
    let pre = banner.children().find(|n| n.has_tag_name("pre")).unwrap();
    let lines: Vec<&str> = pre.text().unwrap().lines().collect();
    assert_eq!(lines.len(), 20);
    assert_eq!(lines[19], "target: line 25 <&>");
    let banner_at = html.find("class=\"limited service\"").unwrap();
    assert!(
        banner_at < html.find("<table").unwrap(),
        "above the headline table"
    );
}
