//! The HTML report end to end: a real run, then `report --format html` and
//! `replay --format html --output FILE`; the page is well-formed, fetches
//! nothing and has every chart. Then Debian's chromium (headless) renders it,
//! and every chart must show data on screen, not just axes.
//!
//! The screenshots are kept in cargo's test tmp dir (`target/tmp/`) for
//! people to look at.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

const WORKLOAD: &str = r#"
[run]
name = "html <e2e> & co"

[agents]
local = 2

[[phase]]
name = "warm & steady"
duration = "4s"
warmup = "1s"

[phase.synthetic]
latency = { dist = "lognormal", median = "2ms", sigma = 0.5 }
error_ratio = 0.02
concurrency = 8
seed = 1

[[phase]]
name = "open <loop>"
duration = "3s"

[phase.synthetic]
latency = { dist = "lognormal", median = "4ms", sigma = 0.8 }
error_ratio = 0.05
rate = 400
seed = 2
"#;

/// The charts of a run's page, in order.
const CHARTS: [&str; 7] = [
    "chart-throughput",
    "chart-latency",
    "chart-distribution",
    "chart-agents",
    "chart-host-cpu",
    "chart-host-memory",
    "chart-host-network",
];

/// Runs the workload and returns its HTML report (from `report`, checked
/// equal to `replay`'s output file).
fn run_and_report(dir: &TempDir) -> String {
    let w = dir.write("w.toml", WORKLOAD);
    let out = coordinator(dir.path(), &["run", w.to_str().unwrap()]);
    assert!(out.status.success(), "run failed: {}", text(&out.stderr));

    let out = coordinator(dir.path(), &["report", "latest", "--format", "html"]);
    assert!(out.status.success(), "report failed: {}", text(&out.stderr));
    let html = text(&out.stdout);

    let file = dir.path().join("replay.html");
    let out = coordinator(
        dir.path(),
        &[
            "replay",
            "latest",
            "--format",
            "html",
            "--output",
            file.to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "replay failed: {}", text(&out.stderr));
    assert!(out.stdout.is_empty(), "replay --output printed to stdout");
    let replayed = std::fs::read_to_string(&file).expect("replay wrote its file");
    assert_eq!(
        replayed, html,
        "replay with no options must draw the report's page"
    );
    html
}

fn parse(html: &str) -> roxmltree::Document<'_> {
    let options = roxmltree::ParsingOptions {
        allow_dtd: true,
        ..Default::default()
    };
    roxmltree::Document::parse_with_options(html, options)
        .unwrap_or_else(|e| panic!("the page is not well-formed: {e}"))
}

/// The `<svg>` of each chart, by figure id, as the page holds it.
fn chart_svgs(html: &str) -> Vec<(String, String)> {
    let doc = parse(html);
    doc.descendants()
        .filter(|n| n.has_tag_name("figure"))
        .map(|f| {
            let id = f.attribute("id").expect("figure id").to_string();
            let svg = f
                .children()
                .find(|n| n.has_tag_name("svg"))
                .unwrap_or_else(|| panic!("{id} has no svg"));
            (id, html[svg.range()].to_string())
        })
        .collect()
}

