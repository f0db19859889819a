//! [`Hub`]: what the links, the writer and run control share, and run
//! control's side of it: admitting agents, commanding them, logging
//! coordinator records, waiting until they are durable, reading the fold.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fleetbench::pb;
use fleetbench_fold::Fold;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;

use super::registry::{AgentState, Registry, Slot};
use super::writer::{self, Outcome, WriteItem};
use crate::log::{EventLog, LogReader};

/// Refusals logged per window at most: anyone who can reach the port can be
/// refused, and must not be able to fill the log. The rest are counted, and
/// the count is logged with the next refusal that is, or at the run's end
/// ([`Hub::log_refusals_left`]), with the run's total.
const REFUSALS_PER_WINDOW: u32 = 20;
const REFUSAL_WINDOW: Duration = Duration::from_secs(10);
/// A detached agent is lost once its link has been down this long: an
/// agent's lease (15 s unless `--lease`), after which it stops its load.
const LOST_AFTER: Duration = Duration::from_secs(15);

/// How many refusals were logged in the current window, and how many not.
struct RefusalBudget {
    window_start: Instant,
    logged: u32,
    unlogged: u64,
    /// Every refusal of the run, logged or not.
    total: u64,
    /// Every refusal of the run not logged one by one.
    dropped: u64,
}

/// The hub, as run control, the links and the writer share it.
pub(crate) struct Hub {
    pub(super) run_id: String,
    pub(super) registry: Mutex<Registry>,
    refusals: Mutex<RefusalBudget>,
    pub(super) queue: mpsc::Sender<WriteItem>,
    /// The live fold, fed after each durable batch.
    pub fold: Arc<Mutex<Fold>>,
    /// Signalled after each durable batch and each agent state change.
    pub changed: Notify,
    /// Set when the log cannot be written.
    failure: Mutex<Option<String>>,
    /// The newest durable log sequence number, for followers of ReadLog.
    pub(super) durable_lsn: watch::Sender<u64>,
    pub(super) reader: LogReader,
    /// Set once the run has ended; ReadLog followers then finish.
    pub(super) finished: watch::Sender<bool>,
    /// The data directory whose other runs' logs take late events.
    pub(super) late_dir: Mutex<Option<PathBuf>>,
    /// One late delivery at a time (sled locks a log per open).
    pub(super) late_lock: tokio::sync::Mutex<()>,
    /// Local agents' process ids, by agent id: a phase does not wait for
    /// one whose process is gone.
    local_pids: Mutex<BTreeMap<String, u32>>,
    /// When the hub started (Unix µs): no event of this run is older.
    pub(super) started_us: i64,
    /// Bytes of agent events queued for the writer and not yet durable,
    /// as permits: at most [`QUEUED_BYTES`] (backpressure on the links).
    queued_bytes: Arc<Semaphore>,
}

/// Agent events' bytes the writer's queue holds at most.
const QUEUED_BYTES: usize = 256 << 20;

impl Hub {
    /// Starts the hub and its writer over `log`.
    pub(crate) fn start(
        run_id: String,
        log: EventLog,
        stop: CancellationToken,
    ) -> (Arc<Hub>, tokio::task::JoinHandle<()>) {
        let (queue, rx) = mpsc::channel(writer::QUEUE);
        let reader = log.reader();
        let hub = Arc::new(Hub {
            run_id,
            registry: Mutex::new(Registry::default()),
            refusals: Mutex::new(RefusalBudget {
                window_start: Instant::now(),
                logged: 0,
                unlogged: 0,
                total: 0,
                dropped: 0,
            }),
            queue,
            fold: Arc::new(Mutex::new(Fold::new())),
            changed: Notify::new(),
            failure: Mutex::new(None),
            durable_lsn: watch::Sender::new(log.next_lsn().saturating_sub(1)),
            reader,
            finished: watch::Sender::new(false),
            late_dir: Mutex::new(None),
            late_lock: tokio::sync::Mutex::new(()),
            local_pids: Mutex::new(BTreeMap::new()),
            started_us: fleetbench::clock::now_us(),
            queued_bytes: Arc::new(Semaphore::new(QUEUED_BYTES)),
        });
        let written = {
            let hub = hub.clone();
            move |outcome: Outcome<'_>| hub.written(outcome)
        };
        let writer = tokio::spawn(writer::write_loop(log, rx, stop, written));
        (hub, writer)
    }

