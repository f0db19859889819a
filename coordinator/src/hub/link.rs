//! One admitted agent's link, from its Welcome until it ends: pings that
//! measure the agent's clock offset (the sample with the smallest round
//! trip wins; the attach is logged once a few came back), each event
//! dropped if its sequence number was already received and else queued for
//! the writer, a pool agent's late events (of an earlier run whose
//! coordinator died before acking them) appended to that run's own log, and
//! the detach.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use fleetbench::pb;
use prost::Message;
use tonic::Streaming;

use super::guard::{self, Take};
use super::registry::Outgoing;
use super::state::Hub;
use super::writer::WriteItem;
use crate::log::{EventLog, LogError};

/// Pings sent right after attach to measure the clock offset.
const SYNC_PINGS: u32 = 5;
/// A link whose agent has said nothing for this long is ended (an agent
/// pongs each ping, one a second): as long as an agent's lease.
const SILENT_AFTER: Duration = Duration::from_secs(15);

/// How a message ends the link.
enum Ending {
    /// It cannot go on (the writer stopped).
    Broken(String),
    /// The agent broke a rule (`guard`).
    CutOff(String),
}

/// Waits until `at`; never, for `None` (the branch is off then).
async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// An agent's link, as Attach hands it over once the agent is welcomed.
pub(super) struct Link {
    hub: Arc<Hub>,
    agent_id: String,
    /// Which of the agent's links this is: a newer one supersedes it.
    generation: u64,
    hello: pb::Hello,
    peer: String,
    tx: Outgoing,
    /// Pongs received.
    pongs: u32,
    /// Whether this link's AgentAttached is logged: a link that ends before
    /// (a pool agent benched right after its Welcome) logs no detach either.
    attach_logged: bool,
}

impl Link {
    pub(super) fn new(
        hub: Arc<Hub>,
        hello: pb::Hello,
        peer: String,
        generation: u64,
        tx: Outgoing,
    ) -> Link {
        Link {
            hub,
            agent_id: hello.agent_id.clone(),
            generation,
            hello,
            peer,
            tx,
            pongs: 0,
            attach_logged: false,
        }
    }

    /// Reads the link until it ends: the agent closes it, it breaks, or the
    /// agent says nothing (not even a pong to a ping a second) for
    /// [`SILENT_AFTER`]: frozen (SIGSTOP), or cut off without the link
    /// knowing. Then the agent counts as detached since it was last heard.
    pub(super) async fn serve(mut self, mut inbound: Streaming<pb::AgentMessage>) {
        let mut pings = tokio::time::interval(Duration::from_millis(20));
        let mut sent_pings = 0u32;
        let mut heard = tokio::time::Instant::now();
        // Set while the agent's budget holds the link back (`guard`).
        let mut resume_at: Option<tokio::time::Instant> = None;
        let end = loop {
            tokio::select! {
                _ = pings.tick() => {
                    if resume_at.is_none() && heard.elapsed() > SILENT_AFTER {
                        break format!("silent for {}s (no message, not even a pong)", SILENT_AFTER.as_secs());
                    }
                    if self.ping() {
                        sent_pings += 1;
                    }
                    if sent_pings == SYNC_PINGS {
                        // After the burst, one ping a second keeps the estimate fresh.
                        pings = tokio::time::interval_at(
                            tokio::time::Instant::now() + Duration::from_secs(1),
                            Duration::from_secs(1),
                        );
                    }
                }
                () = sleep_until(resume_at), if resume_at.is_some() => {
                    resume_at = None;
                    heard = tokio::time::Instant::now();
                }
                m = inbound.message(), if resume_at.is_none() => match m {
                    Ok(Some(m)) => {
                        heard = tokio::time::Instant::now();
                        let handled = match m.msg {
                            Some(pb::agent_message::Msg::Event(ev)) => self.event(ev).await,
                            Some(pb::agent_message::Msg::Pong(p)) => {
                                self.pong(&p).await;
                                Ok(Duration::ZERO)
                            }
                            Some(pb::agent_message::Msg::LateEvents(late)) => self.late(late).await,
                            Some(pb::agent_message::Msg::Hello(_)) | None => Ok(Duration::ZERO),
                        };
                        match handled {
                            Ok(wait) if wait > Duration::ZERO => resume_at = Some(heard + wait),
                            Ok(_) => {}
                            Err(Ending::Broken(why)) => break why,
                            Err(Ending::CutOff(why)) => break self.cut_off(why).await,
                        }
                    }
                    Ok(None) => break "closed by the agent".to_string(),
                    // A message past the decoding limit: no agent sends one.
                    Err(status) if status.code() == tonic::Code::OutOfRange => {
                        break self.cut_off(status.message().to_string()).await;
                    }
                    Err(status) => break format!("link broke: {}", status.message()),
                }
            }
        };
        let since = fleetbench::clock::now_us()
            - i64::try_from(heard.elapsed().as_micros()).unwrap_or(i64::MAX);
        self.detach(end, since).await;
    }

