//! The ledger stage's loop: consume the owned partitions of the units topic, decide each
//! record, and make each bounded batch durable:
//! 1. dead letters of the duplicates to Kafka (at-least-once, as in the admit stage);
//! 2. the decision rows into `unit_decisions` through the [`Sink`] (the materialized view
//!    adds the units to `monthly_nominal` in the same INSERT) — from here the batch counts
//!    as decided;
//! 3. the new units and the partitions' marks into the on-disk state, atomically;
//! 4. an advisory Kafka commit.
//!
//! A crash after 2 leaves the state behind ClickHouse; the next assignment reads just the
//! rows after the state's mark ([`restore`]). A crash before 2 loses only what ClickHouse
//! never had, so the records are decided again, the same way.

use super::batch::DecisionBatch;
use super::decide::{decide, Decision};
use super::state::{
    KnownRecord, LedgerState, Mark, OtherSource, PackedSource, PendingUnit, StateError,
};
use crate::domain::{void_key, voided_record, Program};
use crate::ingest::context::IngestContext;
use crate::ingest::dead_letter::{DeadLetter, DeadLetterSender};
use crate::ingest::service::InFlight;
use crate::ingest::stats::Stats;
use crate::route::{
    key_hash, ledger_position, owner_hash, owner_partition, SetReader, UnitRecord, FLAG_POISON,
};
use crate::store::decisions::{
    decision_at, for_each_unit_since, last_decision, DecisionRow, DECISION_COLUMNS,
};
use crate::store::sink::{Sink, Table, Written};
use crate::store::{Store, StoreError};
use bytes::Bytes;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::FutureProducer;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The `unit_decisions` table as the sink writes it.
pub const DECISIONS_TABLE: Table = Table {
    name: "unit_decisions",
    columns: &DECISION_COLUMNS,
    partition_column: "ledger_partition",
    position_sql: crate::route::LEDGER_POSITION_SQL,
};

/// Units read from ClickHouse per state write while restoring.
const RESTORE_CHUNK_UNITS: usize = 100_000;

/// Why restoring a partition's state failed.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    State(#[from] StateError),
}

/// Brings the state of units-topic `partition` level with ClickHouse and returns where
/// the partition resumes (`None`: from its start). Reads only the rows after the state's
/// mark; rebuilds the partition when the state is lost or from another life.
pub async fn restore(
    store: &Store,
    state: &Mutex<LedgerState>,
    partition: i32,
) -> Result<Option<u64>, RestoreError> {
    let started = Instant::now();
    let last = last_decision(store, partition as u32).await?;
    let mark = state
        .lock()
        .expect("ledger state poisoned")
        .mark(partition)?;
    let Some(last) = last else {
        if mark.is_some() {
            tracing::warn!(message = "Ledger state holds a partition ClickHouse has no rows of (a database from another life); clearing it.", partition);
            state
                .lock()
                .expect("ledger state poisoned")
                .wipe(partition)?;
        }
        return Ok(None);
    };
    let resume = last.last_offset + 1;
    let from = match mark {
        Some(mark) if mark.next_offset <= resume => {
            // The state's last row must be ClickHouse's row at that offset.
            let there = decision_at(store, partition as u32, mark.next_offset - 1).await?;
            let state_guard = state.lock().expect("ledger state poisoned");
            let ours = (
                state_guard
                    .topic_name(mark.last_source.topic_id)
                    .to_string(),
                mark.last_source.partition,
                mark.last_source.offset,
            );
            drop(state_guard);
            if there.as_ref() == Some(&ours) {
                mark.next_offset
            } else {
                tracing::warn!(
                    message =
                        "Ledger state's last row is not ClickHouse's; rebuilding the partition.",
                    partition
                );
                state
                    .lock()
                    .expect("ledger state poisoned")
                    .wipe(partition)?;
                0
            }
        }
        Some(_) => {
            tracing::warn!(message = "Ledger state is ahead of ClickHouse (a database from another life); rebuilding the partition.", partition);
            state
                .lock()
                .expect("ledger state poisoned")
                .wipe(partition)?;
            0
        }
        None => 0,
    };
    if from == resume {
        tracing::info!(
            message = "Ledger state is level with ClickHouse.",
            partition,
            resume_offset = resume
        );
        return Ok(Some(resume));
    }
    let mut chunk: Vec<PendingUnit> = Vec::with_capacity(RESTORE_CHUNK_UNITS);
    let mut others: Vec<OtherSource> = Vec::new();
    let mut restored = 0u64;
    let mut failure: Option<StateError> = None;
    let mut progress = crate::telemetry::progress::Progress::new(
        format!("restoring the ledger state of units partition {partition}: units"),
        None,
    );
    let rows = for_each_unit_since(store, partition as u32, from, |row| {
        if failure.is_some() {
            return;
        }
        let Some(program) = crate::domain::Program::from_type(&row.program) else {
            return;
        };
        let mut guard = state.lock().expect("ledger state poisoned");
        let topic_id = match guard.topic_id(&row.topic) {
            Ok(id) => id,
            Err(error) => {
                failure = Some(error);
                return;
            }
        };
        let source = PackedSource {
            topic_id,
            partition: row.partition,
            offset: row.offset,
        };
        if row.reason.is_empty() {
            chunk.push(PendingUnit {
                partition,
                key: key_hash(program, &row.unit_key),
                source,
                position: ledger_position(row.ledger_offset, row.ledger_index),
            });
        } else {
            others.push(OtherSource {
                partition,
                source,
                refused: row.reason == crate::domain::Reason::StorageRefused.as_str(),
            });
        }
        if chunk.len() + others.len() >= RESTORE_CHUNK_UNITS {
            restored += chunk.len() as u64;
            metrics::counter!(crate::telemetry::metrics::STATE_RESTORE_RECORDS)
                .increment((chunk.len() + others.len()) as u64);
            progress.set(restored);
            crate::telemetry::health::HEALTH.beat();
            if let Err(error) = guard.commit(&chunk, &others, &[]) {
                failure = Some(error);
            }
            chunk.clear();
            others.clear();
        }
    })
    .await?;
    if let Some(error) = failure {
        return Err(error.into());
    }
    restored += chunk.len() as u64;
    metrics::counter!(crate::telemetry::metrics::STATE_RESTORE_RECORDS)
        .increment((chunk.len() + others.len()) as u64);
    progress.set(restored);
    progress.finish();
    let mut guard = state.lock().expect("ledger state poisoned");
    let last_topic = guard.topic_id(&last.source_topic)?;
    let mark = Mark {
        next_offset: resume,
        last_source: PackedSource {
            topic_id: last_topic,
            partition: last.source_partition,
            offset: last.source_offset,
        },
    };
    guard.commit(&chunk, &others, &[(partition, mark)])?;
    tracing::info!(
        message = "Ledger state restored from ClickHouse.",
        partition,
        from_offset = from,
        resume_offset = resume,
        rows_read = rows,
        units_restored = restored,
        elapsed_ms = started.elapsed().as_millis() as u64
    );
    Ok(Some(resume))
}