    pub(crate) fn run_id(&self) -> &str {
        &self.run_id
    }

    /// Lets `agent_id` attach, with this secret. Agents not admitted are
    /// refused; admitting an id again replaces its secret.
    pub(crate) fn admit(&self, agent_id: impl Into<String>, secret: String) {
        self.registry
            .lock()
            .expect("never poisoned")
            .admitted
            .insert(agent_id.into(), secret);
    }

    /// Lets pool agent `agent_id` attach with this secret, whatever run its
    /// Hello names.
    pub(crate) fn admit_pool(&self, agent_id: impl Into<String>, secret: String) {
        let agent_id = agent_id.into();
        let mut registry = self.registry.lock().expect("never poisoned");
        registry.pool.insert(agent_id.clone());
        registry.admitted.insert(agent_id, secret);
    }

    /// Pool agents must run this agent binary (hex SHA-256) to get in.
    pub(crate) fn expect_binary(&self, hash: &str) {
        self.registry.lock().expect("never poisoned").expected_hash = Some(hash.to_string());
    }

    /// The agent binary pool agents must run, if set.
    pub(crate) fn expected_binary(&self) -> Option<String> {
        self.registry
            .lock()
            .expect("never poisoned")
            .expected_hash
            .clone()
    }

    /// This run does not use these pool agents: they are turned away (to
    /// dial again later), and told to go if attached.
    pub(crate) fn bench(&self, ids: &[String]) {
        let mut registry = self.registry.lock().expect("never poisoned");
        for id in ids {
            registry.benched.insert(id.clone());
            if let Some(tx) = registry.slots.get(id).and_then(|s| s.tx.clone()) {
                let _ = tx.try_send(Ok(pb::CoordinatorMessage {
                    msg: Some(pb::coordinator_message::Msg::Shutdown(pb::Shutdown {
                        reason: format!("run {} does not use this agent", self.run_id),
                    })),
                }));
            }
        }
    }

    /// From now on every attach is refused, for the agent to retry later
    /// (with another coordinator): the run is ending.
    pub(crate) fn close_doors(&self) {
        self.registry.lock().expect("never poisoned").closing = true;
    }

    /// Takes pool agents' late events of other runs under `data_dir` into
    /// those runs' logs.
    pub(crate) fn accept_late(&self, data_dir: &Path) {
        *self.late_dir.lock().expect("never poisoned") = Some(data_dir.to_path_buf());
    }

    /// Makes this hub check and note every Hello, and welcome none.
    pub(crate) fn look_only(&self) {
        self.registry.lock().expect("never poisoned").look_only = true;
    }

    /// Pool agents refused for running another binary, as last seen.
    pub(crate) fn stale(&self) -> BTreeMap<String, AgentState> {
        self.registry.lock().expect("never poisoned").stale.clone()
    }

    /// Logs a refusal as a notice, unless too many were logged lately.
    /// `agent_id` is set only for an admitted agent: an unknown one is
    /// whatever a stranger sent, and is only quoted in the message.
    pub(super) async fn log_refusal(&self, agent_id: &str, message: String) {
        let unlogged = {
            let mut budget = self.refusals.lock().expect("never poisoned");
            budget.total += 1;
            if budget.window_start.elapsed() >= REFUSAL_WINDOW {
                budget.window_start = Instant::now();
                budget.logged = 0;
            }
            if budget.logged >= REFUSALS_PER_WINDOW {
                budget.unlogged += 1;
                budget.dropped += 1;
                return;
            }
            budget.logged += 1;
            std::mem::take(&mut budget.unlogged)
        };
        let message = if unlogged > 0 {
            format!("{message} ({unlogged} earlier refusal(s) not logged: too many)")
        } else {
            message
        };
        self.notice("warn", agent_id, message).await;
    }

    /// At the run's end: if any refusal went unlogged, how many, with the
    /// run's total (those since the last logged one were never counted in
    /// the log before).
    pub(crate) async fn log_refusals_left(&self) {
        let (total, dropped) = {
            let mut budget = self.refusals.lock().expect("never poisoned");
            budget.unlogged = 0;
            (budget.total, budget.dropped)
        };
        if dropped > 0 {
            self.notice(
                "warn",
                "",
                format!(
                    "{total} connection(s) or attach(es) refused during the run in all, {dropped} of them not logged one by one (too many)"
                ),
            )
            .await;
        }
    }