    /// Cuts the agent off for the rest of the run for breaking a rule
    /// (`why`): later Hellos are refused for good, and a notice says why.
    /// Returns the link's end.
    async fn cut_off(&self, why: String) -> String {
        self.hub
            .registry
            .lock()
            .expect("never poisoned")
            .cut_off
            .insert(self.agent_id.clone(), why.clone());
        self.hub
            .notice(
                "error",
                &self.agent_id,
                format!(
                    "agent {} is cut off for the rest of the run: {why}; what it logged before stays, nothing more is taken from it",
                    self.agent_id
                ),
            )
            .await;
        format!("cut off: {why}")
    }

    fn ping(&self) -> bool {
        self.tx
            .try_send(Ok(pb::CoordinatorMessage {
                msg: Some(pb::coordinator_message::Msg::Ping(pb::Ping {
                    coordinator_time_us: fleetbench::clock::now_us(),
                })),
            }))
            .is_ok()
    }

    /// Judges an event (`guard`) and queues it for the log unless its seq
    /// was received already. Returns how long the link must wait before it
    /// reads on (the agent's budget), or how it ends.
    async fn event(&self, ev: pb::Event) -> Result<Duration, Ending> {
        let size = ev.encoded_len();
        if let Some(why) = guard::event_fault(&ev, size) {
            return Err(Ending::CutOff(why));
        }
        let started = self.hub.started_us;
        let judged = self
            .hub
            .slot_mut(&self.agent_id, |slot| {
                let stream = guard::Stream {
                    received_through: &mut slot.state.received_through,
                    duplicates: &mut slot.state.duplicates,
                    offset_us: slot.state.offset_us,
                    synced: slot.state.synced,
                };
                guard::judge(stream, &mut slot.guard, &ev, size, started)
            })
            .ok_or_else(|| Ending::Broken("the agent's slot is gone".into()))?;
        let (take, wait) = judged.map_err(Ending::CutOff)?;
        let Take::Log { offset_us } = take else {
            return Ok(wait);
        };
        let seq = ev.seq;
        let record = pb::LogRecord {
            logged_at_us: fleetbench::clock::now_us(),
            record: Some(pb::log_record::Record::AgentEvent(pb::AgentEvent {
                agent_id: self.agent_id.clone(),
                event: Some(ev),
                clock_offset_us: offset_us,
            })),
        };
        let room = self.hub.room_for(size).await;
        let item = WriteItem::Agent {
            agent_id: self.agent_id.clone(),
            seq,
            record,
            room,
        };
        self.hub
            .queue
            .send(item)
            .await
            .map_err(|_| Ending::Broken("the log writer has stopped".to_string()))?;
        Ok(wait)
    }

