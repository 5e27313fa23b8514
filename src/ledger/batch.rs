//! One ledger batch: the encoded decision rows, their dead letters, the units they make new
//! (to commit to the state once durable), and where each units-topic partition stands.

use super::state::{Mark, OtherSource, PackedSource, PendingUnit};
use crate::domain::Reason;
use crate::ingest::dead_letter::DeadLetter;
use crate::store::decisions::DecisionRow;
use crate::store::rowbinary::RowBinaryWriter;
use crate::store::sink::{RowBatch, RowPosition};
use std::collections::BTreeMap;
use std::time::Instant;

/// One row's identity: its units-topic coordinates and what it decided.
#[derive(Debug, Clone)]
struct RowMeta {
    ledger_partition: u32,
    ledger_offset: u64,
    ledger_index: u32,
    source: PackedSource,
    /// Index into `units` if the row is a new unit.
    unit: Option<usize>,
    rejection: Option<Reason>,
    /// Index of the source topic's name in the batch's `topics`, and when the admit stage
    /// consumed the source: what a `storage_refused` replacement needs if its row is
    /// unreadable (see [`RowBatch::refused_row`]).
    topic: usize,
    received_at_unix_s: u32,
    decided_at_unix_s: u32,
    /// The record's program, for the accepted metric.
    program: Option<crate::domain::Program>,
}

/// Decision rows of one batch.
#[derive(Debug, Default)]
pub struct DecisionBatch {
    rows: RowBinaryWriter,
    row_ends: Vec<usize>,
    meta: Vec<RowMeta>,
    /// Source topic names the rows point into (a batch holds a handful).
    topics: Vec<String>,
    units: Vec<PendingUnit>,
    dead_letters: Vec<DeadLetter>,
    first_row_at: Option<Instant>,
    /// partition → (offset, index) of its last row.
    last_positions: BTreeMap<u32, (u64, u32)>,
    /// partition → next offset after this batch (for the advisory commit).
    next_offsets: BTreeMap<i32, i64>,
}

impl DecisionBatch {
    /// Adds one decision row (rows of a partition in position order); `unit` for a new unit.
    pub fn push(
        &mut self,
        row: &DecisionRow<'_>,
        source: PackedSource,
        unit: Option<PendingUnit>,
        rejection: Option<Reason>,
    ) {
        let position = (row.ledger_offset, row.ledger_index);
        if let Some(previous) = self.last_positions.insert(row.ledger_partition, position) {
            assert!(
                previous < position,
                "positions ascend within a partition of a batch"
            );
        }
        self.first_row_at.get_or_insert_with(Instant::now);
        row.encode(&mut self.rows);
        self.row_ends.push(self.rows.len());
        let unit = unit.map(|u| {
            self.units.push(u);
            self.units.len() - 1
        });
        let topic = crate::ingest::batch::topic_index(&mut self.topics, row.record.source_topic);
        self.meta.push(RowMeta {
            ledger_partition: row.ledger_partition,
            ledger_offset: row.ledger_offset,
            ledger_index: row.ledger_index,
            source,
            unit,
            rejection,
            topic,
            received_at_unix_s: row.record.received_at_unix_s,
            decided_at_unix_s: row.decided_at_unix_s,
            program: row.record.program,
        });
        self.note_offset(row.ledger_partition as i32, row.ledger_offset as i64);
    }

    /// Notes a record that needed no row (already decided), for the advisory commit.
    pub fn note_offset(&mut self, partition: i32, offset: i64) {
        self.first_row_at.get_or_insert_with(Instant::now);
        let next = self.next_offsets.entry(partition).or_insert(offset + 1);
        *next = (*next).max(offset + 1);
    }

    /// Queues a dead letter for the row just pushed.
    pub fn push_dead_letter(&mut self, letter: DeadLetter) {
        self.dead_letters.push(letter);
    }

    /// Test hook (fault injection): makes the last row one ClickHouse refuses: its first
    /// string column (`topic`, after the three integer columns) gets a LEB128 length of 2^62,
    /// "Too large string size" on every server version.
    pub fn poison_last_row(&mut self) {
        let start = if self.row_ends.len() >= 2 {
            self.row_ends[self.row_ends.len() - 2]
        } else {
            0
        };
        let mut rows = std::mem::take(&mut self.rows).into_inner();
        rows.truncate(start + 4 + 8 + 4);
        let mut garbage = RowBinaryWriter::default();
        garbage.put_leb128_raw(1u64 << 62);
        rows.extend_from_slice(&garbage.into_inner());
        self.rows = RowBinaryWriter::from_vec(rows);
        if let Some(end) = self.row_ends.last_mut() {
            *end = self.rows.len();
        }
    }

    /// Rows in the batch.
    pub fn len(&self) -> usize {
        self.meta.len()
    }

    /// Returns true if and only if nothing was noted (no row, no skipped record).
    pub fn is_empty(&self) -> bool {
        self.next_offsets.is_empty()
    }

    /// Encoded size of the rows, bytes.
    pub fn bytes(&self) -> usize {
        self.rows.len()
    }

    /// When the first record of the batch was taken.
    pub fn first_row_at(&self) -> Option<Instant> {
        self.first_row_at
    }

    /// Puts a buffer back where [`DecisionBatch::take_rows`] took the rows from.
    pub fn restore_rows(&mut self, buffer: Vec<u8>) {
        self.rows = RowBinaryWriter::from_vec(buffer);
    }