    /// Queues a coordinator record for the log.
    pub(crate) async fn log(&self, record: pb::log_record::Record) {
        let rec = pb::LogRecord {
            logged_at_us: fleetbench::clock::now_us(),
            record: Some(record),
        };
        let _ = self.queue.send(WriteItem::Record(rec)).await;
    }

    pub(crate) async fn notice(&self, level: &str, agent_id: &str, message: impl Into<String>) {
        let message = message.into();
        match level {
            "error" => tracing::error!("{message}"),
            "warn" => tracing::warn!("{message}"),
            _ => tracing::info!("{message}"),
        }
        self.log(pb::log_record::Record::Notice(pb::CoordinatorNotice {
            level: level.into(),
            message,
            agent_id: agent_id.into(),
        }))
        .await;
    }

    /// Waits until everything queued so far is durable.
    pub(crate) async fn flush(&self) -> Result<(), String> {
        let (tx, rx) = oneshot::channel();
        self.queue
            .send(WriteItem::Flush(tx))
            .await
            .map_err(|_| "the log writer has stopped".to_string())?;
        rx.await
            .map_err(|_| "the log writer has stopped".to_string())?
    }

    /// Why the log cannot be written, if it cannot.
    pub(crate) fn failure(&self) -> Option<String> {
        self.failure.lock().expect("never poisoned").clone()
    }

    pub(crate) fn agents(&self) -> BTreeMap<String, AgentState> {
        self.registry
            .lock()
            .expect("never poisoned")
            .slots
            .iter()
            .map(|(id, s)| (id.clone(), s.state.clone()))
            .collect()
    }

    /// Sends a command to an agent; false if it is not connected. A
    /// StartPhase lets the agent send results for that phase (`guard`).
    pub(crate) fn send(&self, agent_id: &str, msg: pb::coordinator_message::Msg) -> bool {
        let mut registry = self.registry.lock().expect("never poisoned");
        let Some(slot) = registry.slots.get_mut(agent_id) else {
            return false;
        };
        let Some(tx) = slot.tx.clone() else {
            return false;
        };
        if let pb::coordinator_message::Msg::StartPhase(start) = &msg {
            slot.guard.phases.insert(start.phase_index);
        }
        tx.try_send(Ok(pb::CoordinatorMessage { msg: Some(msg) }))
            .is_ok()
    }

    /// Marks the run finished for ReadLog followers.
    /// Local agent `id` runs as process `pid` on this machine.
    pub(crate) fn set_local_pid(&self, id: &str, pid: u32) {
        self.local_pids
            .lock()
            .expect("never poisoned")
            .insert(id.to_string(), pid);
    }

