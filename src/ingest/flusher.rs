//! Makes the admit stage's batches durable, one at a time and in order:
//! 1. dead letters to Kafka, acknowledged or given up and counted (at-least-once: a crash
//!    here re-sends them, keyed by their source coordinates so consumers can drop repeats;
//!    see [`super::dead_letter`] for why no letter can stop the line);
//! 2. the batch's unit records to the units topic, each to its owner's partition (in sets
//!    of records, one message per set), all acknowledged (a crash after this re-routes them on restart; the owner recognises a
//!    record by its source and decides it once);
//! 3. the outcome rows to ClickHouse in one INSERT through the [`Sink`] — from this moment
//!    the batch's offsets count as processed;
//! 4. an advisory Kafka commit, for lag monitoring only.
//!
//! Memory stays bounded because the poll loop can hand over at most
//! `batches_in_flight_max` batches and then waits.

use super::batch::Batch;
use super::context::IngestContext;
use super::dead_letter::DeadLetterSender;
use super::stats::Stats;
use crate::domain::Reason;
use crate::store::outcomes::{OutcomeRow, OUTCOME_COLUMNS};
use crate::store::rowbinary::RowBinaryWriter;
use crate::store::sink::{Backoff, RowBatch, RowPosition, Sink, Table};
use crate::store::StoreError;
use bytes::Bytes;
use rdkafka::consumer::BaseConsumer;
use rdkafka::producer::{FutureProducer, FutureRecord};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

/// The `outcomes` table as the sink writes it.
pub const OUTCOMES_TABLE: Table = Table {
    name: "outcomes",
    columns: &OUTCOME_COLUMNS,
    partition_column: "partition",
    position_sql: "`offset`",
};

/// Why the flusher stopped for good.
#[derive(Debug, thiserror::Error)]
pub enum FlushError {
    /// ClickHouse refused the batch for a reason retrying cannot fix, or stayed away.
    #[error("ClickHouse refused a batch and retrying cannot help: {0}")]
    Store(#[from] StoreError),
    /// The units topic refused records for good or stayed away past the retry deadline.
    #[error("cannot route units to {topic}: {detail}; check the broker and that the topic exists with its partitions")]
    Route { topic: String, detail: String },
}

/// Everything the admit flusher needs.
pub struct Flusher {
    pub sink: Sink,
    pub producer: FutureProducer,
    pub dlq_topic: String,
    pub units_producer: FutureProducer,
    pub units_topic: String,
    pub consumer: Arc<BaseConsumer<IngestContext>>,
    pub stats: Arc<Stats>,
    pub retry_backoff_max: Duration,
    pub give_up_after: Duration,
    /// Per units-topic partition, the largest offset a routed record was acknowledged at:
    /// how far the ledger stage must read before `--until-caught-up` may end.
    pub routed_high: Arc<std::sync::Mutex<std::collections::HashMap<i32, i64>>>,
}

impl RowBatch for Batch {
    fn row_count(&self) -> usize {
        self.len()
    }

    fn byte_range(&self, rows: std::ops::Range<usize>) -> std::ops::Range<usize> {
        Batch::byte_range(self, rows)
    }

    fn position(&self, index: usize) -> RowPosition {
        let (topic, source) = self.row_source(index);
        RowPosition {
            topic: Some(topic.to_string()),
            partition: source.partition as u32,
            offset: source.offset as u64,
        }
    }

