//! The agent registry: who may attach (admitted ids and their secrets, pool
//! agents and what this run does with them), who has, and each one's link
//! as the hub knows it. Data only: the hub holds it behind one lock, and
//! the checks that read it (Hello) are in `handshake.rs`.

use std::collections::{BTreeMap, HashMap, HashSet};

use fleetbench::pb;
use tokio::sync::mpsc;
use tonic::Status;

use super::guard::{Guard, Limits};

/// The hub's end of an agent link.
pub(super) type Outgoing = mpsc::Sender<Result<pb::CoordinatorMessage, Status>>;

/// One agent as the hub knows it.
#[derive(Debug, Clone, Default)]
pub(crate) struct AgentState {
    pub hello: pb::Hello,
    pub peer: String,
    pub connected: bool,
    /// Clock offset measured (attach record logged) on the current link.
    pub synced: bool,
    /// agent clock - coordinator clock, from the smallest-RTT ping.
    pub offset_us: i64,
    pub rtt_us: u64,
    /// Highest seq received (queued or durable).
    pub received_through: u64,
    /// Highest seq durable in the log (acked).
    pub acked_through: u64,
    pub duplicates: u64,
    /// When its last Hello passed (coordinator clock, Unix µs).
    pub seen_at_us: i64,
    /// When its link last ended, if it is detached (Unix µs; 0: attached
    /// or never).
    pub detached_at_us: i64,
    generation: u64,
}

pub(super) struct Slot {
    pub(super) state: AgentState,
    pub(super) tx: Option<Outgoing>,
    /// What its events are judged by (across its links).
    pub(super) guard: Guard,
}

/// Who may attach, and who has.
#[derive(Default)]
pub(super) struct Registry {
    /// Agent id -> secret, from [`Hub::admit`](super::Hub::admit).
    pub(super) admitted: HashMap<String, String>,
    /// Agents that have attached at least once.
    pub(super) slots: BTreeMap<String, Slot>,
    /// Admitted agents that are pool agents.
    pub(super) pool: HashSet<String>,
    /// Pool agents this run does not use: sent away to dial again.
    pub(super) benched: HashSet<String>,
    /// The agent binary pool agents must run (hex SHA-256).
    pub(super) expected_hash: Option<String>,
    /// Pool agents refused for running another binary, as last seen.
    pub(super) stale: BTreeMap<String, AgentState>,
    /// The run is ending: no attach is welcomed any more.
    pub(super) closing: bool,
    /// (pool agent, kind of refusal) already logged.
    pub(super) told: HashSet<(String, String)>,
    /// Check and note every Hello, welcome none.
    pub(super) look_only: bool,
    /// Agents cut off for breaking a rule (`guard`), and the rule: refused
    /// for good.
    pub(super) cut_off: BTreeMap<String, String>,
    /// Each agent's budget (`guard`).
    pub(super) limits: Limits,
}

impl Registry {
    /// Notes a Hello that passed its checks, and gives its agent's slot to
    /// this link (`tx`): returns the link's generation and what is durable
    /// of the agent already. A look-only registry only notes it (None).
    pub(super) fn claim(
        &mut self,
        hello: &pb::Hello,
        peer: &str,
        tx: &Outgoing,
    ) -> Option<(u64, u64)> {
        let look_only = self.look_only;
        let limits = self.limits;
        let slot = self
            .slots
            .entry(hello.agent_id.clone())
            .or_insert_with(|| Slot {
                state: AgentState::default(),
                tx: None,
                guard: Guard::new(&limits),
            });
        slot.state.generation += 1;
        slot.state.hello = hello.clone();
        slot.state.peer = peer.to_string();
        slot.state.seen_at_us = fleetbench::clock::now_us();
        if look_only {
            // Noted; not attached.
            return None;
        }
        slot.state.connected = true;
        slot.state.detached_at_us = 0;
        slot.state.synced = false;
        slot.tx = Some(tx.clone());
        Some((slot.state.generation, slot.state.acked_through))
    }

    /// Notes a refused Hello: a `stale` pool agent is listed as last seen.
    /// Returns whether its agent id is admitted, and whether this pool
    /// agent was told to `retry` for this `kind` of refusal before.
    pub(super) fn note_refused(
        &mut self,
        hello: &pb::Hello,
        peer: &str,
        stale: bool,
        retry: bool,
        kind: &str,
    ) -> (bool, bool) {
        let agent_id = &hello.agent_id;
        if stale {
            self.stale.insert(
                agent_id.clone(),
                AgentState {
                    hello: hello.clone(),
                    peer: peer.to_string(),
                    seen_at_us: fleetbench::clock::now_us(),
                    ..Default::default()
                },
            );
        }
        // A pool agent told to retry redials twice a second: the log hears
        // each reason once per agent.
        let told = retry
            && self.pool.contains(agent_id)
            && !self.told.insert((agent_id.clone(), kind.to_string()));
        (self.admitted.contains_key(agent_id), told)
    }

    /// Ends link `generation` of `agent_id`, whose agent was last heard at
    /// `since` (Unix µs); false if a newer link holds the agent's slot (or
    /// it has none), which then stays as it is.
    pub(super) fn release(&mut self, agent_id: &str, generation: u64, since: i64) -> bool {
        let Some(slot) = self.slots.get_mut(agent_id) else {
            return false;
        };
        let current = slot.state.generation == generation;
        if current {
            slot.state.connected = false;
            slot.state.detached_at_us = since;
            slot.state.synced = false;
            slot.tx = None;
        }
        current
    }
}
