//! The group-commit writer between the agent links and the event log.
//!
//! Whatever is queued ([`WriteItem`]) is taken as one batch, appended to
//! sled in one `apply_batch` and flushed; only then is the batch handed on
//! as [`Outcome::Durable`] (the hub acks each agent, cumulatively, and
//! applies the records to the live fold), and only after that are the
//! flushes that waited for it answered. A write that fails is handed on as
//! [`Outcome::Failed`], once: from then on nothing more is written or
//! acked, and every flush is answered with that failure. The writer knows
//! the log, not the hub.

use std::collections::HashMap;

use fleetbench::pb;
use tokio::sync::{OwnedSemaphorePermit, mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::log::{EventLog, LogError};

/// Records queued for the log at most; a full queue slows the links down
/// (backpressure) rather than growing without bound.
pub(super) const QUEUE: usize = 65_536;
/// Records per group commit at most.
const BATCH: usize = 8_192;

/// What the writer is asked to do.
pub(super) enum WriteItem {
    /// Log a coordinator record.
    Record(pb::LogRecord),
    /// Log an agent's event, to be acked once durable.
    Agent {
        agent_id: String,
        seq: u64,
        record: pb::LogRecord,
        /// Its room in the queue ([`Hub::room_for`](super::Hub::room_for)),
        /// freed once the batch holding it is written.
        room: OwnedSemaphorePermit,
    },
    /// Answer once everything queued before is durable (or cannot be).
    Flush(oneshot::Sender<Result<(), String>>),
}

/// What became of one batch.
pub(super) enum Outcome<'a> {
    /// Flushed to disk.
    Durable {
        records: &'a [pb::LogRecord],
        /// Per agent, the highest seq in the batch.
        acks: HashMap<String, u64>,
        /// The log sequence number of the batch's last record.
        lsn: u64,
    },
    /// The log cannot be written: why.
    Failed(&'a str),
}

/// One batch, sorted by what each item asks for.
#[derive(Default)]
struct Batch {
    records: Vec<pb::LogRecord>,
    acks: HashMap<String, u64>,
    flushes: Vec<oneshot::Sender<Result<(), String>>>,
    /// The agent events' room in the queue, freed with the batch.
    rooms: Vec<OwnedSemaphorePermit>,
}

impl Batch {
    fn sort(items: &mut Vec<WriteItem>) -> Batch {
        let mut batch = Batch {
            records: Vec::with_capacity(items.len()),
            ..Batch::default()
        };
        for item in items.drain(..) {
            match item {
                WriteItem::Record(r) => batch.records.push(r),
                WriteItem::Agent {
                    agent_id,
                    seq,
                    record,
                    room,
                } => {
                    batch.records.push(record);
                    batch.rooms.push(room);
                    let e = batch.acks.entry(agent_id).or_default();
                    *e = (*e).max(seq);
                }
                WriteItem::Flush(tx) => batch.flushes.push(tx),
            }
        }
        batch
    }

    /// Answers every flush that waited for this batch.
    fn answer(self, result: &Result<(), String>) {
        for f in self.flushes {
            let _ = f.send(result.clone());
        }
    }
}

/// Writes what `rx` queues to `log` until `stop` (then drains the queue),
/// handing each batch's outcome to `written`.
pub(super) async fn write_loop(
    mut log: EventLog,
    mut rx: mpsc::Receiver<WriteItem>,
    stop: CancellationToken,
    mut written: impl FnMut(Outcome<'_>) + Send,
) {
    let mut items = Vec::with_capacity(BATCH);
    let mut failure: Option<String> = None;
    loop {
        let n = tokio::select! {
            biased;
            n = rx.recv_many(&mut items, BATCH) => n,
            () = stop.cancelled() => {
                // Drain what is queued, then stop.
                rx.close();
                rx.recv_many(&mut items, BATCH).await
            }
        };
        if n == 0 {
            return;
        }
        let mut batch = Batch::sort(&mut items);
        if let Some(why) = &failure {
            batch.answer(&Err(why.clone()));
            continue;
        }
        if let Err(e) = commit(&mut log, &batch.records).await {
            let why = format!("{:#}", anyhow::Error::new(e));
            written(Outcome::Failed(&why));
            batch.answer(&Err(why.clone()));
            failure = Some(why);
            continue;
        }
        // Durable: now ack, fold, and tell whoever waits.
        written(Outcome::Durable {
            records: &batch.records,
            acks: std::mem::take(&mut batch.acks),
            lsn: log.next_lsn() - 1,
        });
        batch.answer(&Ok(()));
    }
}

/// Appends `records` and makes them durable.
async fn commit(log: &mut EventLog, records: &[pb::LogRecord]) -> Result<(), LogError> {
    if !records.is_empty() {
        log.append(records)?;
        log.flush().await?;
    }
    Ok(())
}
