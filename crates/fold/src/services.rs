//! The run's `[[service]]` processes as their records tell it: which were
//! ready where, which ended by themselves (and when, and how), which were
//! never started, and the last lines each wrote to stderr. From these the
//! report lists the services that did not run as the run needed them
//! ([`ServiceReport`]): a service that died during the run means the
//! numbers after its death do not measure the service.
//!
//! Built from `ServiceState` and `ServiceOutput` records alone, so a past
//! run's report shows the same facts. A service that ran until the run
//! stopped it is not listed: a log without trouble reports as it always did.

use fleetbench::pb;

use crate::model::ServiceReport;

/// Lines of a service's stderr a report keeps.
pub const STDERR_TAIL_LINES: usize = 20;
/// Bytes of a service's stderr the fold keeps (the tail's lines come from
/// these); more is dropped from the front once twice as much piled up.
const TAIL_BYTES: usize = 16 * 1024;
/// A line of the tail is cut at this many characters.
const LINE_CHARS: usize = 400;

/// Every service of the run, in the order they were first logged.
#[derive(Debug, Clone, Default)]
pub(crate) struct ServiceLog {
    services: Vec<ServiceFacts>,
}

/// One service (on every host it runs on).
#[derive(Debug, Clone, Default)]
struct ServiceFacts {
    name: String,
    /// The hosts where it became ready ("" for this machine).
    ready_on: Vec<String>,
    /// Its process id, from its latest "started" record.
    pid: u32,
    /// How it ended by itself, or was never started: the earliest.
    ending: Option<Ending>,
    /// The end of what it wrote to stderr (a service on an SSH host: its
    /// output, both streams in one file).
    stderr: Vec<u8>,
    /// Bytes were dropped from the front of `stderr`.
    cut: bool,
}

/// A service's "exited" or "failed" record.
#[derive(Debug, Clone)]
struct Ending {
    state: String,
    at_us: i64,
    host: String,
    exit_status: String,
    detail: String,
    pid: u32,
    /// It had been ready on that host.
    after_ready: bool,
}

/// A phase as the services' report places events in it: its name, start
/// and planned end (coordinator clock, µs).
pub(crate) struct PhaseSpan<'a> {
    pub(crate) name: &'a str,
    pub(crate) start_us: i64,
    pub(crate) end_us: i64,
}

impl ServiceLog {
    fn service_mut(&mut self, name: &str) -> &mut ServiceFacts {
        let i = match self.services.iter().position(|s| s.name == name) {
            Some(i) => i,
            None => {
                self.services.push(ServiceFacts {
                    name: name.to_string(),
                    ..ServiceFacts::default()
                });
                self.services.len() - 1
            }
        };
        &mut self.services[i]
    }

    /// A `ServiceState` record logged at `at_us`.
    pub(crate) fn state(&mut self, s: &pb::ServiceState, at_us: i64) {
        let service = self.service_mut(&s.service);
        match s.state.as_str() {
            "started" if s.pid > 0 => service.pid = s.pid,
            "ready" if !service.ready_on.contains(&s.host) => {
                service.ready_on.push(s.host.clone());
            }
            "exited" | "failed" => {
                let earlier = service.ending.as_ref().is_none_or(|e| at_us < e.at_us);
                if earlier {
                    service.ending = Some(Ending {
                        state: s.state.clone(),
                        at_us,
                        host: s.host.clone(),
                        exit_status: s.exit_status.clone(),
                        detail: s.detail.clone(),
                        pid: if s.pid > 0 { s.pid } else { service.pid },
                        after_ready: s.state == "exited" && service.ready_on.contains(&s.host),
                    });
                }
            }
            _ => {}
        }
    }

    /// A `ServiceOutput` record: stderr (or a remote service's output) is
    /// kept, its end only.
    pub(crate) fn output(&mut self, o: &pb::ServiceOutput) {
        if o.stream != "stderr" && o.stream != "output" {
            return;
        }
        let service = self.service_mut(&o.service);
        service.stderr.extend_from_slice(&o.data);
        if service.stderr.len() > 2 * TAIL_BYTES {
            let drop = service.stderr.len() - TAIL_BYTES;
            service.stderr.drain(..drop);
            service.cut = true;
        }
    }

