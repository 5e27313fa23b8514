//! One batch: the encoded outcome rows, the dead letters, and how far each partition got.
//!
//! A batch is bounded three ways — rows, bytes and age — so memory stays bounded and a
//! quiet feed still lands within `flush_interval_ms`.

pub use super::dead_letter::DeadLetter;
use crate::domain::Reason;
use crate::route::{encode_set, SET_BYTES_MAX, SET_RECORDS_MAX};
use crate::store::outcomes::OutcomeRow;
use crate::store::rowbinary::RowBinaryWriter;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// When a batch is shipped.
#[derive(Debug, Clone, Copy)]
pub struct BatchLimits {
    /// Ship once this many rows are buffered. Must stay below ClickHouse's
    /// `max_insert_block_size` (1,048,576) so one batch is one block.
    pub rows_max: usize,
    /// Ship once the encoded rows take this many bytes.
    pub bytes_max: usize,
    /// Ship a non-empty batch this long after its first row.
    pub flush_interval: Duration,
}

/// Rows and dead letters of one batch, plus where each partition resumes after it.
#[derive(Debug)]
pub struct Batch {
    rows: RowBinaryWriter,
    row_count: usize,
    dead_letters: Vec<DeadLetter>,
    /// topic → partition → offset of the next message after this batch.
    next_offsets: BTreeMap<String, BTreeMap<i32, i64>>,
    accepted: u64,
    rejected_by_reason: [u64; Reason::ALL.len()],
    first_row_at: Option<Instant>,
    /// Byte offset just past each row in `rows`: lets the flusher split an insert that
    /// ClickHouse refuses down to the row it refuses.
    row_ends: Vec<usize>,
    /// Where each row came from, to replace a refused row with a rejection.
    row_sources: Vec<RowSource>,
    /// Topic names `row_sources` point into (a batch holds a handful).
    topics: Vec<String>,
    /// Encoded unit records for the units topic, back to back; see `units`.
    unit_bytes: Vec<u8>,
    /// The routed units: owner partition, key hash, end of the record in `unit_bytes`.
    units: Vec<(i32, u128, usize)>,
}

/// One routed unit of a batch: its owner partition, key hash and encoded record.
#[derive(Debug, Clone, Copy)]
pub struct RoutedUnit<'a> {
    pub partition: i32,
    pub key: u128,
    pub record: &'a [u8],
}

/// One units-topic message: a set of unit records bound for one owner partition.
#[derive(Debug, Clone)]
pub struct UnitSet {
    pub partition: i32,
    /// Indices of the set's units in the batch, in set order.
    pub units: Vec<usize>,
    /// The encoded set ([`encode_set`]).
    pub payload: Vec<u8>,
}

/// The source of one row of a batch and the outcome it records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RowSource {
    /// Index into the batch's topic names.
    pub topic: usize,
    pub partition: i32,
    pub offset: i64,
    pub received_at_unix_s: u32,
    /// `None` for an accepted unit, else the reason it was rejected with.
    pub rejection: Option<Reason>,
}

impl Batch {
    /// An empty batch whose buffer can take `bytes` without growing.
    pub fn with_capacity(bytes: usize) -> Batch {
        Batch {
            rows: RowBinaryWriter::with_capacity(bytes),
            row_count: 0,
            dead_letters: Vec::new(),
            next_offsets: BTreeMap::new(),
            accepted: 0,
            rejected_by_reason: [0; Reason::ALL.len()],
            first_row_at: None,
            row_ends: Vec::new(),
            row_sources: Vec::new(),
            topics: Vec::new(),
            unit_bytes: Vec::new(),
            units: Vec::new(),
        }
    }

    /// Adds the unit record of the message just pushed, for its owner `partition`.
    pub fn push_unit(&mut self, partition: i32, key: u128, record: &crate::route::UnitRecord<'_>) {
        record.encode(&mut self.unit_bytes);
        self.units.push((partition, key, self.unit_bytes.len()));
    }

