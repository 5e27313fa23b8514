//! The one write path of both stages: a batch of encoded rows into one table, with
//!
//! - **bounded retries**: transient failures are retried with capped exponential backoff
//!   ([`Backoff`]) until `give_up_after` has passed, then reported;
//! - **no row twice**: before retrying an insert that failed ambiguously (a timeout, a
//!   dropped connection: it may have landed, in part), the rows already stored are read
//!   back by their checkpoint coordinates and left out, so a retry never doubles a row —
//!   which matters because the aggregates sum every unit row they see;
//! - **poison isolation**: rows ClickHouse refuses for good are split off, halving, until
//!   each refused row is alone; it is replaced by a `storage_refused` row carrying the
//!   server's error, so one bad message never stalls its partition.
//!
//! Rows go in order (left halves first), so each partition's offsets still ascend.

use super::client::{Store, StoreError};
use super::decisions::stored_offsets;
use super::outcomes::insert_rows;
use bytes::Bytes;
use std::collections::HashMap;
use std::ops::Range;
use std::time::{Duration, Instant};

/// Capped exponential backoff with a deadline: the retry policy of every loop that waits
/// for ClickHouse or Kafka to come back.
#[derive(Debug, Clone)]
pub struct Backoff {
    next: Duration,
    cap: Duration,
    started: Instant,
    give_up_after: Duration,
    /// Attempts failed so far.
    pub failures: u32,
}

/// First wait of a [`Backoff`].
const BACKOFF_FIRST: Duration = Duration::from_millis(100);

impl Backoff {
    /// A backoff doubling from 100 ms up to `cap`, giving up once `give_up_after` passed.
    pub fn new(cap: Duration, give_up_after: Duration) -> Backoff {
        Backoff {
            next: BACKOFF_FIRST,
            cap: cap.max(BACKOFF_FIRST),
            started: Instant::now(),
            give_up_after,
            failures: 0,
        }
    }

    /// The wait before the next attempt, or `None` when it is time to give up.
    pub fn next_wait(&mut self) -> Option<Duration> {
        self.failures += 1;
        if self.started.elapsed() >= self.give_up_after {
            return None;
        }
        let wait = self.next;
        self.next = (self.next * 2).min(self.cap);
        Some(wait)
    }
}

/// Where a row is checkpointed: the partition it belongs to and its ascending position
/// there (the Kafka offset for `outcomes`, a ledger position for `unit_decisions`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RowPosition {
    /// The topic, for tables that hold several (`outcomes`); `None` for one-topic tables.
    pub topic: Option<String>,
    pub partition: u32,
    pub offset: u64,
}

/// Byte range of rows `rows` in a buffer where row `i` ends at `row_ends[i]`.
pub fn byte_range(row_ends: &[usize], rows: Range<usize>) -> Range<usize> {
    let end_of = |row: usize| if row == 0 { 0 } else { row_ends[row - 1] };
    end_of(rows.start)..end_of(rows.end)
}

/// A batch of encoded rows the sink can write.
pub trait RowBatch {
    /// Rows in the batch.
    fn row_count(&self) -> usize;
    /// Byte range of rows `rows` within the encoded rows.
    fn byte_range(&self, rows: Range<usize>) -> Range<usize>;
    /// Where row `index` is checkpointed.
    fn position(&self, index: usize) -> RowPosition;
    /// The encoded `storage_refused` row replacing refused row `index`, whose encoding as
    /// refused is `encoded`.
    fn refused_row(&self, index: usize, detail: &str, encoded: &[u8]) -> Vec<u8>;
}

/// The table a sink writes and how its rows are checkpointed.
#[derive(Debug, Clone, Copy)]
pub struct Table {
    pub name: &'static str,
    pub columns: &'static [(&'static str, &'static str)],
    pub partition_column: &'static str,
    /// SQL of a row's ascending position in its partition ([`RowPosition::offset`]).
    pub position_sql: &'static str,
}

/// What a write came to.
#[derive(Debug, Default)]
pub struct Written {
    /// Rows replaced by `storage_refused`, by index.
    pub refused: Vec<usize>,
    /// Failed attempts that were retried.
    pub retries: u64,
}

/// Writes batches into one table.
pub struct Sink {
    pub store: Store,
    pub table: Table,
    pub retry_backoff_max: Duration,
    pub give_up_after: Duration,
}

