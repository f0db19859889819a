//! A run's verdict as JUnit XML, the report CI systems read (`--junit
//! FILE`): one `<testsuite>` for the run (its name and id, tests,
//! failures, skipped, time) in a `<testsuites>`, and in it one
//! `<testcase>` per threshold (a failure carries the measured value and the
//! limit) and one per check the verdict makes besides thresholds: "run
//! valid" (the invalid reasons), "run not interrupted", and "run ended
//! without failure" (the failed reasons that are not a threshold: every
//! request of a phase failed, run control failed). Those three are always
//! there, so a CI's list of tests stays the same from run to run.

use std::fmt::Write as _;

use crate::cells::threshold_cells;
use fleetbench_fold::{Reason, ReasonKind, Report, ThresholdResult, Verdict};

/// One test case: its name, and its failure (message, type, details) or
/// skip (message), if any.
struct Case {
    name: String,
    failure: Option<(String, &'static str, String)>,
    skipped: Option<String>,
}

/// The report's verdict as a JUnit XML document.
pub fn render(report: &Report) -> String {
    let cases = cases(report);
    let failures = cases.iter().filter(|c| c.failure.is_some()).count();
    let skipped = cases.iter().filter(|c| c.skipped.is_some()).count();
    let counts = format!(
        "tests=\"{}\" failures=\"{failures}\" errors=\"0\" skipped=\"{skipped}\" time=\"{:.3}\"",
        cases.len(),
        report.duration_s
    );
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(out, "<testsuites name=\"fleetbench\" {counts}>");
    let _ = writeln!(
        out,
        "  <testsuite name=\"{}\" {counts} timestamp=\"{}\">",
        xml(&format!("{} (run {})", report.name, report.run_id)),
        xml(&report.started_at)
    );
    out.push_str("    <properties>\n");
    for (name, value) in [
        ("run_id", report.run_id.as_str()),
        ("status", report.status.as_str()),
        ("verdict", report.verdict.name()),
    ] {
        let _ = writeln!(
            out,
            "      <property name=\"{name}\" value=\"{}\"/>",
            xml(value)
        );
    }
    out.push_str("    </properties>\n");
    let class = xml(&format!("fleetbench.{}", report.name));
    for c in &cases {
        let _ = write!(
            out,
            "    <testcase classname=\"{class}\" name=\"{}\"",
            xml(&c.name)
        );
        match (&c.failure, &c.skipped) {
            (Some((message, kind, details)), _) => {
                let _ = writeln!(
                    out,
                    ">\n      <failure message=\"{}\" type=\"{kind}\">{}</failure>\n    </testcase>",
                    xml(message),
                    xml(details)
                );
            }
            (None, Some(message)) => {
                let _ = writeln!(
                    out,
                    ">\n      <skipped message=\"{}\"/>\n    </testcase>",
                    xml(message)
                );
            }
            (None, None) => out.push_str("/>\n"),
        }
    }
    out.push_str("  </testsuite>\n</testsuites>\n");
    out
}

/// The thresholds' cases, then the three checks.
fn cases(report: &Report) -> Vec<Case> {
    let mut out: Vec<Case> = report
        .thresholds
        .iter()
        .map(|t| {
            let [_, _, measured, limit] = threshold_cells(t);
            let details = format!("{}: measured {measured}, limit {limit}", t.metric);
            Case {
                name: format!("threshold {}", t.threshold),
                failure: (t.result == ThresholdResult::Failed)
                    .then(|| (t.text.clone(), "threshold", details)),
                skipped: (t.result == ThresholdResult::Skipped).then(|| t.text.clone()),
            }
        })
        .collect();
    let check = |name: &str, kind: &'static str, of: &dyn Fn(&Reason) -> bool| {
        let found: Vec<&str> = report
            .reasons
            .iter()
            .filter(|r| of(r))
            .map(|r| r.message.as_str())
            .collect();
        Case {
            name: name.to_string(),
            failure: (!found.is_empty()).then(|| (found.join("; "), kind, found.join("\n"))),
            skipped: None,
        }
    };
    out.push(check("run valid", "invalid", &|r| {
        r.verdict == Verdict::Invalid
    }));
    out.push(check("run not interrupted", "interrupted", &|r| {
        r.verdict == Verdict::Interrupted
    }));
    out.push(check("run ended without failure", "failed", &|r| {
        r.verdict == Verdict::Failed && r.kind != ReasonKind::Threshold
    }));
    out
}

/// Text for XML content and attribute values: escaped, and the control
/// characters XML 1.0 cannot hold dropped.
fn xml(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\n' => out.push_str("&#10;"),
            c if (c as u32) < 0x20 && c != '\t' && c != '\r' => {}
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use fleetbench::pb;
    use fleetbench_fold::ReportOptions;
    use fleetbench_fold::testlog::{finished, fold_of, phase_ended, stream, threshold};

    use super::*;

    /// A run with one threshold met and one crossed: a suite of five cases
    /// (two thresholds, three checks), one failure carrying the measured
    /// value, parsed back as XML.
    #[test]
    fn a_crossed_threshold_is_a_failing_case_with_its_measured_value() {
        let mut records = stream(4);
        for agent in ["a", "b"] {
            records.push(phase_ended(agent, 21, pb::PhaseEnded::default()));
        }
        records.push(finished("completed", ""));
        let report = fold_of(&records).report(&ReportOptions {
            thresholds: Some(vec![
                threshold("p99", "load", 1.0, "load:p99<1us"),
                threshold("max", "", 60e6, "max<1m"),
            ]),
            ..Default::default()
        });
        let text = render(&report);
        let doc = roxmltree::Document::parse(&text).expect("well-formed XML");
        let suite = doc
            .descendants()
            .find(|n| n.has_tag_name("testsuite"))
            .unwrap();
        assert_eq!(suite.attribute("tests"), Some("5"), "{text}");
        assert_eq!(suite.attribute("failures"), Some("1"), "{text}");
        let failed: Vec<_> = doc
            .descendants()
            .filter(|n| n.has_tag_name("failure"))
            .collect();
        assert_eq!(failed.len(), 1);
        let case = failed[0].parent().unwrap();
        assert_eq!(case.attribute("name"), Some("threshold load:p99<1us"));
        let message = failed[0].attribute("message").unwrap();
        assert!(
            message.starts_with("p99 ") && message.ends_with(", not below 1us"),
            "{message}"
        );
        assert!(
            failed[0].text().unwrap().starts_with("p99: measured "),
            "{text}"
        );
    }

    /// A run without end: "run valid" fails with the reason; text that
    /// would break XML is escaped.
    #[test]
    fn an_invalid_run_fails_the_run_valid_case_and_text_is_escaped() {
        let mut report = fold_of(&stream(1)).report(&ReportOptions::default());
        report.name = "a <b> & \"c\"\u{1}".into();
        let text = render(&report);
        let doc = roxmltree::Document::parse(&text).expect("well-formed XML");
        let valid = doc
            .descendants()
            .find(|n| n.attribute("name") == Some("run valid"))
            .unwrap();
        let failure = valid.first_element_child().unwrap();
        assert_eq!(failure.attribute("type"), Some("invalid"));
        assert!(
            failure
                .attribute("message")
                .unwrap()
                .contains("no RunFinished")
        );
        let suite = doc
            .descendants()
            .find(|n| n.has_tag_name("testsuite"))
            .unwrap();
        assert!(
            suite
                .attribute("name")
                .unwrap()
                .starts_with("a <b> & \"c\" (run ")
        );
    }
}