    /// The routed units, in the order they were pushed.
    pub fn units(&self) -> impl Iterator<Item = RoutedUnit<'_>> + '_ {
        let mut start = 0;
        self.units.iter().map(move |&(partition, key, end)| {
            let record = &self.unit_bytes[start..end];
            start = end;
            RoutedUnit {
                partition,
                key,
                record,
            }
        })
    }

    /// Number of routed units.
    pub fn units_len(&self) -> usize {
        self.units.len()
    }

    /// The units at `indices` (ascending) as units-topic messages: per owner partition, in
    /// push order, sets of at most [`SET_RECORDS_MAX`] records and about [`SET_BYTES_MAX`].
    pub fn unit_sets(&self, indices: &[usize]) -> Vec<UnitSet> {
        let mut by_partition: BTreeMap<i32, Vec<usize>> = BTreeMap::new();
        for &index in indices {
            by_partition
                .entry(self.units[index].0)
                .or_default()
                .push(index);
        }
        let record = |index: usize| {
            let start = if index == 0 {
                0
            } else {
                self.units[index - 1].2
            };
            &self.unit_bytes[start..self.units[index].2]
        };
        let mut sets = Vec::new();
        for (partition, members) in by_partition {
            let mut rest = members.as_slice();
            while !rest.is_empty() {
                let mut take = 0;
                let mut bytes = 0;
                while take < rest.len()
                    && take < SET_RECORDS_MAX
                    && (take == 0 || bytes + record(rest[take]).len() <= SET_BYTES_MAX)
                {
                    bytes += record(rest[take]).len() + 4;
                    take += 1;
                }
                let (members, tail) = rest.split_at(take);
                let mut payload = Vec::with_capacity(bytes + 5);
                encode_set(members.iter().map(|&i| record(i)), &mut payload);
                sets.push(UnitSet {
                    partition,
                    units: members.to_vec(),
                    payload,
                });
                rest = tail;
            }
        }
        sets
    }

    /// Adds one message's outcome row; rows of one partition must arrive in offset order.
    pub fn push(&mut self, row: &OutcomeRow<'_>, rejection: Option<Reason>) {
        if self.first_row_at.is_none() {
            self.first_row_at = Some(Instant::now());
        }
        row.encode(&mut self.rows);
        self.row_count += 1;
        self.row_ends.push(self.rows.len());
        let topic = match self.topics.iter().position(|t| t == row.topic) {
            Some(index) => index,
            None => {
                self.topics.push(row.topic.to_string());
                self.topics.len() - 1
            }
        };
        self.row_sources.push(RowSource {
            topic,
            partition: row.partition as i32,
            offset: row.offset as i64,
            received_at_unix_s: row.received_at_unix_s,
            rejection,
        });
        match rejection {
            None => self.accepted += 1,
            Some(reason) => self.rejected_by_reason[reason as usize] += 1,
        }
        let next = row.offset as i64 + 1;
        // Look up by &str first so only a topic's first row in a batch allocates its name.
        let partitions = match self.next_offsets.get_mut(row.topic) {
            Some(partitions) => partitions,
            None => self.next_offsets.entry(row.topic.to_string()).or_default(),
        };
        let slot = partitions.entry(row.partition as i32).or_insert(next);
        *slot = (*slot).max(next);
    }

    /// Queues a dead letter for the message just pushed.
    pub fn push_dead_letter(&mut self, dead_letter: DeadLetter) {
        self.dead_letters.push(dead_letter);
    }

    /// Returns true if and only if a limit of rows or bytes is reached.
    pub fn is_full(&self, limits: &BatchLimits) -> bool {
        self.row_count >= limits.rows_max
            || self.rows.len() + self.unit_bytes.len() >= limits.bytes_max
    }

    /// Returns true if and only if the batch holds rows older than `flush_interval`.
    pub fn is_due(&self, limits: &BatchLimits) -> bool {
        self.first_row_at
            .is_some_and(|t| t.elapsed() >= limits.flush_interval)
    }

