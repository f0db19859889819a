//! The `exec` op: run a command (its arguments rendered per try); success
//! is exit status 0, and a command past its timeout is killed.

use std::time::{Duration, Instant};

use anyhow::{Result, anyhow, bail};
use fleetbench::pb;
use fleetbench::window::ErrorClass;
use fleetbench_gen::{GenSpec, Template};

use super::slot::{Outcome, Scratch};

pub(crate) struct ExecOp {
    argv: Vec<Template>,
    pub timeout: Duration,
}

impl ExecOp {
    pub(super) fn compile(e: &pb::ExecOperation, gens: &[GenSpec]) -> Result<ExecOp> {
        if e.argv.is_empty() {
            bail!("exec has no command");
        }
        let argv = e
            .argv
            .iter()
            .map(|a| Template::compile(a, gens).map_err(|e| anyhow!("command: {e}")))
            .collect::<Result<Vec<_>>>()?;
        Ok(ExecOp {
            argv,
            timeout: Duration::from_millis(e.timeout_ms.max(1)),
        })
    }

    pub(super) async fn execute(
        &self,
        s: &mut Scratch,
        in_flight: &std::cell::Cell<u64>,
    ) -> (Instant, Outcome, u64) {
        let mut args = Vec::with_capacity(self.argv.len());
        for t in &self.argv {
            s.buf.clear();
            s.values.render(t, &mut s.buf);
            args.push(std::ffi::OsString::from(
                String::from_utf8_lossy(&s.buf).into_owned(),
            ));
        }
        let sent = Instant::now();
        let child = tokio::process::Command::new(&args[0])
            .args(&args[1..])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn();
        let mut child = match child {
            Ok(c) => c,
            Err(_) => return (sent, Err((ErrorClass::Exit, false)), 0),
        };
        in_flight.set(in_flight.get() + 1);
        let status = tokio::time::timeout(self.timeout, child.wait()).await;
        in_flight.set(in_flight.get() - 1);
        let outcome = match status {
            Ok(Ok(st)) if st.success() => Ok(0),
            Ok(_) => Err((ErrorClass::Exit, true)),
            Err(_) => {
                let _ = child.start_kill();
                Err((ErrorClass::Timeout, true))
            }
        };
        (sent, outcome, 0)
    }
}