    fn refused_row(&self, index: usize, detail: &str, _encoded: &[u8]) -> Vec<u8> {
        let (topic, source) = self.row_source(index);
        let replacement = OutcomeRow {
            topic,
            partition: source.partition as u32,
            offset: source.offset as u64,
            received_at_unix_s: source.received_at_unix_s,
            reason: Reason::StorageRefused.as_str(),
            detail,
            ..OutcomeRow::default()
        };
        let mut encoded = RowBinaryWriter::default();
        replacement.encode(&mut encoded);
        encoded.into_inner()
    }
}

impl Flusher {
    /// Makes one batch durable; returns only when it is, or on a permanent error.
    /// The batch keeps its insert buffer (reclaimed from the HTTP client) for recycling.
    pub async fn flush(&self, batch: &mut Batch) -> Result<(), FlushError> {
        crate::crash::reached("before_dead_letters");
        let letters = DeadLetterSender {
            producer: &self.producer,
            topic: &self.dlq_topic,
            retry_backoff_max: self.retry_backoff_max,
        }
        .send_all(batch.dead_letters())
        .await;
        self.stats.dead_letters_sent(&letters);
        crate::crash::reached("after_dead_letters");
        self.route_units(batch).await?;
        crate::crash::reached("after_route");
        let rows = Bytes::from(batch.take_rows());
        let insert_started = std::time::Instant::now();
        let written = self.sink.write(&*batch, rows.clone()).await?;
        if let Some(buffer) = crate::recycle::reclaim(rows) {
            batch.restore_rows(buffer);
        }
        self.stats
            .insert_retries
            .fetch_add(written.retries, Ordering::Relaxed);
        tracing::debug!(
            message = "Batch durable.",
            rows = batch.len(),
            units = batch.units_len(),
            insert_ms = insert_started.elapsed().as_millis() as u64
        );
        crate::crash::reached("after_insert");
        let mut routed = batch.accepted();
        let mut rejected_by_reason = *batch.rejected_by_reason();
        // A refused row is stored as `storage_refused` instead of what the rules decided.
        for &index in &written.refused {
            match batch.row_source(index).1.rejection {
                None => routed -= 1,
                Some(reason) => rejected_by_reason[reason as usize] -= 1,
            }
            rejected_by_reason[Reason::StorageRefused as usize] += 1;
        }
        self.stats.admit_durable(routed, &rejected_by_reason);
        crate::telemetry::metrics::record_outcomes(batch.rejections(&written.refused));
        crate::telemetry::metrics::record_batch("admit", batch.len(), batch.first_row_at());
        self.commit_advisory(batch);
        crate::crash::reached("after_commit");
        Ok(())
    }

    /// Sends every set of unit records to its owner partition and waits until all are
    /// acknowledged; sets that fail are sent again, with backoff, until the deadline.
    async fn route_units(&self, batch: &mut Batch) -> Result<(), FlushError> {
        if batch.units_len() == 0 {
            return Ok(());
        }
        batch.finish_units();
        let mut pending = batch.unit_sets();
        let mut backoff = Backoff::new(self.retry_backoff_max, self.give_up_after);
        let mut outage = crate::telemetry::health::BackoffGuard::new();
        loop {
            let mut deliveries = Vec::with_capacity(pending.len());
            for set in &pending {
                let record: FutureRecord<'_, (), [u8]> = FutureRecord::to(&self.units_topic)
                    .partition(set.partition)
                    .payload(set.payload);
                match self.units_producer.send_result(record) {
                    Ok(delivery) => deliveries.push(Some(delivery)),
                    Err((error, _)) => {
                        tracing::debug!(message = "Units topic queue full; will resend.", %error);
                        deliveries.push(None);
                    }
                }
            }
            let mut failed = Vec::new();
            let mut last_error = String::new();
            for (set, delivery) in pending.iter().zip(deliveries) {
                let delivered = match delivery {
                    Some(delivery) => match delivery.await {
                        Ok(Ok(delivered)) => {
                            let (partition, offset) = (delivered.partition, delivered.offset);
                            let mut high =
                                self.routed_high.lock().expect("routed offsets poisoned");
                            let slot = high.entry(partition).or_insert(offset);
                            *slot = (*slot).max(offset);
                            true
                        }
                        Ok(Err((error, _))) => {
                            last_error = error.to_string();
                            false
                        }
                        Err(_) => false,
                    },
                    None => false,
                };
                if !delivered {
                    failed.push(*set);
                }
            }
            if failed.is_empty() {
                return Ok(());
            }
            let Some(wait) = backoff.next_wait() else {
                return Err(FlushError::Route {
                    topic: self.units_topic.clone(),
                    detail: last_error,
                });
            };
            outage.enter();
            let units: usize = failed.iter().map(|set| set.records).sum();
            tracing::warn!(message = "Routing units failed; resending.", failed_sets = failed.len(), failed_units = units, error = %last_error, backoff_ms = wait.as_millis() as u64);
            tokio::time::sleep(wait).await;
            pending = failed;
        }
    }

    fn commit_advisory(&self, batch: &Batch) {
        let offsets = || {
            batch.next_offsets().iter().flat_map(|(topic, partitions)| {
                partitions
                    .iter()
                    .map(move |(partition, next)| (topic.as_str(), *partition, *next))
            })
        };
        crate::telemetry::metrics::record_durable_offsets(offsets());
        crate::kafka::commit_advisory(&self.consumer, offsets());
    }
}