/// Decides unit records into batches.
pub struct LedgerProcessor {
    pub state: Arc<Mutex<LedgerState>>,
    pub units_partitions: u32,
    pub stats: Arc<Stats>,
}

impl LedgerProcessor {
    /// Decides the set of records in the units-topic message of `partition` at `offset`
    /// into `batch` (all of a message's rows go to one batch).
    pub fn process(
        &mut self,
        partition: i32,
        offset: i64,
        payload: Option<&[u8]>,
        batch: &mut DecisionBatch,
    ) {
        // Only this program writes the units topic; anything unreadable is not a source
        // message, so it has no place in the ledger. Logged, counted, skipped.
        let unreadable = |stats: &Stats, index: Option<usize>, detail: &str| {
            tracing::error!(message = "Unreadable record on the units topic; skipped.", partition, offset, ?index, %detail);
            stats.records_unreadable.fetch_add(1, Ordering::Relaxed);
        };
        let set = match payload.map(SetReader::new) {
            Some(Ok(set)) => set,
            Some(Err(error)) => {
                unreadable(&self.stats, None, &error.to_string());
                batch.note_offset(partition, offset);
                return;
            }
            None => {
                unreadable(&self.stats, None, "no value");
                batch.note_offset(partition, offset);
                return;
            }
        };
        let decided_at_unix_s = now_unix_s();
        // One lock per message, not per record: the flusher takes it only to commit.
        let mut state = self.state.lock().expect("ledger state poisoned");
        for (index, record) in set.enumerate() {
            match record {
                Ok(record) => {
                    let at = Position {
                        partition,
                        offset: offset as u64,
                        index: index as u32,
                        decided_at_unix_s,
                    };
                    self.decide_one(&mut state, at, record, batch);
                }
                Err(error) => unreadable(&self.stats, Some(index), &error.to_string()),
            }
        }
        drop(state);
        batch.note_offset(partition, offset);
    }

