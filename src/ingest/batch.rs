//! One batch: the encoded outcome rows, the dead letters, and how far each partition got.
//!
//! A batch is bounded three ways — rows, bytes and age — so memory stays bounded and a
//! quiet feed still lands within `flush_interval_ms`.

pub use super::dead_letter::DeadLetter;
use crate::domain::Reason;
use crate::route::{SetReader, SetWriter, UnitRecord};
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
    /// The routed units, already in units-topic sets: index = owner partition.
    routes: Vec<SetWriter>,
    /// Units in `routes`.
    units: usize,
    /// Encoded bytes in `routes`.
    route_bytes: usize,
}

/// One units-topic message of a batch: a set of unit records bound for one partition.
#[derive(Debug, Clone, Copy)]
pub struct UnitSet<'a> {
    pub partition: i32,
    /// Records in the set.
    pub records: usize,
    /// The encoded set ([`crate::route::encode_set`]'s format).
    pub payload: &'a [u8],
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
            routes: Vec::new(),
            units: 0,
            route_bytes: 0,
        }
    }

    /// Adds the unit record of the message just pushed, for its owner `partition`.
    pub fn push_unit(&mut self, partition: i32, record: &crate::route::UnitRecord<'_>) {
        let index = usize::try_from(partition).expect("owner partitions are not negative");
        if self.routes.len() <= index {
            self.routes.resize_with(index + 1, SetWriter::default);
        }
        let route = &mut self.routes[index];
        let before = route.len_bytes();
        route.push(record);
        self.route_bytes += route.len_bytes() - before;
        self.units += 1;
    }

    /// Number of routed units.
    pub fn units_len(&self) -> usize {
        self.units
    }

    /// Closes the open sets; call once every unit is pushed, before [`Batch::unit_sets`].
    pub fn finish_units(&mut self) {
        self.routes.iter_mut().for_each(SetWriter::finish);
    }

    /// The routed units as units-topic messages: per owner partition, in push order.
    pub fn unit_sets(&self) -> Vec<UnitSet<'_>> {
        let mut sets = Vec::new();
        for (partition, route) in self.routes.iter().enumerate() {
            for (payload, records) in route.sets() {
                sets.push(UnitSet {
                    partition: partition as i32,
                    records,
                    payload,
                });
            }
        }
        sets
    }

    /// The routed units with their owner partition: per partition, in push order (each
    /// key has one owner, so every key's records keep their order).
    pub fn routed_units(&self) -> impl Iterator<Item = (i32, UnitRecord<'_>)> + '_ {
        self.unit_sets().into_iter().flat_map(|set| {
            SetReader::new(set.payload)
                .expect("a batch's own sets read back")
                .map(move |record| {
                    (
                        set.partition,
                        record.expect("a batch's own records read back"),
                    )
                })
        })
    }

    /// Adds one message's outcome row; rows of one partition must arrive in offset order.
    pub fn push(&mut self, row: &OutcomeRow<'_>, rejection: Option<Reason>) {
        if self.first_row_at.is_none() {
            self.first_row_at = Some(Instant::now());
        }
        row.encode(&mut self.rows);
        self.row_count += 1;
        self.row_ends.push(self.rows.len());
        let topic = topic_index(&mut self.topics, row.topic);
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
        self.row_count >= limits.rows_max || self.rows.len() + self.route_bytes >= limits.bytes_max
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

    /// Puts a buffer back where [`Batch::take_rows`] took the rows from (the flusher
    /// returns the reclaimed insert buffer so a recycled batch reuses it).
    pub fn restore_rows(&mut self, buffer: Vec<u8>) {
        self.rows = RowBinaryWriter::from_vec(buffer);
    }

    /// Takes the encoded rows out, leaving the batch's other fields intact.
    pub fn take_rows(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.rows).into_inner()
    }

    /// Byte range of rows `first..end` within the encoded rows.
    pub fn byte_range(&self, rows: std::ops::Range<usize>) -> std::ops::Range<usize> {
        crate::store::sink::byte_range(&self.row_ends, rows)
    }

    /// When the batch's first row was pushed.
    pub fn first_row_at(&self) -> Option<Instant> {
        self.first_row_at
    }

    /// Topic and reason of every rejected row, given the rows ClickHouse refused (stored
    /// as `storage_refused` instead); accepted rows are the ledger stage's to count.
    pub fn rejections<'a>(
        &'a self,
        refused: &'a [usize],
    ) -> impl Iterator<Item = (&'a str, &'static str, Option<Reason>)> + 'a {
        self.row_sources
            .iter()
            .enumerate()
            .filter_map(move |(index, source)| {
                let reason = if refused.contains(&index) {
                    Some(Reason::StorageRefused)
                } else {
                    source.rejection
                };
                reason.map(|r| (self.topics[source.topic].as_str(), "", Some(r)))
            })
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

/// The index of `topic` in a batch's topic names, added if new (a batch holds a handful,
/// so a scan beats a map).
pub fn topic_index(topics: &mut Vec<String>, topic: &str) -> usize {
    match topics.iter().position(|t| t == topic) {
        Some(index) => index,
        None => {
            topics.push(topic.to_string());
            topics.len() - 1
        }
    }
}

impl crate::recycle::Recycle for Batch {
    fn clear(&mut self) {
        // Destructured, so a field added to `Batch` cannot be forgotten here.
        let Batch {
            rows,
            row_count,
            dead_letters,
            next_offsets,
            accepted,
            rejected_by_reason,
            first_row_at,
            row_ends,
            row_sources,
            topics,
            routes,
            units,
            route_bytes,
        } = self;
        rows.clear();
        *row_count = 0;
        dead_letters.clear();
        next_offsets.clear();
        *accepted = 0;
        *rejected_by_reason = [0; Reason::ALL.len()];
        *first_row_at = None;
        row_ends.clear();
        row_sources.clear();
        topics.clear();
        routes.iter_mut().for_each(SetWriter::clear);
        *units = 0;
        *route_bytes = 0;
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
    fn proves_a_recycled_batch_is_empty_and_encodes_as_a_fresh_one() {
        use crate::recycle::Recycle;
        let fill = |batch: &mut Batch| {
            batch.push(&row("a", 0, 7), None);
            batch.push(&row("bb", 1, 9), Some(Reason::Duplicate));
        };
        let mut fresh = Batch::with_capacity(1024);
        fill(&mut fresh);
        let mut recycled = Batch::with_capacity(1024);
        fill(&mut recycled);
        recycled.push(&row("c", 2, 1), Some(Reason::UnknownFirm));
        recycled.clear();
        assert!(recycled.is_empty() && recycled.bytes() == 0 && recycled.units_len() == 0);
        assert!(recycled.next_offsets().is_empty() && recycled.dead_letters().is_empty());
        assert_eq!(recycled.accepted(), 0);
        assert_eq!(recycled.rejected_by_reason(), &[0; Reason::ALL.len()]);
        assert!(!recycled.is_due(&BatchLimits {
            rows_max: 10,
            bytes_max: 1 << 20,
            flush_interval: Duration::ZERO,
        }));
        fill(&mut recycled);
        assert_eq!(recycled.take_rows(), fresh.take_rows());
        assert_eq!(recycled.row_source(1), fresh.row_source(1));
        assert_eq!(recycled.next_offsets(), fresh.next_offsets());
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