    /// Number of rows (= consumed messages) in the batch.
    pub fn len(&self) -> usize {
        self.row_count
    }

    /// Returns true if and only if the batch has no rows.
    pub fn is_empty(&self) -> bool {
        self.row_count == 0
    }

    /// Encoded size of the rows, bytes.
    pub fn bytes(&self) -> usize {
        self.rows.len()
    }

    /// Accepted units in the batch.
    pub fn accepted(&self) -> u64 {
        self.accepted
    }

    /// Rejections per reason, indexed like [`Reason::ALL`].
    pub fn rejected_by_reason(&self) -> &[u64; Reason::ALL.len()] {
        &self.rejected_by_reason
    }

    /// The dead letters.
    pub fn dead_letters(&self) -> &[DeadLetter] {
        &self.dead_letters
    }

    /// Where each partition resumes after this batch.
    pub fn next_offsets(&self) -> &BTreeMap<String, BTreeMap<i32, i64>> {
        &self.next_offsets
    }

    /// Takes the encoded rows out, leaving the batch's other fields intact.
    pub fn take_rows(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.rows).into_inner()
    }

    /// Byte range of rows `first..end` within the encoded rows.
    pub fn byte_range(&self, rows: std::ops::Range<usize>) -> std::ops::Range<usize> {
        crate::store::sink::byte_range(&self.row_ends, rows)
    }

    /// Source and outcome of row `index`, with its topic name.
    pub fn row_source(&self, index: usize) -> (&str, RowSource) {
        let source = self.row_sources[index];
        (&self.topics[source.topic], source)
    }

    /// Test hook (fault injection): makes the last row one ClickHouse refuses, by appending
    /// a string length no server accepts. Only called when `SUBSIDY_FAULT_POISON_MARKER`
    /// is set and the message contains the marker.
    pub fn poison_last_row(&mut self) {
        // A LEB128 length of 2^62: "Too large string size" on every server version.
        let mut garbage = RowBinaryWriter::default();
        garbage.put_leb128_raw(1u64 << 62);
        let garbage = garbage.into_inner();
        let mut rows = std::mem::take(&mut self.rows).into_inner();
        rows.extend_from_slice(&garbage);
        self.rows = RowBinaryWriter::from_vec(rows);
        if let Some(end) = self.row_ends.last_mut() {
            *end = self.rows.len();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(topic: &str, partition: u32, offset: u64) -> OutcomeRow<'_> {
        OutcomeRow {
            topic,
            partition,
            offset,
            ..OutcomeRow::default()
        }
    }

    #[test]
    fn byte_ranges_cut_the_buffer_at_row_boundaries() {
        let mut batch = Batch::with_capacity(1024);
        batch.push(&row("a", 0, 7), None);
        batch.push(&row("bb", 1, 9), Some(Reason::Duplicate));
        batch.push(&row("a", 0, 8), None);
        let all = batch.byte_range(0..3);
        assert_eq!(all, 0..batch.bytes());
        let first = batch.byte_range(0..1);
        let rest = batch.byte_range(1..3);
        assert_eq!(first.end, rest.start);
        assert_eq!(batch.byte_range(0..0), 0..0);
        let (topic, source) = batch.row_source(1);
        assert_eq!((topic, source.partition, source.offset), ("bb", 1, 9));
        assert_eq!(source.rejection, Some(Reason::Duplicate));
        assert_eq!(batch.next_offsets()["a"][&0], 9);
    }

    #[test]
    fn a_poisoned_row_grows_only_itself() {
        let mut batch = Batch::with_capacity(1024);
        batch.push(&row("a", 0, 1), None);
        let before = batch.bytes();
        batch.poison_last_row();
        assert!(batch.bytes() > before);
        assert_eq!(batch.byte_range(0..1), 0..batch.bytes());
    }
}
