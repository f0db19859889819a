//! The command loop: runs the phases the link hands over, one at a time.

use std::sync::Arc;
use std::time::Duration;

use fleetbench::pb;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use super::phase::run_phase;
use crate::outbox::Outbox;

/// What the link hands the engine.
#[derive(Debug)]
pub(crate) enum Command {
    Start(Box<pb::StartPhase>),
    Stop(u32),
    /// Stop whatever runs (shutdown).
    StopAll,
}

#[derive(Clone, Copy)]
pub(crate) struct EngineConfig {
    /// Stop generating load when the coordinator has been unreachable this
    /// long: an agent never loads a target without someone listening.
    pub lease: Duration,
    /// Worker threads per phase; 0 = one per core.
    pub threads: usize,
}

/// Runs phases until `stop`; `idle` is true whenever no phase runs.
pub(crate) async fn run(
    cfg: EngineConfig,
    mut commands: mpsc::Receiver<Command>,
    outbox: Arc<Outbox>,
    connected: watch::Receiver<bool>,
    idle: watch::Sender<bool>,
    stop: CancellationToken,
) {
    let mut current: Option<(u32, CancellationToken, tokio::task::JoinHandle<()>)> = None;
    loop {
        let finished = async {
            match current.as_mut() {
                Some((_, _, handle)) => {
                    let _ = handle.await;
                }
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            biased;
            () = stop.cancelled() => break,
            () = finished => {
                current = None;
                idle.send_replace(true);
            }
            cmd = commands.recv() => match cmd {
                None => break,
                Some(Command::Start(s)) => {
                    if let Some((index, token, handle)) = current.take() {
                        tracing::warn!("phase {} still running when phase {} was started: stopping it", index, s.phase_index);
                        token.cancel();
                        let _ = handle.await;
                    }
                    let token = stop.child_token();
                    let index = s.phase_index;
                    idle.send_replace(false);
                    let handle = tokio::spawn(run_phase(
                        *s,
                        outbox.clone(),
                        token.clone(),
                        connected.clone(),
                        (cfg.lease, cfg.threads),
                    ));
                    current = Some((index, token, handle));
                }
                Some(Command::Stop(index)) => {
                    if let Some((i, token, _)) = &current && *i == index {
                        token.cancel();
                    }
                }
                Some(Command::StopAll) => {
                    if let Some((_, token, _)) = &current {
                        token.cancel();
                    }
                }
            }
        }
    }
    if let Some((_, token, handle)) = current {
        token.cancel();
        let _ = handle.await;
    }
}
