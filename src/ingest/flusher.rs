//! Makes batches durable, one at a time and in order:
//! 1. dead letters to Kafka, acknowledged or given up and counted (at-least-once: a crash
//!    here re-sends them, keyed by their source coordinates so consumers can drop repeats;
//!    see [`super::dead_letter`] for why no letter can stop the line);
//! 2. the outcome rows to ClickHouse in one INSERT — from this moment the batch's offsets
//!    count as processed;
//! 3. an advisory Kafka commit, for lag monitoring only.
//!
//! Transient failures are retried with exponential backoff capped at `retry_backoff_max`;
//! memory stays bounded because the poll loop can hand over at most
//! `batches_in_flight_max` batches and then waits.

use super::batch::{Batch, RowSource};
use super::context::IngestContext;
use super::dead_letter::DeadLetterSender;
use super::stats::Stats;
use crate::domain::Reason;
use crate::store::outcomes::{insert_outcomes, OutcomeRow};
use crate::store::rowbinary::RowBinaryWriter;
use crate::store::{Store, StoreError};
use bytes::Bytes;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::producer::FutureProducer;
use rdkafka::{Offset, TopicPartitionList};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

/// Why the flusher stopped for good.
#[derive(Debug, thiserror::Error)]
pub enum FlushError {
    /// ClickHouse refused the batch for a reason retrying cannot fix.
    #[error("ClickHouse refused a batch and retrying cannot help: {0}")]
    Store(#[from] StoreError),
}

/// Everything the flusher needs.
pub struct Flusher {
    pub store: Store,
    pub producer: FutureProducer,
    pub dlq_topic: String,
    pub consumer: Arc<BaseConsumer<IngestContext>>,
    pub stats: Arc<Stats>,
    pub retry_backoff_max: Duration,
}

impl Flusher {
    /// Makes one batch durable; returns only when it is, or on a permanent error.
    pub async fn flush(&self, mut batch: Batch) -> Result<(), FlushError> {
        crate::crash::reached("before_dead_letters");
        let letters_started = std::time::Instant::now();
        let letters = DeadLetterSender {
            producer: &self.producer,
            topic: &self.dlq_topic,
            retry_backoff_max: self.retry_backoff_max,
        }
        .send_all(batch.dead_letters())
        .await;
        self.stats.dead_letters_sent(&letters);
        tracing::debug!(
            message = "Dead letters done.",
            sent = letters.sent,
            truncated = letters.truncated,
            failed = letters.failed,
            elapsed_ms = letters_started.elapsed().as_millis() as u64
        );
        crate::crash::reached("after_dead_letters");
        let rows = Bytes::from(batch.take_rows());
        let insert_started = std::time::Instant::now();
        let refused = self.insert_isolating_refused_rows(&batch, rows).await?;
        tracing::debug!(
            message = "Batch durable.",
            rows = batch.len(),
            insert_ms = insert_started.elapsed().as_millis() as u64
        );
        crate::crash::reached("after_insert");
        let mut accepted = batch.accepted();
        let mut rejected_by_reason = *batch.rejected_by_reason();
        // A refused row is stored as `storage_refused` instead of what the rules decided.
        for row in &refused {
            match row.rejection {
                None => accepted -= 1,
                Some(reason) => rejected_by_reason[reason as usize] -= 1,
            }
            rejected_by_reason[Reason::StorageRefused as usize] += 1;
        }
        self.stats.batch_durable(accepted, &rejected_by_reason);
        self.commit_advisory(&batch);
        crate::crash::reached("after_commit");
        Ok(())
    }

    /// Inserts the batch's rows. Should ClickHouse refuse them for a reason retrying cannot
    /// fix, the rows are split in halves, again and again, until the refused rows are
    /// alone; each is then replaced by a `storage_refused` rejection carrying the server's
    /// error, so one bad message never stalls its partition or blocks the good ones.
    /// Halves go in order, left first, so each partition's offsets still ascend. Returns
    /// the sources of the replaced rows.
    async fn insert_isolating_refused_rows(
        &self,
        batch: &Batch,
        rows: Bytes,
    ) -> Result<Vec<RowSource>, StoreError> {
        let mut refused = Vec::new();
        // Ranges of rows still to insert, the next one on top.
        let mut pending: Vec<std::ops::Range<usize>> = Vec::with_capacity(64);
        pending.push(0..batch.len());
        while let Some(range) = pending.pop() {
            if range.is_empty() {
                continue;
            }
            let bytes = rows.slice(batch.byte_range(range.clone()));
            let error = match self.insert_with_retry(bytes).await {
                Ok(()) => continue,
                Err(error @ StoreError::Query { .. }) => error,
                Err(other) => return Err(other),
            };
            if range.len() > 1 {
                let middle = range.start + range.len() / 2;
                pending.push(middle..range.end);
                pending.push(range.start..middle);
                continue;
            }
            let (topic, source) = batch.row_source(range.start);
            tracing::error!(message = "ClickHouse refused a message's row; storing it as storage_refused.", topic, partition = source.partition, offset = source.offset, %error);
            let detail = format!("ClickHouse refused the outcome row: {error}");
            let replacement = OutcomeRow {
                topic,
                partition: source.partition as u32,
                offset: source.offset as u64,
                received_at_unix_s: source.received_at_unix_s,
                reason: Reason::StorageRefused.as_str(),
                detail: &detail,
                ..OutcomeRow::default()
            };
            let mut encoded = RowBinaryWriter::default();
            replacement.encode(&mut encoded);
            self.insert_with_retry(Bytes::from(encoded.into_inner()))
                .await?;
            refused.push(source);
        }
        Ok(refused)
    }

    async fn insert_with_retry(&self, rows: Bytes) -> Result<(), StoreError> {
        let mut backoff = Duration::from_millis(100);
        let mut attempt = 1u32;
        loop {
            match insert_outcomes(&self.store, rows.clone()).await {
                Ok(()) => {
                    if attempt > 1 {
                        tracing::info!(
                            message = "ClickHouse insert succeeded after retries.",
                            attempts = attempt
                        );
                    }
                    return Ok(());
                }
                Err(error) if error.is_retryable() => {
                    tracing::warn!(message = "ClickHouse insert failed; retrying.", %error, attempt, backoff_ms = backoff.as_millis() as u64);
                    self.stats.insert_retries.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(self.retry_backoff_max);
                    attempt += 1;
                }
                Err(error) => return Err(error),
            }
        }
    }

    fn commit_advisory(&self, batch: &Batch) {
        let mut list = TopicPartitionList::new();
        for (topic, partitions) in batch.next_offsets() {
            for (partition, next) in partitions {
                let _ = list.add_partition_offset(topic, *partition, Offset::Offset(*next));
            }
        }
        if let Err(error) = self.consumer.commit(&list, CommitMode::Async) {
            // Advisory only: the next assignment seeks from ClickHouse anyway.
            tracing::debug!(message = "Kafka commit failed (advisory).", %error);
        }
    }
}
