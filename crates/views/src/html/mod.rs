//! The HTML report: one self-contained page per run ([`render`]), or per
//! pair of runs ([`render_compare`]), with the headline tables on top, the
//! notices listed, and SVG charts drawn inline by plotters' SVG backend.
//!
//! A run's page charts throughput and errors (with the offered and the
//! intended rate of open-loop phases), latency percentiles (p50/p90/p99/max),
//! the latency distribution (the percentile spectrum on a log axis,
//! x = 1/(1-p), as HdrHistogram plots it), per-agent throughput, throughput
//! and p99 per operation (phases with named operations), and CPU, memory and
//! network per host, on the run's time axis with phase starts, warm-ups and
//! phase stops marked. The run's verdict opens the page in a banner (green
//! passed, red failed or invalid, amber interrupted), its thresholds get a
//! table, and a phase whose numbers describe a load generator rather than
//! the target gets a warning banner, and so does a run whose service died
//! (with the end of its stderr). The compare page overlays
//! two runs per phase (matched by name) on the same axes, time measured from
//! each phase's start.
//!
//! This module only draws a [`Report`]: the numbers come from the fold, and
//! judging whether a difference between runs matters is `compare`'s job.
//! The page fetches nothing (no scripts, stylesheets, images or fonts), so it
//! opens offline; every text that comes from the log (names, notices,
//! reasons) is escaped. Chart colours are saturated and everything else on a
//! chart (axes, grid, phase marks, warm-up shading) is grey, which the
//! screenshot test relies on to tell a drawn chart from an empty one.
//!
//! # Layout
//! This file puts the two pages together ([`render`], [`render_compare`]).
//! - `page`: the page's frame and CSS, escaping, and the tables and notes
//!   around the charts.
//! - `chart`: the chart model (series, axes, marks) and the palette, and
//!   what the run's and the compare charts both take from a phase.
//! - `axis`: how values read as axis labels, and where ticks go.
//! - `run_charts`: the charts of one run, on the run's time axis.
//! - `compare_charts`: the charts of one phase of two runs, overlaid.
//! - `draw`: a chart as a `<figure>`: its legend, and its SVG by plotters.
//! - `tests`: both pages parsed back, on synthetic folds.

mod axis;
mod chart;
mod compare_charts;
mod draw;
mod page;
mod run_charts;
#[cfg(test)]
mod tests;

use std::fmt::Write as _;

use compare_charts::compare_charts;
use draw::figure;
use fleetbench_fold::{PhaseReport, Report};
use page::{
    compare_table, esc, headline_table, hosts_table, limited_banner, log_integrity, notices,
    ops_table, page_end, page_start, phase_notes, run_meta, services_banner, thresholds_table,
    verdict_banner,
};
use run_charts::run_charts;

/// The HTML report of one run.
pub fn render(report: &Report) -> String {
    let title = format!("fleetbench run {} ({})", report.name, report.run_id);
    let mut out = page_start(&title);
    let _ = writeln!(out, "<h1>fleetbench run {}</h1>", esc(&report.name));
    let _ = writeln!(out, "<p class=\"meta\">{}</p>", run_meta(report));
    out.push_str(&verdict_banner(report));
    if !report.reason.is_empty() {
        let _ = writeln!(
            out,
            "<p class=\"reason\">reason: {}</p>",
            esc(&report.reason)
        );
    }
    out.push_str(&services_banner(report));
    out.push_str(&headline_table(report));
    for p in &report.phases {
        out.push_str(&limited_banner(p, ""));
    }
    out.push_str(&thresholds_table(report));
    out.push_str(&phase_notes(report));
    out.push_str(&ops_table(report));
    out.push_str(&hosts_table(report));
    out.push_str(&log_integrity(report));
    out.push_str(&notices("Notices", &report.notices));
    let charts = run_charts(report);
    out.push_str("<h2>Charts</h2>\n");
    if charts.is_empty() {
        out.push_str("<p class=\"empty\">This run logged no results to chart.</p>\n");
    }
    for c in &charts {
        out.push_str(&figure(c));
    }
    out.push_str(&page_end());
    out
}

/// The HTML report comparing two runs: both runs' facts, then per phase
/// (matched by name) the headline numbers side by side and the two runs'
/// timelines and latency distributions overlaid, time measured from each
/// phase's start.
pub fn render_compare(base: &Report, candidate: &Report) -> String {
    let title = format!(
        "fleetbench compare {} ({}) with {} ({})",
        base.name, base.run_id, candidate.name, candidate.run_id
    );
    let mut out = page_start(&title);
    let _ = writeln!(
        out,
        "<h1>fleetbench compare: {} vs {}</h1>",
        esc(&base.name),
        esc(&candidate.name)
    );
    out.push_str(
        "<p class=\"meta\">The base run is drawn dashed, the candidate solid.</p>\n\
         <table class=\"runs\">\n<tr><th></th><th>base</th><th>candidate</th></tr>\n",
    );
    let facts = |r: &Report| {
        [
            ("run", r.run_id.clone()),
            ("name", r.name.clone()),
            ("status", r.status.clone()),
            ("verdict", r.verdict.name().to_string()),
            ("started", r.started_at.clone()),
            ("duration", format!("{:.1}s", r.duration_s)),
            ("agents", r.agents.len().to_string()),
            ("coordinator", r.coordinator_version.clone()),
            ("agent binary", r.agent_binary_hash.clone()),
        ]
    };
    for ((label, b), (_, c)) in facts(base).into_iter().zip(facts(candidate)) {
        let _ = writeln!(
            out,
            "<tr><th>{label}</th><td>{}</td><td>{}</td></tr>",
            esc(&b),
            esc(&c)
        );
    }
    out.push_str("</table>\n");

    let in_both: Vec<(&PhaseReport, &PhaseReport)> = base
        .phases
        .iter()
        .filter_map(|b| {
            candidate
                .phases
                .iter()
                .find(|c| c.name == b.name)
                .map(|c| (b, c))
        })
        .collect();
    let only = |a: &Report, b: &Report| -> Vec<String> {
        a.phases
            .iter()
            .filter(|p| !b.phases.iter().any(|q| q.name == p.name))
            .map(|p| esc(&p.name))
            .collect()
    };
    let (only_base, only_candidate) = (only(base, candidate), only(candidate, base));
    if in_both.is_empty() {
        out.push_str("<p class=\"empty\">The two runs have no phase in common.</p>\n");
    }
    if !only_base.is_empty() {
        let _ = writeln!(
            out,
            "<p class=\"note\">Only in the base run: {}.</p>",
            only_base.join(", ")
        );
    }
    if !only_candidate.is_empty() {
        let _ = writeln!(
            out,
            "<p class=\"note\">Only in the candidate run: {}.</p>",
            only_candidate.join(", ")
        );
    }
    for (i, (b, c)) in in_both.iter().enumerate() {
        let _ = writeln!(out, "<h2>Phase {}</h2>", esc(&b.name));
        out.push_str(&limited_banner(b, "base run: "));
        out.push_str(&limited_banner(c, "candidate run: "));
        if !b.generator_limited.is_empty() || !c.generator_limited.is_empty() {
            out.push_str(
                "<p class=\"reason\">This comparison is not trustworthy: a load generator, \
                 not the target, set the numbers of this phase.</p>\n",
            );
        }
        out.push_str(&compare_table(b, c));
        for chart in compare_charts(i, b, c) {
            out.push_str(&figure(&chart));
        }
    }
    out.push_str(&notices("Notices of the base run", &base.notices));
    out.push_str(&notices("Notices of the candidate run", &candidate.notices));
    out.push_str(&page_end());
    out
}
