//! Reading a run never changes it, and never passes a damaged log off as a
//! whole one: the real coordinator, the real sled log, the sealed file,
//! damaged on disk by hand.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use common::*;

/// Every file under `dir` with its bytes: what "unchanged" is checked
/// against.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.insert(path.clone(), std::fs::read(&path).unwrap());
            }
        }
    }
    out
}

/// One short run; its id and directory.
fn one_run(dir: &TempDir) -> (String, PathBuf) {
    let w = dir.write("w.toml", &synthetic_workload("1s"));
    let out = coordinator(dir.path(), &["run", w.to_str().unwrap()]);
    assert!(out.status.success(), "run failed: {}", text(&out.stderr));
    let id = run_id(&out.stderr);
    let run_dir = dir.path().join("runs").join(&id);
    (id, run_dir)
}

/// The readers, as a user calls them on one run.
fn readers(id: &str) -> Vec<Vec<&str>> {
    vec![
        vec!["report", id],
        vec!["report", id, "--format", "json"],
        vec!["report", id, "--format", "html"],
        vec!["compare", id, id],
        vec!["replay", id, "--window", "1s"],
        vec!["export", id, "--events"],
        vec!["runs"],
        vec!["verify", id],
    ]
}

/// A finished run is sealed, and `verify` says it is whole. A flipped bit
/// in the sealed file makes every reader say the run is damaged, naming
/// the record, with exit 4 (`runs` lists it as unreadable and goes on), and
/// no reader changes a byte of the run's files. Before the seal existed, a
/// reader opened the sled database, whose recovery rewrote a damaged log
/// into an empty one and printed "0 requests", exit 0.
#[test]
fn a_damaged_run_reads_as_damaged_and_reading_changes_nothing() {
    let dir = TempDir::new("integrity-damaged");
    let (id, run_dir) = one_run(&dir);
    let sealed = run_dir.join("sealed.log");
    assert!(sealed.is_file(), "a finished run is sealed");
    let out = coordinator(dir.path(), &["verify", &id]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("whole"), "{}", text(&out.stdout));
    for wrong in [vec!["verify", "no-such-run"], vec!["verify"]] {
        let out = coordinator(dir.path(), &wrong);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{wrong:?}: {}",
            text(&out.stderr)
        );
    }
    let whole = report_json(dir.path(), &id);

    let mut bytes = std::fs::read(&sealed).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x04;
    std::fs::write(&sealed, &bytes).unwrap();
    let before = snapshot(dir.path());
    for args in readers(&id) {
        let out = coordinator(dir.path(), &args);
        let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
        if args[0] == "runs" {
            assert!(out.status.success(), "runs: {stderr}");
            assert!(
                stdout.contains("unreadable") && stdout.contains("damaged at record"),
                "runs: {stdout}"
            );
        } else {
            assert_eq!(out.status.code(), Some(4), "{args:?}: {stdout}\n{stderr}");
            assert!(
                format!("{stdout}{stderr}").contains("is damaged at record"),
                "{args:?} names the damage: {stdout}\n{stderr}"
            );
            assert!(
                !stdout.contains("VERDICT"),
                "{args:?} printed numbers: {stdout}"
            );
        }
    }
    assert!(
        snapshot(dir.path()) == before,
        "a reader changed the run's files"
    );

    // The bit flipped back: the run reads whole, with the same numbers.
    bytes[at] ^= 0x04;
    std::fs::write(&sealed, &bytes).unwrap();
    assert_eq!(report_json(dir.path(), &id)["phases"], whole["phases"]);
}

/// A sealed run needs no database: with `log/` gone it still reads. A run
/// with neither is an error, and no reader makes an empty database for it
/// (one did: `runs` created `log/db`).
#[test]
fn a_sealed_run_reads_without_its_database_and_a_missing_log_is_not_made() {
    let dir = TempDir::new("integrity-nodb");
    let (id, run_dir) = one_run(&dir);
    let whole = report_json(dir.path(), &id);
    std::fs::remove_dir_all(run_dir.join("log")).unwrap();
    assert_eq!(report_json(dir.path(), &id)["phases"], whole["phases"]);
    let out = coordinator(dir.path(), &["verify", "--all"]);
    assert!(out.status.success(), "{}", text(&out.stdout));

    let (other, other_dir) = one_run(&dir);
    std::fs::remove_file(other_dir.join("sealed.log")).unwrap();
    std::fs::remove_file(other_dir.join("log").join("db")).unwrap();
    let out = coordinator(dir.path(), &["report", &other]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("has no log"),
        "{}",
        text(&out.stderr)
    );
    for args in [vec!["runs"], vec!["verify", "--all"]] {
        coordinator(dir.path(), &args);
    }
    assert!(
        !other_dir.join("log").join("db").exists(),
        "a reader made a database"
    );
}

/// A run whose coordinator never sealed it (killed: here, its seal
/// removed) is read from a copy of its database: `verify` calls it
/// incomplete, the report has its numbers, and the database's files are
/// byte for byte what they were (sled's recovery rewrites what it opens).
/// No copy is left behind.
#[test]
fn an_unsealed_run_is_read_from_a_copy() {
    let dir = TempDir::new("integrity-unsealed");
    let (id, run_dir) = one_run(&dir);
    let whole = report_json(dir.path(), &id);
    std::fs::remove_file(run_dir.join("sealed.log")).unwrap();
    let before = snapshot(dir.path());
    let copies = || {
        std::fs::read_dir(std::env::temp_dir())
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .starts_with("fleetbench-read-")
            })
            .count()
    };
    let copies_before = copies();
    assert_eq!(report_json(dir.path(), &id)["phases"], whole["phases"]);
    let out = coordinator(dir.path(), &["verify", &id]);
    assert!(out.status.success());
    assert!(
        text(&out.stdout).contains("incomplete"),
        "{}",
        text(&out.stdout)
    );
    assert!(
        snapshot(dir.path()) == before,
        "reading changed the unsealed log"
    );
    assert!(
        copies() <= copies_before,
        "a copy of the log was left behind"
    );
}