    /// Takes a clock sample; once enough came back, logs the attach.
    async fn pong(&mut self, p: &pb::Pong) {
        let now = fleetbench::clock::now_us();
        let rtt = (now - p.coordinator_time_us).max(0) as u64;
        let offset = p.agent_time_us - (p.coordinator_time_us + (rtt / 2) as i64);
        self.pongs += 1;
        let pongs = self.pongs;
        let first_sync = self
            .hub
            .slot_mut(&self.agent_id, |slot| {
                if slot.state.rtt_us == 0 || rtt < slot.state.rtt_us {
                    slot.state.rtt_us = rtt.max(1);
                    slot.state.offset_us = offset;
                }
                let first = !slot.state.synced && pongs >= SYNC_PINGS.min(3);
                if first {
                    slot.state.synced = true;
                }
                first.then_some((slot.state.offset_us, slot.state.rtt_us))
            })
            .flatten();
        let Some((offset, rtt)) = first_sync else {
            return;
        };
        self.attach_logged = true;
        self.hub
            .log(pb::log_record::Record::AgentAttached(pb::AgentAttached {
                hello: Some(self.hello.clone()),
                peer: self.peer.clone(),
                clock_offset_us: offset,
                rtt_us: rtt,
            }))
            .await;
        tracing::info!(
            "agent {} attached from {} (clock offset {offset} us, rtt {rtt} us)",
            self.agent_id,
            self.peer
        );
        self.hub.changed.notify_waiters();
    }

    /// Delivers late events to their run's log, and tells the agent how far;
    /// an event no honest agent sends cuts the agent off instead.
    async fn late(&self, late: pb::LateEvents) -> Result<Duration, Ending> {
        if let Some(why) = late
            .events
            .iter()
            .find_map(|ev| guard::event_fault(ev, ev.encoded_len()))
        {
            return Err(Ending::CutOff(format!(
                "late events of run {}: {why}",
                late.run_id
            )));
        }
        let agent_id = &self.agent_id;
        let run_id = late.run_id.clone();
        let n = late.events.len();
        let ack = match deliver_late(&self.hub, agent_id, late).await {
            Ok(through) => {
                tracing::info!(
                    "agent {agent_id}: {n} late event(s) of run {run_id} are in its log (through seq {through})"
                );
                pb::LateAck {
                    run_id,
                    through,
                    error: String::new(),
                }
            }
            Err(error) => {
                tracing::warn!("agent {agent_id}: late events of run {run_id} not taken: {error}");
                pb::LateAck {
                    run_id,
                    through: 0,
                    error,
                }
            }
        };
        let _ = self.tx.try_send(Ok(pb::CoordinatorMessage {
            msg: Some(pb::coordinator_message::Msg::LateAck(ack)),
        }));
        Ok(Duration::ZERO)
    }

    /// The link ended (`end` says how): the agent is detached unless a
    /// newer link holds it already.
    /// Ends the link; the agent was last heard at `since` (Unix µs).
    async fn detach(self, end: String, since: i64) {
        let current = self.hub.registry.lock().expect("never poisoned").release(
            &self.agent_id,
            self.generation,
            since,
        );
        if current && !self.attach_logged {
            self.hub.changed.notify_waiters();
        }
        if current && self.attach_logged {
            tracing::info!("agent {} detached: {end}", self.agent_id);
            self.hub
                .log(pb::log_record::Record::AgentDetached(pb::AgentDetached {
                    agent_id: self.agent_id.clone(),
                    reason: end,
                }))
                .await;
            self.hub.changed.notify_waiters();
        }
    }
}