#[test]
fn report_and_replay_write_a_self_contained_html_page() {
    let dir = TempDir::new("html");
    let html = run_and_report(&dir);
    let doc = parse(&html);

    // Nothing is fetched: no scripts, stylesheets, images, frames or links.
    for node in doc.descendants().filter(|n| n.is_element()) {
        let name = node.tag_name().name();
        assert!(
            ![
                "script", "link", "img", "image", "iframe", "object", "embed"
            ]
            .contains(&name),
            "<{name}> in the page"
        );
        for attr in node.attributes() {
            assert!(
                !["src", "href", "srcset"].contains(&attr.name()) && !attr.value().contains("url("),
                "<{name} {}={:?}>",
                attr.name(),
                attr.value()
            );
        }
    }
    for fetch in ["<script", "<link", "@import", "url("] {
        assert!(!html.contains(fetch), "{fetch} in the page");
    }

    // The run's name and phase names are escaped, and the headline table
    // lists both phases.
    assert!(html.contains("<h1>fleetbench run html &lt;e2e&gt; &amp; co</h1>"));
    let cells: Vec<&str> = doc
        .descendants()
        .filter(|n| n.has_tag_name("td"))
        .filter_map(|n| n.text())
        .collect();
    assert!(cells.contains(&"warm & steady"), "{cells:?}");
    assert!(cells.contains(&"open <loop>"), "{cells:?}");

    // Every chart, each with its series drawn as lines with points.
    let charts = chart_svgs(&html);
    let ids: Vec<&str> = charts.iter().map(|c| c.0.as_str()).collect();
    assert_eq!(ids, CHARTS);
    for figure in doc.descendants().filter(|n| n.has_tag_name("figure")) {
        let id = figure.attribute("id").unwrap();
        let svg = figure.children().find(|n| n.has_tag_name("svg")).unwrap();
        let series: Vec<_> = figure
            .descendants()
            .filter(|n| n.attribute("class") == Some("series"))
            .collect();
        assert!(!series.is_empty(), "{id} has no series");
        for s in series {
            let color = s.attribute("data-color").unwrap();
            let points: usize = svg
                .descendants()
                .filter(|n| n.has_tag_name("polyline") && n.attribute("stroke") == Some(color))
                .map(|n| {
                    n.attribute("points")
                        .unwrap_or("")
                        .split_whitespace()
                        .count()
                })
                .sum();
            assert!(
                points >= 2,
                "{id}: series {color} drawn with {points} points"
            );
        }
    }
    let legend = |id: &str| -> Vec<String> {
        let figure = doc
            .descendants()
            .find(|n| n.attribute("id") == Some(id))
            .unwrap();
        figure
            .descendants()
            .filter(|n| n.attribute("class") == Some("series"))
            .map(|n| n.descendants().filter_map(|t| t.text()).collect())
            .collect()
    };
    assert_eq!(
        legend("chart-distribution"),
        ["warm & steady", "open <loop>"]
    );
    assert_eq!(legend("chart-agents").len(), 2, "one line per agent");
    assert_eq!(legend("chart-latency"), ["p50", "p90", "p99", "max"]);
}