    /// Agent `id` is a local agent whose process has exited (it is gone,
    /// or a zombie waiting for this coordinator to reap it).
    pub(crate) fn local_agent_gone(&self, id: &str) -> bool {
        let Some(pid) = self
            .local_pids
            .lock()
            .expect("never poisoned")
            .get(id)
            .copied()
        else {
            return false;
        };
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            // The state follows the command name in parentheses.
            Ok(stat) => stat
                .rsplit_once(") ")
                .is_some_and(|(_, rest)| rest.starts_with('Z') || rest.starts_with('X')),
            Err(_) => true,
        }
    }

    /// Whether agent `id` is lost, and how: a local agent whose process
    /// exited, or any agent detached for longer than an agent's lease
    /// (by then it has stopped its load: it will not finish the phase).
    pub(crate) fn agent_lost(&self, id: &str) -> Option<String> {
        if self.local_agent_gone(id) {
            return Some("its process exited".to_string());
        }
        let registry = self.registry.lock().expect("never poisoned");
        if let Some(why) = registry.cut_off.get(id) {
            return Some(format!("cut off: {why}"));
        }
        let detached = registry
            .slots
            .get(id)
            .filter(|s| !s.state.connected && s.state.detached_at_us > 0)
            .map(|s| s.state.detached_at_us)?;
        let away = Duration::from_micros(
            u64::try_from(fleetbench::clock::now_us() - detached).unwrap_or(0),
        );
        (away > LOST_AFTER).then(|| {
            format!(
                "its link has been down for {:.0}s (an agent stops its load after its lease)",
                away.as_secs_f64()
            )
        })
    }

    /// Seals the run's log (`log::sealed`): once the writer has stopped.
    pub(crate) fn seal_log(&self) -> anyhow::Result<crate::log::sealed::Seal> {
        self.reader.seal()
    }

    pub(crate) fn finish(&self) {
        self.finished.send_replace(true);
    }

    /// What the writer made of a batch: durable, so each agent is acked
    /// and the fold fed; or not, and nothing is acked any more.
    fn written(&self, outcome: Outcome<'_>) {
        let (records, acks, lsn) = match outcome {
            Outcome::Durable { records, acks, lsn } => (records, acks, lsn),
            Outcome::Failed(why) => {
                tracing::error!("{why}");
                *self.failure.lock().expect("never poisoned") = Some(why.to_string());
                self.changed.notify_waiters();
                return;
            }
        };
        for (agent_id, seq) in acks {
            let tx = self.slot_mut(&agent_id, |slot| {
                slot.state.acked_through = slot.state.acked_through.max(seq);
                slot.tx.clone().map(|tx| (tx, slot.state.acked_through))
            });
            if let Some(Some((tx, through))) = tx {
                let _ = tx.try_send(Ok(pb::CoordinatorMessage {
                    msg: Some(pb::coordinator_message::Msg::Ack(pb::Ack { through })),
                }));
            }
        }
        {
            let mut fold = self.fold.lock().expect("never poisoned");
            for r in records {
                fold.apply(r);
            }
        }
        self.durable_lsn.send_replace(lsn);
        self.changed.notify_waiters();
    }

    /// Sets every agent's budget from now on (tests make it small).
    #[cfg(test)]
    pub(super) fn set_limits(&self, limits: super::guard::Limits) {
        self.registry.lock().expect("never poisoned").limits = limits;
    }

    /// Room in the writer's queue for an event of `size` bytes: waits
    /// while the queue holds [`QUEUED_BYTES`] of them. The permit goes
    /// with the event and frees the room once it is durable.
    pub(super) async fn room_for(&self, size: usize) -> OwnedSemaphorePermit {
        let n = u32::try_from(size.clamp(1, QUEUED_BYTES)).expect("QUEUED_BYTES fits in u32");
        self.queued_bytes
            .clone()
            .acquire_many_owned(n)
            .await
            .expect("the semaphore is never closed")
    }

    pub(super) fn slot_mut<R>(&self, agent_id: &str, f: impl FnOnce(&mut Slot) -> R) -> Option<R> {
        self.registry
            .lock()
            .expect("never poisoned")
            .slots
            .get_mut(agent_id)
            .map(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Refusals are logged up to a budget per window; the rest are counted,
    /// so a stranger hammering the port cannot fill the log.
    #[tokio::test]
    async fn refusal_notices_are_capped() {
        let data =
            std::env::temp_dir().join(format!("fleetbench-hub-test-{}", uuid::Uuid::now_v7()));
        let run_id = uuid::Uuid::now_v7().to_string();
        let log = EventLog::open(&data, &run_id).unwrap();
        let stop = CancellationToken::new();
        let (hub, writer) = Hub::start(run_id, log, stop.clone());
        for i in 0..REFUSALS_PER_WINDOW + 5 {
            hub.log_refusal("", format!("refusal {i}")).await;
        }
        hub.flush().await.unwrap();
        let notices = hub.fold.lock().unwrap().notices.clone();
        assert_eq!(notices.len(), REFUSALS_PER_WINDOW as usize, "{notices:?}");
        // At the end, the count of those not logged reaches the log.
        hub.log_refusals_left().await;
        hub.flush().await.unwrap();
        let notices = hub.fold.lock().unwrap().notices.clone();
        let last = notices.last().unwrap();
        assert!(
            last.contains(&format!("{} connection(s)", REFUSALS_PER_WINDOW + 5))
                && last.contains("5 of them not logged one by one"),
            "{last}"
        );
        stop.cancel();
        writer.await.unwrap();
        drop(hub);
        std::fs::remove_dir_all(&data).unwrap();
    }
}