/// Appends `events` of `agent_id` for run `run_id` (not this one) to that
/// run's log, leaving out those it holds already; returns the highest
/// seq now durable there.
async fn deliver_late(hub: &Hub, agent_id: &str, late: pb::LateEvents) -> Result<u64, String> {
    let dir = hub.late_dir.lock().expect("never poisoned").clone();
    let pooled = hub
        .registry
        .lock()
        .expect("never poisoned")
        .pool
        .contains(agent_id);
    let (Some(dir), true) = (dir, pooled) else {
        return Err("this coordinator takes no late events from this agent".into());
    };
    if late.run_id == hub.run_id || uuid::Uuid::parse_str(&late.run_id).is_err() {
        return Err(format!("{:?} is not another run", late.run_id));
    }
    if !crate::log::run_dir(&dir, &late.run_id).join("log").exists() {
        return Err(format!("there is no run {} here", late.run_id));
    }
    let _one = hub.late_lock.lock().await;
    let delivery = LateDelivery {
        dir,
        agent: agent_id.to_string(),
        by: hub.run_id.clone(),
        late,
    };
    let handle = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || delivery.write(&handle))
        .await
        .map_err(|e| format!("delivering late events: {e}"))?
}

/// Late events of `agent`, to go into their run's log under `dir`, brought
/// by the coordinator of run `by`.
struct LateDelivery {
    dir: PathBuf,
    agent: String,
    by: String,
    late: pb::LateEvents,
}

impl LateDelivery {
    /// Appends what the run's log lacks of the events (with a notice
    /// saying who brought them) and flushes; sled blocks, so this runs on
    /// a blocking thread and waits for the flush through `handle`.
    fn write(self, handle: &tokio::runtime::Handle) -> Result<u64, String> {
        let LateDelivery {
            dir,
            agent,
            by,
            late,
        } = self;
        let fail = |e: LogError| format!("run {}: {:#}", late.run_id, anyhow::Error::new(e));
        let mut log = EventLog::open(&dir, &late.run_id).map_err(fail)?;
        let (have, offset, attached) = held(&log, &agent).map_err(fail)?;
        if !attached {
            return Err(format!(
                "agent {agent} never attached to run {}",
                late.run_id
            ));
        }
        let through = late
            .events
            .iter()
            .map(|e| e.seq)
            .max()
            .unwrap_or(0)
            .max(have);
        let now = fleetbench::clock::now_us();
        let mut records: Vec<pb::LogRecord> = late
            .events
            .into_iter()
            .filter(|e| e.seq > have)
            .map(|event| pb::LogRecord {
                logged_at_us: now,
                record: Some(pb::log_record::Record::AgentEvent(pb::AgentEvent {
                    agent_id: agent.clone(),
                    event: Some(event),
                    clock_offset_us: offset,
                })),
            })
            .collect();
        if records.is_empty() {
            return Ok(through);
        }
        let n = records.len();
        records.push(pb::LogRecord {
            logged_at_us: now,
            record: Some(pb::log_record::Record::Notice(pb::CoordinatorNotice {
                level: "info".into(),
                message: format!(
                    "{n} late event(s) of agent {agent} (never acked: this run's coordinator went away) delivered by the coordinator of run {by}"
                ),
                agent_id: agent.clone(),
            })),
        });
        log.append(&records).map_err(fail)?;
        handle.block_on(log.flush()).map_err(fail)?;
        drop(log);
        // The run's readers read its seal: seal it again, with these.
        crate::log::seal(&dir, &late.run_id).map_err(|e| format!("run {}: {e:#}", late.run_id))?;
        Ok(through)
    }
}

/// What `log` holds of `agent` already: its highest seq, its clock offset
/// there, and whether it ever attached.
fn held(log: &EventLog, agent: &str) -> Result<(u64, i64, bool), LogError> {
    let (mut have, mut offset, mut attached) = (0u64, 0i64, false);
    for item in log.scan() {
        match item?.1.record {
            Some(pb::log_record::Record::AgentEvent(e)) if e.agent_id == agent => {
                have = have.max(e.event.map_or(0, |e| e.seq));
                offset = e.clock_offset_us;
            }
            Some(pb::log_record::Record::AgentAttached(a))
                if a.hello.as_ref().is_some_and(|h| h.agent_id == agent) =>
            {
                offset = a.clock_offset_us;
                attached = true;
            }
            _ => {}
        }
    }
    Ok((have, offset, attached))
}