impl Sink {
    /// Writes every row of `batch` (encoded in `rows`) exactly once; returns only when all
    /// are stored (refused ones replaced), or with the error that made it give up.
    pub async fn write(&self, batch: &impl RowBatch, rows: Bytes) -> Result<Written, StoreError> {
        let mut written = Written::default();
        let mut pending: Vec<Range<usize>> = Vec::with_capacity(64);
        pending.push(0..batch.row_count());
        while let Some(range) = pending.pop() {
            if range.is_empty() {
                continue;
            }
            let body = rows.slice(batch.byte_range(range.clone()));
            let error = match self
                .insert_once_each(
                    batch,
                    range.clone(),
                    body,
                    |rest| rows_at(batch, &rows, rest),
                    &mut written,
                )
                .await
            {
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
            let position = batch.position(range.start);
            tracing::error!(message = "ClickHouse refused a message's row; storing it as storage_refused.", table = self.table.name, topic = ?position.topic, partition = position.partition, offset = position.offset, %error);
            let detail = format!("ClickHouse refused the outcome row: {error}");
            let encoded = &rows[batch.byte_range(range.clone())];
            let replacement = Bytes::from(batch.refused_row(range.start, &detail, encoded));
            // The replacement has the refused row's position, so the same read-back keeps
            // an ambiguous failure from storing it twice.
            self.insert_once_each(
                batch,
                range.clone(),
                replacement.clone(),
                |_| replacement.clone(),
                &mut written,
            )
            .await?;
            written.refused.push(range.start);
            metrics::counter!(crate::telemetry::metrics::CLICKHOUSE_REFUSALS, "table" => self.table.name)
                .increment(1);
        }
        Ok(written)
    }

    /// Inserts `body`, the encoding of rows `range`, retrying transient failures with
    /// backoff; before each retry the rows already stored are read back by position and
    /// left out (`encode` gives the encoding of the rows still to insert), so an insert
    /// that failed ambiguously never stores a row twice.
    async fn insert_once_each(
        &self,
        batch: &impl RowBatch,
        range: Range<usize>,
        mut body: Bytes,
        encode: impl Fn(&[usize]) -> Bytes,
        written: &mut Written,
    ) -> Result<(), StoreError> {
        use crate::telemetry::metrics as names;
        let mut backoff = Backoff::new(self.retry_backoff_max, self.give_up_after);
        let mut outage = crate::telemetry::health::BackoffGuard::new();
        let mut rows_in_body = range.len();
        loop {
            let attempt_started = Instant::now();
            match insert_rows(
                &self.store,
                self.table.name,
                self.table.columns,
                body.clone(),
            )
            .await
            {
                Ok(()) => {
                    let table = self.table.name;
                    metrics::histogram!(names::CLICKHOUSE_INSERT_DURATION, "table" => table)
                        .record(attempt_started.elapsed().as_secs_f64());
                    metrics::counter!(names::CLICKHOUSE_INSERTS, "table" => table).increment(1);
                    metrics::counter!(names::CLICKHOUSE_ROWS, "table" => table)
                        .increment(rows_in_body as u64);
                    if backoff.failures > 0 {
                        tracing::info!(
                            message = "ClickHouse insert succeeded after retries.",
                            table = self.table.name,
                            attempts = backoff.failures + 1
                        );
                    }
                    return Ok(());
                }
                Err(error) if error.is_retryable() => {
                    let Some(wait) = backoff.next_wait() else {
                        tracing::error!(message = "ClickHouse insert still failing; giving up.", table = self.table.name, %error, attempts = backoff.failures);
                        return Err(error);
                    };
                    tracing::warn!(message = "ClickHouse insert failed; retrying.", table = self.table.name, %error, attempt = backoff.failures, backoff_ms = wait.as_millis() as u64);
                    written.retries += 1;
                    metrics::counter!(names::CLICKHOUSE_RETRIES, "table" => self.table.name)
                        .increment(1);
                    outage.enter();
                    tokio::time::sleep(wait).await;
                    // The failed insert may have landed in part: keep only the rows that
                    // are not stored yet (a prefix per partition landed, if anything).
                    match self.unstored(batch, range.clone()).await {
                        Ok(rest) if rest.is_empty() => return Ok(()),
                        Ok(rest) => {
                            rows_in_body = rest.len();
                            body = encode(&rest);
                        }
                        // Still unreachable: try again after the next wait.
                        Err(error) if error.is_retryable() => continue,
                        Err(error) => return Err(error),
                    }
                }
                Err(error) => return Err(error),
            }
        }
    }

    /// The rows of `range` not stored yet, in order.
    async fn unstored(
        &self,
        batch: &impl RowBatch,
        range: Range<usize>,
    ) -> Result<Vec<usize>, StoreError> {
        let mut first: HashMap<(Option<String>, u32), u64> = HashMap::new();
        for index in range.clone() {
            let p = batch.position(index);
            first
                .entry((p.topic, p.partition))
                .and_modify(|o| *o = (*o).min(p.offset))
                .or_insert(p.offset);
        }
        let mut stored: HashMap<(Option<String>, u32), u64> = HashMap::new();
        for ((topic, partition), from) in first {
            let max = stored_offsets(
                &self.store,
                self.table.name,
                self.table.partition_column,
                self.table.position_sql,
                topic.as_deref(),
                partition,
                from,
            )
            .await?;
            if let Some(max) = max {
                stored.insert((topic, partition), max);
            }
        }
        Ok(range
            .filter(|&index| {
                let p = batch.position(index);
                stored
                    .get(&(p.topic, p.partition))
                    .is_none_or(|max| p.offset > *max)
            })
            .collect())
    }
}

/// The encoded rows `indices` of a batch whose rows are encoded in `rows`.
fn rows_at(batch: &impl RowBatch, rows: &Bytes, indices: &[usize]) -> Bytes {
    let mut body = Vec::new();
    for &index in indices {
        body.extend_from_slice(&rows[batch.byte_range(index..index + 1)]);
    }
    Bytes::from(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_its_cap_and_gives_up_at_its_deadline() {
        let mut backoff = Backoff::new(Duration::from_millis(350), Duration::from_secs(3600));
        let waits: Vec<u64> = (0..4)
            .map(|_| backoff.next_wait().unwrap().as_millis() as u64)
            .collect();
        assert_eq!(waits, vec![100, 200, 350, 350]);
        let mut done = Backoff::new(Duration::from_secs(1), Duration::ZERO);
        assert_eq!(done.next_wait(), None);
    }
}
