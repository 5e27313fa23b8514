//! The index of paid unit keys: the first valid message for a key creates the unit, a
//! later one is a `duplicate`, and the same Kafka message seen again is recognised as
//! already processed (SPEC §2).
//!
//! Keys are stored as 128-bit xxh3 hashes of `program \x1f unit_key`: 32 bytes an entry with
//! the source, and a collision chance around 10⁻²¹ even at a billion units. The index is
//! rebuilt from ClickHouse at start-up, so it always matches what is durable.

use crate::domain::Program;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// Where a message came from: topic, partition, offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct SourceRef<'a> {
    pub topic: &'a str,
    pub partition: u32,
    pub offset: u64,
}

/// A source with its topic interned as a small id, as stored in the index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct PackedSource {
    topic_id: u32,
    partition: u32,
    offset: u64,
}

/// What the index says about a unit key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seen {
    /// Not paid before: this message creates the unit (and the index now records it).
    New,
    /// Paid by this very message (same topic, partition, offset): a redelivery, already
    /// processed; neither a new unit nor a duplicate.
    SameMessage,
    /// Paid by an earlier message at the given source (`topic/partition/offset`).
    DuplicateOf(String),
}

/// The key already is a uniform hash, so hashing it again would only cost time.
#[derive(Default)]
struct PassThroughHasher(u64);

impl Hasher for PassThroughHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.0 ^= u64::from_le_bytes(word);
        }
    }
    fn write_u128(&mut self, value: u128) {
        self.0 = (value as u64) ^ ((value >> 64) as u64);
    }
}

/// Paid unit keys and the message that paid each.
#[derive(Default)]
pub struct UnitIndex {
    units: HashMap<u128, PackedSource, BuildHasherDefault<PassThroughHasher>>,
    topics: Vec<String>,
}

impl UnitIndex {
    /// An empty index.
    pub fn new() -> UnitIndex {
        UnitIndex::default()
    }

    /// Number of paid units.
    pub fn len(&self) -> usize {
        self.units.len()
    }

    /// Returns true if and only if no unit is recorded.
    pub fn is_empty(&self) -> bool {
        self.units.is_empty()
    }

    /// The 128-bit hash a unit key is indexed under.
    pub fn key_hash(program: Program, unit_key: &str) -> u128 {
        crate::route::key_hash(program, unit_key)
    }

    /// Decides whether `source` pays the unit, recording it if it does.
    pub fn check_and_record(
        &mut self,
        program: Program,
        unit_key: &str,
        source: SourceRef<'_>,
    ) -> Seen {
        let key = UnitIndex::key_hash(program, unit_key);
        let packed = self.pack(source);
        match self.units.get(&key) {
            None => {
                self.units.insert(key, packed);
                Seen::New
            }
            Some(existing) if *existing == packed => Seen::SameMessage,
            Some(existing) => Seen::DuplicateOf(format!(
                "{}/{}/{}",
                self.topics[existing.topic_id as usize], existing.partition, existing.offset
            )),
        }
    }

    /// Records a unit read back from storage. Should storage hold two sources for one key
    /// (instances racing), the smallest source wins, as in the `ledger` view.
    pub fn record_stored(&mut self, program: Program, unit_key: &str, source: SourceRef<'_>) {
        let key = UnitIndex::key_hash(program, unit_key);
        let packed = self.pack(source);
        let topics = &self.topics;
        self.units
            .entry(key)
            .and_modify(|existing| {
                let current = SourceRef {
                    topic: &topics[existing.topic_id as usize],
                    partition: existing.partition,
                    offset: existing.offset,
                };
                if source < current {
                    *existing = packed;
                }
            })
            .or_insert(packed);
    }

    fn pack(&mut self, source: SourceRef<'_>) -> PackedSource {
        let topic_id = match self.topics.iter().position(|t| t == source.topic) {
            Some(id) => id,
            None => {
                self.topics.push(source.topic.to_string());
                self.topics.len() - 1
            }
        };
        PackedSource {
            topic_id: topic_id as u32,
            partition: source.partition,
            offset: source.offset,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn src(topic: &str, partition: u32, offset: u64) -> SourceRef<'_> {
        SourceRef {
            topic,
            partition,
            offset,
        }
    }

    #[test]
    fn first_message_pays_later_ones_are_duplicates() {
        let mut index = UnitIndex::new();
        let p = Program::ImportParcel;
        assert_eq!(index.check_and_record(p, "W1", src("a", 0, 5)), Seen::New);
        assert_eq!(
            index.check_and_record(p, "W1", src("b", 3, 1)),
            Seen::DuplicateOf("a/0/5".into())
        );
        assert_eq!(index.len(), 1);
    }

    #[test]
    fn the_same_message_again_is_already_processed_not_a_duplicate() {
        let mut index = UnitIndex::new();
        let p = Program::RuralDelivery;
        assert_eq!(index.check_and_record(p, "W1", src("a", 0, 5)), Seen::New);
        assert_eq!(
            index.check_and_record(p, "W1", src("a", 0, 5)),
            Seen::SameMessage
        );
    }

    #[test]
    fn keys_are_per_program() {
        // An import waybill and a rural waybill with the same number are different units.
        let mut index = UnitIndex::new();
        assert_eq!(
            index.check_and_record(Program::ImportParcel, "W1", src("a", 0, 1)),
            Seen::New
        );
        assert_eq!(
            index.check_and_record(Program::RuralDelivery, "W1", src("a", 0, 2)),
            Seen::New
        );
    }

    #[test]
    fn stored_units_keep_the_smallest_source() {
        let mut index = UnitIndex::new();
        let p = Program::TakeoutOrder;
        index.record_stored(p, "mt/1", src("t", 2, 9));
        index.record_stored(p, "mt/1", src("t", 1, 50));
        assert_eq!(
            index.check_and_record(p, "mt/1", src("t", 2, 9)),
            Seen::DuplicateOf("t/1/50".into())
        );
    }
}