    /// Takes the encoded rows out.
    pub fn take_rows(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.rows).into_inner()
    }

    /// The dead letters.
    pub fn dead_letters(&self) -> &[DeadLetter] {
        &self.dead_letters
    }

    /// Next offset per partition after this batch.
    pub fn next_offsets(&self) -> &BTreeMap<i32, i64> {
        &self.next_offsets
    }

    /// Units paid (given the refused rows' indices) and rejections per reason.
    pub fn tally(&self, refused: &[usize]) -> (u64, [u64; Reason::ALL.len()]) {
        let mut units = 0;
        let mut rejected = [0u64; Reason::ALL.len()];
        for (index, meta) in self.meta.iter().enumerate() {
            if refused.contains(&index) {
                rejected[Reason::StorageRefused as usize] += 1;
            } else if let Some(reason) = meta.rejection {
                rejected[reason as usize] += 1;
            } else {
                units += 1;
            }
        }
        (units, rejected)
    }

    /// Source topic, program and rejection (if any) of every row, given the refused rows'
    /// indices (stored as `storage_refused`): what the metrics count.
    pub fn outcomes<'a>(
        &'a self,
        refused: &'a [usize],
    ) -> impl Iterator<Item = (&'a str, &'static str, Option<Reason>)> + 'a {
        self.meta.iter().enumerate().map(move |(index, meta)| {
            let rejection = if refused.contains(&index) {
                Some(Reason::StorageRefused)
            } else {
                meta.rejection
            };
            let program = meta.program.map_or("unknown", |p| p.as_str());
            (self.topics[meta.topic].as_str(), program, rejection)
        })
    }

    /// What to commit to the state once the rows are durable.
    pub fn commit_set(&self, refused: &[usize]) -> CommitSet {
        let mut set = CommitSet::default();
        let mut marks: BTreeMap<i32, Mark> = BTreeMap::new();
        for (index, meta) in self.meta.iter().enumerate() {
            let is_refused = refused.contains(&index);
            match meta.unit {
                Some(unit) if is_refused => set.forgotten.push(self.units[unit]),
                Some(unit) => set.paid.push(self.units[unit]),
                None => {}
            }
            if is_refused || meta.unit.is_none() {
                set.others.push(OtherSource {
                    partition: meta.ledger_partition as i32,
                    source: meta.source,
                    refused: is_refused,
                });
            }
            marks.insert(
                meta.ledger_partition as i32,
                Mark {
                    next_offset: meta.ledger_offset + 1,
                    last_source: meta.source,
                },
            );
        }
        set.marks = marks.into_iter().collect();
        set
    }
}

/// What a durable batch commits to the ledger state.
#[derive(Debug, Default)]
pub struct CommitSet {
    /// New units, to store.
    pub paid: Vec<PendingUnit>,
    /// New units whose rows ClickHouse refused: they paid nothing.
    pub forgotten: Vec<PendingUnit>,
    /// Sources decided as something other than a unit (duplicates, refused rows).
    pub others: Vec<OtherSource>,
    /// Per partition with rows, the mark after its last row.
    pub marks: Vec<(i32, Mark)>,
}

impl crate::recycle::Recycle for DecisionBatch {
    fn clear(&mut self) {
        // Destructured, so a field added to `DecisionBatch` cannot be forgotten here.
        let DecisionBatch {
            rows,
            row_ends,
            meta,
            topics,
            units,
            dead_letters,
            first_row_at,
            last_positions,
            next_offsets,
        } = self;
        rows.clear();
        row_ends.clear();
        meta.clear();
        topics.clear();
        units.clear();
        dead_letters.clear();
        *first_row_at = None;
        last_positions.clear();
        next_offsets.clear();
    }
}

impl RowBatch for DecisionBatch {
    fn row_count(&self) -> usize {
        self.meta.len()
    }

    fn byte_range(&self, rows: std::ops::Range<usize>) -> std::ops::Range<usize> {
        crate::store::sink::byte_range(&self.row_ends, rows)
    }

    fn position(&self, index: usize) -> RowPosition {
        let meta = &self.meta[index];
        RowPosition {
            topic: None,
            partition: meta.ledger_partition,
            offset: crate::route::ledger_position(meta.ledger_offset, meta.ledger_index),
        }
    }

    fn refused_row(&self, index: usize, detail: &str, encoded: &[u8]) -> Vec<u8> {
        let reason = Reason::StorageRefused.as_str();
        if let Some(row) = crate::store::decisions::rejected_as(encoded, reason, detail) {
            return row;
        }
        // The row does not even read back (the fault-injection hook cuts it): say what
        // the batch knows of its source, which is what conservation counts.
        let meta = &self.meta[index];
        let mut encoded = RowBinaryWriter::default();
        DecisionRow {
            ledger_partition: meta.ledger_partition,
            ledger_offset: meta.ledger_offset,
            ledger_index: meta.ledger_index,
            record: crate::route::UnitRecord {
                source_topic: &self.topics[meta.topic],
                source_partition: meta.source.partition,
                source_offset: meta.source.offset,
                received_at_unix_s: meta.received_at_unix_s,
                ..Default::default()
            },
            decided_at_unix_s: meta.decided_at_unix_s,
            reason,
            detail,
            voided: false,
            voids_position: 0,
        }
        .encode(&mut encoded);
        encoded.into_inner()
    }
}