/// Debian's chromium draws the page: the whole report (kept as
/// `target/tmp/html-report.png`), and a page with each chart's svg at a
/// known place. Every chart region must hold coloured pixels (the data: the
/// charts' axes, grid and marks are grey), and the same page with the
/// coloured marks removed must not, so an empty chart fails.
#[test]
fn every_chart_is_drawn_in_chromium() {
    let dir = TempDir::new("html-shot");
    let html = run_and_report(&dir);
    let keep = Path::new(env!("CARGO_TARGET_TMPDIR"));

    let page = dir.write("report.html", &html);
    let whole = screenshot(&page, &keep.join("html-report.png"), (1200, 3000));
    let inked = whole.count(0, 0, whole.width, whole.height, |p| p != [255, 255, 255]);
    assert!(
        inked > (whole.width * whole.height) as usize / 50,
        "the report renders nearly blank: {inked} non-white pixels"
    );

    let charts = chart_svgs(&html);
    assert_eq!(charts.len(), CHARTS.len());
    let (w, h, gap) = (960, 300, 20);
    let test_page = |svgs: Vec<String>| {
        let mut page = String::from(
            "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"/><style>\
             body { margin: 0; background: #fff; } \
             div { position: absolute; left: 0; overflow: hidden; }\
             </style></head><body>\n",
        );
        for (i, svg) in svgs.iter().enumerate() {
            page.push_str(&format!(
                "<div style=\"top: {}px; width: {w}px; height: {h}px\">{svg}</div>\n",
                i * (h + gap)
            ));
        }
        page.push_str("</body></html>\n");
        page
    };
    let size = (w as u32 + 40, (charts.len() * (h + gap)) as u32);

    let drawn = test_page(charts.iter().map(|c| c.1.clone()).collect());
    let drawn = screenshot(
        &dir.write("charts.html", &drawn),
        &keep.join("html-charts.png"),
        size,
    );
    let blank = test_page(charts.iter().map(|c| without_colour(&c.1)).collect());
    let blank = screenshot(
        &dir.write("blank.html", &blank),
        &dir.path().join("blank.png"),
        size,
    );
    for (i, (id, _)) in charts.iter().enumerate() {
        let top = (i * (h + gap)) as u32;
        let coloured = |shot: &Png| shot.count(0, top, w as u32, h as u32, saturated);
        let (with_data, without) = (coloured(&drawn), coloured(&blank));
        assert!(
            with_data >= 300,
            "{id} looks empty on screen: {with_data} coloured pixels"
        );
        assert!(
            without < 20,
            "{id} without its data still has {without} coloured pixels: the check cannot tell"
        );
    }
}

/// A pixel of a chart's data: strongly coloured (axes, grid, labels, phase
/// marks and warm-up shading are all grey).
fn saturated(p: [u8; 3]) -> bool {
    let (max, min) = (p.iter().max().unwrap(), p.iter().min().unwrap());
    max - min > 60
}

/// The svg with every element drawn in a colour that is not grey removed:
/// the chart with its data taken out. plotters writes one element per line.
fn without_colour(svg: &str) -> String {
    svg.lines()
        .filter(|line| {
            !["stroke=\"#", "fill=\"#"].iter().any(|attr| {
                line.match_indices(attr).any(|(at, _)| {
                    let hex = &line[at + attr.len()..];
                    let channel = |i: usize| hex.get(i..i + 2).map(str::to_string);
                    let (r, g, b) = (channel(0), channel(2), channel(4));
                    !(r == g && g == b)
                })
            })
        })
        .collect::<Vec<_>>()
        .join("\n")
}

struct Png {
    width: u32,
    height: u32,
    rgb: Vec<[u8; 3]>,
}

impl Png {
    fn decode(path: &Path) -> Png {
        let file = std::fs::File::open(path).expect("open screenshot");
        let mut decoder = png::Decoder::new(std::io::BufReader::new(file));
        decoder.set_transformations(png::Transformations::EXPAND | png::Transformations::STRIP_16);
        let mut reader = decoder.read_info().expect("screenshot is a PNG");
        let mut buf = vec![0; reader.output_buffer_size().expect("sane PNG size")];
        let info = reader.next_frame(&mut buf).expect("decode screenshot");
        let samples = info.color_type.samples();
        assert!(
            samples >= 3,
            "unexpected PNG colour type {:?}",
            info.color_type
        );
        let rgb = buf[..info.buffer_size()]
            .chunks(info.line_size)
            .flat_map(|line| {
                line.chunks(samples)
                    .take(info.width as usize)
                    .map(|px| [px[0], px[1], px[2]])
            })
            .collect();
        Png {
            width: info.width,
            height: info.height,
            rgb,
        }
    }

    fn count(&self, x: u32, y: u32, w: u32, h: u32, f: impl Fn([u8; 3]) -> bool) -> usize {
        let mut n = 0;
        for row in y..(y + h).min(self.height) {
            for col in x..(x + w).min(self.width) {
                if f(self.rgb[(row * self.width + col) as usize]) {
                    n += 1;
                }
            }
        }
        n
    }
}

const CHROMIUM: &str = "/usr/bin/chromium";

/// Renders `page` in headless chromium at `size` into `png`, and decodes it.
fn screenshot(page: &Path, png: &Path, size: (u32, u32)) -> Png {
    assert!(
        Path::new(CHROMIUM).is_file(),
        "{CHROMIUM} is missing: install Debian's `chromium` package \
         (`apt-get install chromium`; .ci/run installs it)"
    );
    let profile = TempDir::new("chromium");
    let log = profile.path().join("chromium.log");
    let _ = std::fs::remove_file(png);
    let mut child = Command::new(CHROMIUM)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
        ])
        .arg(format!(
            "--user-data-dir={}",
            profile.path().join("profile").display()
        ))
        .arg(format!("--screenshot={}", png.display()))
        .arg(format!("--window-size={},{}", size.0, size.1))
        .arg(format!("file://{}", page.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("chromium log file"))
        .spawn()
        .expect("start chromium");
    let deadline = Instant::now() + Duration::from_secs(120);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for chromium") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "chromium took over 2 minutes: {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let log = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(status.success(), "chromium failed ({status}): {log}");
    assert!(png.is_file(), "chromium wrote no screenshot: {log}");
    Png::decode(png)
}