    /// Decides one record of a set.
    fn decide_one(
        &self,
        state: &mut LedgerState,
        at: Position,
        record: UnitRecord<'_>,
        batch: &mut DecisionBatch,
    ) {
        let Position {
            partition,
            offset,
            index,
            decided_at_unix_s,
        } = at;
        let program = record.program();
        let key = key_hash(program, record.unit_key);
        if owner_partition(owner_hash(program, record.unit_key), self.units_partitions) != partition
        {
            tracing::error!(message = "A unit record is on a partition that does not own its key: the units topic's partition count changed. Keys are decided by one owner only while it stays fixed.", partition, offset, units_partitions = self.units_partitions);
        }
        let topic_id = match state.topic_id(record.source_topic) {
            Ok(id) => id,
            Err(error) => panic!("ledger state unusable: {error}"),
        };
        let source = PackedSource {
            topic_id,
            partition: record.source_partition,
            offset: record.source_offset,
        };
        let position = ledger_position(offset, index);
        let seen = match state.check_and_record(partition, key, source, position) {
            Ok(seen) => seen,
            Err(error) => panic!("ledger state unusable: {error}"),
        };
        let mut row = DecisionRow {
            ledger_partition: partition as u32,
            ledger_offset: offset,
            ledger_index: index,
            record,
            decided_at_unix_s,
            reason: "",
            detail: "",
            voided: false,
            voids_position: 0,
        };
        match decide(&record, seen) {
            Decision::Unit => {
                assert!(
                    record.amount_fen >= 0,
                    "a unit never pays a negative amount"
                );
                match link_void(state, partition, program, record.unit_key) {
                    Ok(VoidLink::None) => {}
                    Ok(VoidLink::VoidedOnArrival) => row.voided = true,
                    Ok(VoidLink::Voids(position)) => row.voids_position = position + 1,
                    Err(error) => panic!("ledger state unusable: {error}"),
                }
                let unit = PendingUnit {
                    partition,
                    key,
                    source,
                    position,
                };
                batch.push(&row, source, Some(unit), None);
            }
            Decision::AlreadyDecided => {
                self.stats
                    .records_already_decided
                    .fetch_add(1, Ordering::Relaxed);
                return;
            }
            Decision::Duplicate(rejection) => {
                row.reason = rejection.reason.as_str();
                row.detail = &rejection.detail;
                batch.push(&row, source, None, Some(rejection.reason));
                batch.push_dead_letter(DeadLetter {
                    topic: record.source_topic.to_string(),
                    partition: record.source_partition as i32,
                    offset: record.source_offset as i64,
                    reason: rejection.reason,
                    detail: rejection.detail.clone(),
                    payload: None,
                    payload_at_source: true,
                    received_at_unix_s: record.received_at_unix_s,
                });
            }
        }
        if record.flags & FLAG_POISON != 0 {
            batch.poison_last_row();
        }
    }
}

/// How a new record and a void of it meet, whichever came first (both are decided by the
/// record's owner, see [`owner_hash`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum VoidLink {
    /// Not a void, and no void of it came before.
    None,
    /// A record whose void came first: its row is marked voided.
    VoidedOnArrival,
    /// A void of the record at this ledger position, decided before.
    Voids(u64),
}

/// Looks up the other half of a void and its record in the state.
fn link_void(
    state: &mut LedgerState,
    partition: i32,
    program: Program,
    unit_key: &str,
) -> Result<VoidLink, StateError> {
    if program == Program::UnitVoided {
        let Some((voided, key)) = voided_record(unit_key) else {
            return Ok(VoidLink::None);
        };
        return Ok(match state.peek(partition, key_hash(voided, key))? {
            Some(KnownRecord {
                position: Some(position),
                ..
            }) => VoidLink::Voids(position),
            Some(KnownRecord { position: None, .. }) => {
                // Only a first-format store lacks positions, and restore rewrites it.
                tracing::error!(message = "A void's record is in the ledger state without its position; the void waits instead.", partition, unit_key);
                VoidLink::None
            }
            None => VoidLink::None,
        });
    }
    if program.is_action() {
        return Ok(VoidLink::None);
    }
    let void = key_hash(Program::UnitVoided, &void_key(program, unit_key));
    Ok(if state.peek(partition, void)?.is_some() {
        VoidLink::VoidedOnArrival
    } else {
        VoidLink::None
    })
}

/// Where a record is decided: its units-topic coordinates and the decision's time.
#[derive(Debug, Clone, Copy)]
struct Position {
    partition: i32,
    offset: u64,
    index: u32,
    decided_at_unix_s: u32,
}

/// Makes ledger batches durable.
pub struct LedgerFlusher {
    pub sink: Sink,
    pub state: Arc<Mutex<LedgerState>>,
    pub producer: FutureProducer,
    pub dlq_topic: String,
    pub consumer: Arc<BaseConsumer<IngestContext>>,
    pub stats: Arc<Stats>,
    pub retry_backoff_max: Duration,
}

