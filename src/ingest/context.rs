//! The consumer context. On every assignment it asks ClickHouse where each partition
//! resumes and seeks there, so the broker's committed offsets never decide what is
//! processed: a new database re-reads a topic from its start, and a crash between the
//! ClickHouse insert and the Kafka commit re-reads nothing.

use crate::store::StoreError;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Looks up where a partition resumes: `Some(offset)` after the last stored one, `None`
/// when nothing from it is stored.
pub type ResumeLookup = Box<dyn Fn(&str, i32) -> Result<Option<u64>, StoreError> + Send + Sync>;

/// Assignment changes since the poll loop last looked.
#[derive(Debug, Default)]
pub struct AssignmentChanges {
    /// Newly assigned `(topic, partition, next offset to process)`; `None` = from the start.
    pub assigned: Vec<(String, i32, Option<i64>)>,
    /// Revoked `(topic, partition)`.
    pub revoked: Vec<(String, i32)>,
}

/// Consumer context of the ingest consumer.
pub struct IngestContext {
    resume_lookup: ResumeLookup,
    shutdown: Arc<AtomicBool>,
    retry_backoff_max: Duration,
    changes: Mutex<AssignmentChanges>,
    changed: AtomicBool,
    /// Called while partitions are revoked, before the group moves them: waits until every
    /// batch already handed to the flusher is durable, so the next owner resumes after it.
    drain: Option<Box<dyn Fn() + Send + Sync>>,
}

impl IngestContext {
    /// A context resolving resume points with `resume_lookup`; lookups are retried with
    /// backoff (capped at `retry_backoff_max`) until they succeed or `shutdown` is set.
    pub fn new(
        resume_lookup: ResumeLookup,
        shutdown: Arc<AtomicBool>,
        retry_backoff_max: Duration,
    ) -> IngestContext {
        IngestContext {
            resume_lookup,
            shutdown,
            retry_backoff_max,
            changes: Mutex::new(AssignmentChanges::default()),
            changed: AtomicBool::new(false),
            drain: None,
        }
    }

    /// Adds the hook that drains in-flight batches on revocation.
    pub fn with_drain(mut self, drain: Box<dyn Fn() + Send + Sync>) -> IngestContext {
        self.drain = Some(drain);
        self
    }

    /// Takes the changes recorded since the last call, if any (cheap when there are none).
    pub fn take_changes(&self) -> Option<AssignmentChanges> {
        if !self.changed.swap(false, Ordering::AcqRel) {
            return None;
        }
        Some(std::mem::take(
            &mut *self.changes.lock().expect("assignment log poisoned"),
        ))
    }

    fn resume_with_retry(&self, topic: &str, partition: i32) -> Option<Option<u64>> {
        let mut backoff = Duration::from_millis(100);
        loop {
            match (self.resume_lookup)(topic, partition) {
                Ok(resume) => return Some(resume),
                Err(error) if error.is_retryable() && !self.shutdown.load(Ordering::Relaxed) => {
                    tracing::warn!(message = "Cannot read resume offset; retrying.", %error, topic, partition, backoff_ms = backoff.as_millis() as u64);
                    std::thread::sleep(backoff);
                    backoff = (backoff * 2).min(self.retry_backoff_max);
                }
                Err(error) => {
                    tracing::error!(message = "Cannot read resume offset; partition left unassigned.", %error, topic, partition);
                    return None;
                }
            }
        }
    }

    fn assign(&self, consumer: &BaseConsumer<Self>, tpl: &mut TopicPartitionList) {
        if self.shutdown.load(Ordering::Relaxed) {
            // Shutting down (this may run while the consumer closes, on an async thread
            // where no lookup may block): take nothing.
            let _ = consumer.unassign();
            return;
        }
        let partitions: Vec<(String, i32)> = tpl
            .elements()
            .iter()
            .map(|e| (e.topic().to_string(), e.partition()))
            .collect();
        let mut assigned = Vec::with_capacity(partitions.len());
        for (topic, partition) in partitions {
            let Some(resume) = self.resume_with_retry(&topic, partition) else {
                // Shutting down or ClickHouse refusing: take nothing rather than guess.
                let _ = consumer.unassign();
                return;
            };
            let offset = resume.map_or(Offset::Beginning, |o| Offset::Offset(o as i64));
            if let Err(error) = tpl.set_partition_offset(&topic, partition, offset) {
                tracing::error!(message = "Cannot set partition offset.", %error, topic, partition);
            }
            tracing::info!(message = "Partition assigned.", topic, partition, resume_offset = ?resume);
            assigned.push((topic, partition, resume.map(|o| o as i64)));
        }
        crate::crash::reached("during_assign");
        if let Err(error) = consumer.assign(tpl) {
            tracing::error!(message = "Assign failed.", %error);
            return;
        }
        self.changes
            .lock()
            .expect("assignment log poisoned")
            .assigned
            .extend(assigned);
        self.changed.store(true, Ordering::Release);
    }

    fn revoke(&self, consumer: &BaseConsumer<Self>, tpl: &TopicPartitionList) {
        let revoked: Vec<(String, i32)> = tpl
            .elements()
            .iter()
            .map(|e| (e.topic().to_string(), e.partition()))
            .collect();
        tracing::info!(message = "Partitions revoked.", count = revoked.len());
        self.changes
            .lock()
            .expect("assignment log poisoned")
            .revoked
            .extend(revoked);
        self.changed.store(true, Ordering::Release);
        crate::crash::reached("during_revoke");
        if let Some(drain) = &self.drain {
            drain();
        }
        if let Err(error) = consumer.unassign() {
            tracing::warn!(message = "Unassign failed.", %error);
        }
    }
}

impl ClientContext for IngestContext {}

impl ConsumerContext for IngestContext {
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    ) {
        match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => self.assign(consumer, tpl),
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => self.revoke(consumer, tpl),
            other => {
                let code: RDKafkaErrorCode = other.into();
                tracing::error!(message = "Rebalance error; unassigning.", error = %code);
                self.revoke(consumer, tpl);
            }
        }
    }
}