    /// The services that died or were never started, with the run's start
    /// and its phases to place their end in.
    pub(crate) fn report(&self, run_start_us: i64, phases: &[PhaseSpan<'_>]) -> Vec<ServiceReport> {
        self.services
            .iter()
            .filter_map(|s| {
                let e = s.ending.as_ref()?;
                Some(ServiceReport {
                    name: s.name.clone(),
                    host: e.host.clone(),
                    state: e.state.clone(),
                    exit_status: e.exit_status.clone(),
                    pid: e.pid,
                    died_during_run: e.after_ready,
                    at_s: ((e.at_us - run_start_us) as f64 / 1e3).round() / 1e3,
                    when: when(e.at_us, phases),
                    detail: e.detail.clone(),
                    stderr_tail: tail_lines(&s.stderr, s.cut),
                })
            })
            .collect()
    }
}

/// Where `at_us` falls among the phases, in words.
fn when(at_us: i64, phases: &[PhaseSpan<'_>]) -> String {
    let Some(p) = phases
        .iter()
        .filter(|p| p.start_us <= at_us)
        .max_by_key(|p| p.start_us)
    else {
        return "before the first phase".to_string();
    };
    let t = (at_us - p.start_us) as f64 / 1e6;
    if at_us <= p.end_us {
        format!("during phase {}, {t:.1}s in", p.name)
    } else {
        format!("after phase {} ended", p.name)
    }
}

/// The last [`STDERR_TAIL_LINES`] lines of `bytes` (a first line cut short
/// by `cut` left out), each at most [`LINE_CHARS`] characters.
fn tail_lines(bytes: &[u8], cut: bool) -> Vec<String> {
    let text = String::from_utf8_lossy(bytes);
    let mut lines: Vec<&str> = text.lines().collect();
    if cut && lines.len() > 1 {
        lines.remove(0);
    }
    while lines.last().is_some_and(|l| l.trim().is_empty()) {
        lines.pop();
    }
    let from = lines.len().saturating_sub(STDERR_TAIL_LINES);
    lines[from..]
        .iter()
        .map(|l| {
            let l = l.trim_end();
            match l.char_indices().nth(LINE_CHARS) {
                Some((i, _)) => format!("{}…", &l[..i]),
                None => l.to_string(),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(name: &str, state: &str, host: &str) -> pb::ServiceState {
        pb::ServiceState {
            service: name.into(),
            state: state.into(),
            host: host.into(),
            ..Default::default()
        }
    }

    fn stderr(name: &str, text: &str) -> pb::ServiceOutput {
        pb::ServiceOutput {
            service: name.into(),
            stream: "stderr".into(),
            data: text.as_bytes().to_vec(),
        }
    }

    const LOAD: PhaseSpan<'static> = PhaseSpan {
        name: "load",
        start_us: 1_000_000,
        end_us: 11_000_000,
    };

    /// Started, ready, stopped by the run: nothing to report.
    #[test]
    fn a_service_stopped_by_the_run_is_not_listed() {
        let mut log = ServiceLog::default();
        log.state(&state("db", "started", ""), 0);
        log.state(&state("db", "ready", ""), 10);
        log.output(&stderr("db", "ready to serve\n"));
        log.state(&state("db", "stopped", ""), 20_000_000);
        assert!(log.report(0, &[LOAD]).is_empty());
    }

    /// Exited after ready: died during the run, with when, how and the
    /// last 20 lines of its stderr (split across records, stdout left out).
    #[test]
    fn a_service_that_exits_after_ready_died_during_the_run() {
        let mut log = ServiceLog::default();
        log.state(
            &pb::ServiceState {
                pid: 42,
                ..state("db", "started", "")
            },
            0,
        );
        log.state(&state("db", "ready", ""), 10);
        for i in 0..30 {
            log.output(&stderr("db", &format!("line {i}\npart")));
            log.output(&stderr("db", &format!("ial {i}\n")));
        }
        log.output(&pb::ServiceOutput {
            stream: "stdout".into(),
            ..stderr("db", "not stderr\n")
        });
        log.state(
            &pb::ServiceState {
                exit_status: "killed by signal 9 (SIGKILL)".into(),
                ..state("db", "exited", "")
            },
            4_500_000,
        );
        let r = log.report(0, &[LOAD]);
        assert_eq!(r.len(), 1);
        let s = &r[0];
        assert!(s.died_during_run);
        assert_eq!(s.pid, 42);
        assert_eq!(s.exit_status, "killed by signal 9 (SIGKILL)");
        assert_eq!(s.at_s, 4.5);
        assert_eq!(s.when, "during phase load, 3.5s in");
        assert_eq!(s.stderr_tail.len(), STDERR_TAIL_LINES);
        assert_eq!(s.stderr_tail[0], "line 20");
        assert_eq!(s.stderr_tail[19], "partial 29");
    }

    /// Exited before it was ready: listed, but it did not die during the
    /// run (the run never started its load). On another host than the one
    /// where it was ready: the same.
    #[test]
    fn a_service_that_exits_before_ready_did_not_die_during_the_run() {
        let mut log = ServiceLog::default();
        log.state(&state("db", "ready", "h1"), 10);
        log.state(&state("db", "exited", "h2"), 20);
        let r = log.report(0, &[]);
        assert!(!r[0].died_during_run);
        assert_eq!(r[0].when, "before the first phase");
    }

    /// A long stderr keeps only its end; a first line cut short is left out.
    #[test]
    fn a_long_stderr_keeps_its_last_lines() {
        let mut log = ServiceLog::default();
        log.state(&state("db", "ready", ""), 0);
        let line = "x".repeat(1000);
        for i in 0..200 {
            log.output(&stderr("db", &format!("{i} {line}\n")));
        }
        log.state(&state("db", "exited", ""), 12_000_000);
        let r = log.report(0, &[LOAD]);
        let tail = &r[0].stderr_tail;
        assert_eq!(tail.len(), STDERR_TAIL_LINES);
        assert!(tail[19].starts_with("199 xxx"), "{}", tail[19]);
        assert!(tail[19].ends_with('…'));
        assert_eq!(tail[19].chars().count(), LINE_CHARS + 1);
        assert_eq!(r[0].when, "after phase load ended");
    }
}
