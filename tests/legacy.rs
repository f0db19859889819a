//! Old logs fold to the same reports: a run logged before the crate split
//! (`tests/fixtures/legacy-run`, see its README) is read by today's
//! binaries, and every view prints byte for byte what the coordinator that
//! wrote it printed.

mod common;

use std::path::Path;

use common::*;

const RUN: &str = "01a22e5b";

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create fixture copy");
    for entry in std::fs::read_dir(from).expect("read fixture") {
        let entry = entry.expect("fixture entry");
        let dest = to.join(entry.file_name());
        if entry.file_type().expect("file type").is_dir() {
            copy_dir(&entry.path(), &dest);
        } else {
            std::fs::copy(entry.path(), &dest).expect("copy fixture file");
        }
    }
}

fn fixture() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/legacy-run")
}

/// A fresh copy of the fixture's data directory (sled writes to what it
/// opens; the fixture itself stays untouched).
fn data_copy() -> TempDir {
    let dir = TempDir::new("legacy");
    copy_dir(&fixture().join("data"), dir.path());
    dir
}

#[test]
fn an_old_log_prints_exactly_what_it_printed_when_written() {
    let dir = data_copy();
    let cases: &[(&str, &[&str])] = &[
        ("report.table", &["report", RUN]),
        ("report.json", &["report", RUN, "--format", "json"]),
        ("report.csv", &["report", RUN, "--format", "csv"]),
        ("report.html", &["report", RUN, "--format", "html"]),
        ("report-warmup.table", &["report", RUN, "--include-warmup"]),
        ("export.csv", &["export", RUN, "--format", "csv"]),
        ("export.jsonl", &["export", RUN, "--format", "jsonl"]),
        ("events.jsonl", &["export", RUN, "--events"]),
        (
            "replay-2s.json",
            &[
                "replay",
                RUN,
                "--window",
                "2s",
                "--percentiles",
                "50,99.9",
                "--format",
                "json",
            ],
        ),
        ("replay-op-get.table", &["replay", RUN, "--op", "get"]),
        ("compare-self.table", &["compare", RUN, RUN]),
        ("runs.txt", &["runs"]),
    ];
    let mut wrong = Vec::new();
    for (file, args) in cases {
        let out = coordinator(dir.path(), args);
        assert!(
            out.status.success(),
            "{args:?} failed: {}",
            text(&out.stderr)
        );
        let want = std::fs::read(fixture().join("expected").join(file)).expect("expected output");
        if out.stdout != want {
            wrong.push(format!(
                "{args:?} differs from expected/{file}:\n--- got\n{}\n--- want\n{}",
                text(&out.stdout),
                text(&want)
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n\n"));
}