/// Why the ledger flusher stopped for good.
#[derive(Debug, thiserror::Error)]
pub enum LedgerFlushError {
    #[error("ClickHouse refused a ledger batch and retrying cannot help: {0}")]
    Store(#[from] StoreError),
    #[error(transparent)]
    State(#[from] StateError),
}

impl LedgerFlusher {
    /// Makes one batch's rows durable in ClickHouse (dead letters first); returns only
    /// when they are, or on a permanent error. [`LedgerFlusher::settle`] comes next.
    pub async fn write(&self, batch: &mut DecisionBatch) -> Result<Written, LedgerFlushError> {
        let letters = DeadLetterSender {
            producer: &self.producer,
            topic: &self.dlq_topic,
            retry_backoff_max: self.retry_backoff_max,
        }
        .send_all(batch.dead_letters())
        .await;
        self.stats.dead_letters_sent(&letters);
        let rows = Bytes::from(batch.take_rows());
        let insert_started = Instant::now();
        let written = self.sink.write(&*batch, rows.clone()).await?;
        // The insert buffer back in the batch, for recycling.
        if let Some(buffer) = crate::recycle::reclaim(rows) {
            batch.restore_rows(buffer);
        }
        self.stats
            .insert_retries
            .fetch_add(written.retries, Ordering::Relaxed);
        tracing::debug!(
            message = "Ledger batch in ClickHouse.",
            rows = batch.len(),
            insert_ms = insert_started.elapsed().as_millis() as u64
        );
        crate::crash::reached("ledger_after_insert");
        Ok(written)
    }

    /// Commits a batch ClickHouse holds to the state, then counts it and commits its
    /// offsets to Kafka (advisory). Blocking: the store writes to disk.
    pub fn settle(&self, batch: &DecisionBatch, written: &Written) -> Result<(), LedgerFlushError> {
        let set = batch.commit_set(&written.refused);
        let state_started = Instant::now();
        LedgerState::commit_shared(
            &self.state,
            &set.forgotten,
            &set.paid,
            &set.others,
            &set.marks,
        )?;
        tracing::debug!(
            message = "Ledger batch in the state.",
            units = set.paid.len(),
            state_ms = state_started.elapsed().as_millis() as u64
        );
        crate::crash::reached("ledger_after_state");
        let (units, rejected) = batch.tally(&written.refused);
        self.stats.batch_durable(units, &rejected);
        crate::telemetry::metrics::record_outcomes(batch.outcomes(&written.refused));
        crate::telemetry::metrics::record_batch("ledger", batch.len(), batch.first_row_at());
        let topic = self
            .consumer
            .subscription()
            .ok()
            .and_then(|s| s.elements().first().map(|e| e.topic().to_string()));
        if let Some(topic) = topic {
            let offsets = || {
                batch
                    .next_offsets()
                    .iter()
                    .map(|(partition, next)| (topic.as_str(), *partition, *next))
            };
            crate::telemetry::metrics::record_durable_offsets(offsets());
            crate::kafka::commit_advisory(&self.consumer, offsets());
        }
        Ok(())
    }
}

/// The ledger flusher's loop, two batches deep when `batches_in_flight_max` ≥ 1: while the
/// state commits batch N (disk work), batch N+1 goes to ClickHouse (with the default 0,
/// batch N+1 is shipped only once N is settled). The state still commits in batch order and only
/// after ClickHouse holds a batch, so it is never ahead of ClickHouse. Each batch counts
/// as flushed in `in_flight` once settled (or failed), for the revocation drain.
pub async fn flush_all(
    flusher: Arc<LedgerFlusher>,
    mut batches: tokio::sync::mpsc::Receiver<DecisionBatch>,
    in_flight: Arc<InFlight<DecisionBatch>>,
) -> Result<(), LedgerFlushError> {
    let mut settling: Option<tokio::task::JoinHandle<Result<(), LedgerFlushError>>> = None;
    while let Some(mut batch) = batches.recv().await {
        let written = match flusher.write(&mut batch).await {
            Ok(written) => written,
            Err(error) => {
                in_flight.batch_flushed();
                return Err(error);
            }
        };
        if let Some(previous) = settling.take() {
            previous.await.expect("the ledger settle task panicked")?;
        }
        let (flusher, in_flight) = (flusher.clone(), in_flight.clone());
        settling = Some(tokio::task::spawn_blocking(move || {
            let result = flusher.settle(&batch, &written);
            // Back in the pool before it counts as finished: a ship waiting for room
            // then finds it, instead of allocating another batch.
            in_flight.recycle(batch);
            in_flight.batch_flushed();
            result
        }));
    }
    if let Some(previous) = settling {
        previous.await.expect("the ledger settle task panicked")?;
    }
    Ok(())
}

fn now_unix_s() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs().min(u64::from(u32::MAX)) as u32)
}
