//! Routing: every valid unit goes to the one owner of its unit key.
//!
//! The admit stage (decode and rules, SPEC §5 steps 1–6) sends each valid unit as a
//! [`UnitRecord`] to the internal units topic, to the partition [`owner_partition`] picks
//! from the unit key alone, whatever topic, partition or key the producer used. The ledger
//! stage owns those partitions, so each unit key is decided (new or `duplicate`, step 7) by
//! exactly one owner — the shape of Kafka Streams' repartition topic or Flink's `keyBy`.
//!
//! A record carries its source coordinates, so a record routed twice (the admit stage
//! crashed after routing but before its checkpoint) is recognised by the owner as the same
//! message, not as a duplicate.
//!
//! The encoding is a compact binary one of our own (version byte first): records never
//! leave the deployment, are read on the hot path, and are decoded without copying.
//!
//! One units-topic message carries a [set](encode_set) of up to [`SET_RECORDS_MAX`]
//! records bound for the same partition: Kafka's cost is per message (the producer's
//! bookkeeping, the delivery report, the broker's append, the consumer's fetch), so one
//! message per record cost more CPU than deciding the record did. A record's place in the
//! ledger is its message's offset plus its index in the set ([`ledger_position`]).

use crate::domain::Program;

/// Version byte of the record encoding this build writes. Version 2 adds the eligible
/// firm and the note; a reader also takes version 1 (records a previous build left on the
/// topic), with both empty, and refuses any other.
pub const RECORD_VERSION: u8 = 2;

/// The oldest record version a reader takes.
const RECORD_VERSION_OLDEST: u8 = 1;

/// Flag bit: the fault-injection poison hook marked the source message (tests only; see
/// [`crate::crash::is_poison`]).
pub const FLAG_POISON: u8 = 0b0000_0001;

/// Version byte of a set of records (one units-topic message).
pub const SET_VERSION: u8 = 2;

/// Most records in one set: 1,024 records of ~120 bytes stay far below Kafka's default
/// 1 MB message limit, and [`ledger_position`] has room for 2^16.
pub const SET_RECORDS_MAX: usize = 1_024;

/// Most encoded bytes in one set (a record with very long fields fills a set sooner).
pub const SET_BYTES_MAX: usize = 512 << 10;

/// Bits of a ledger position that hold the index in the set.
const POSITION_INDEX_BITS: u32 = 16;

/// A record's place in its units-topic partition as one ascending number: the message's
/// offset, then the record's index in the message's set.
pub fn ledger_position(offset: u64, index: u32) -> u64 {
    assert!(
        index < 1 << POSITION_INDEX_BITS && offset < 1 << (64 - POSITION_INDEX_BITS),
        "ledger position out of range: offset {offset}, index {index}"
    );
    (offset << POSITION_INDEX_BITS) | u64::from(index)
}

/// [`ledger_position`] as ClickHouse computes it from `unit_decisions`' columns.
pub const LEDGER_POSITION_SQL: &str = "(ledger_offset * 65536 + ledger_index)";

/// Appends a set of encoded records (each from [`UnitRecord::encode`]) to `out`.
pub fn encode_set<'r>(records: impl ExactSizeIterator<Item = &'r [u8]>, out: &mut Vec<u8>) {
    assert!(
        records.len() <= SET_RECORDS_MAX,
        "a set holds at most SET_RECORDS_MAX records"
    );
    out.push(SET_VERSION);
    out.extend_from_slice(&(records.len() as u32).to_le_bytes());
    for record in records {
        out.extend_from_slice(&(record.len() as u32).to_le_bytes());
        out.extend_from_slice(record);
    }
}

/// The sets of records bound for one partition, encoded back to back as the records come
/// (each set byte for byte what [`encode_set`] writes): the admit stage's batch holds its
/// units this way, so routing sends slices of it and never regroups or copies a record.
/// A set closes at [`SET_RECORDS_MAX`] records, or before a record that would take it
/// past [`SET_BYTES_MAX`] (a set always takes at least one record).
#[derive(Debug, Default)]
pub struct SetWriter {
    bytes: Vec<u8>,
    /// Byte ranges of the closed sets in `bytes`, with their record counts.
    closed: Vec<(std::ops::Range<usize>, usize)>,
    /// Where the open set's header starts; records of the open set follow it.
    open_start: usize,
    open_records: u32,
    /// Σ (record length + 4) over the open set, the measure [`SET_BYTES_MAX`] bounds.
    open_bytes: usize,
}

impl SetWriter {
    /// Appends one record to the open set, closing it first if the record does not fit.
    pub fn push(&mut self, record: &UnitRecord<'_>) {
        if self.open_records == 0 {
            self.open_start = self.bytes.len();
            self.bytes.extend_from_slice(&[SET_VERSION, 0, 0, 0, 0]);
        }
        // The record's length is known once it is encoded, so it is written in place
        // behind a length slot, and the set closes behind it if it did not fit.
        let length_at = self.bytes.len();
        self.bytes.extend_from_slice(&[0; 4]);
        record.encode(&mut self.bytes);
        let length = self.bytes.len() - length_at - 4;
        self.bytes[length_at..length_at + 4].copy_from_slice(&(length as u32).to_le_bytes());
        let full = self.open_records as usize == SET_RECORDS_MAX
            || self.open_bytes + length > SET_BYTES_MAX;
        if self.open_records > 0 && full {
            self.close_at(length_at);
            self.bytes
                .splice(length_at..length_at, [SET_VERSION, 0, 0, 0, 0]);
            self.open_start = length_at;
        }
        self.open_records += 1;
        self.open_bytes += length + 4;
    }

    /// Closes the open set, if any: every record is then in [`SetWriter::sets`].
    pub fn finish(&mut self) {
        if self.open_records > 0 {
            self.close_at(self.bytes.len());
        }
    }

    fn close_at(&mut self, end: usize) {
        let count = &mut self.bytes[self.open_start + 1..self.open_start + 5];
        count.copy_from_slice(&self.open_records.to_le_bytes());
        self.closed
            .push((self.open_start..end, self.open_records as usize));
        self.open_records = 0;
        self.open_bytes = 0;
    }

    /// The closed sets, each one units-topic message, with the records it holds.
    pub fn sets(&self) -> impl Iterator<Item = (&[u8], usize)> + '_ {
        self.closed
            .iter()
            .map(|(range, records)| (&self.bytes[range.clone()], *records))
    }

    /// Encoded bytes held, headers included.
    pub fn len_bytes(&self) -> usize {
        self.bytes.len()
    }

    /// Empties the writer, keeping its buffers' capacity.
    pub fn clear(&mut self) {
        self.bytes.clear();
        self.closed.clear();
        self.open_start = 0;
        self.open_records = 0;
        self.open_bytes = 0;
    }
}

/// The encoded records of a set, in order, borrowed from the message.
pub struct SetReader<'a> {
    reader: Reader<'a>,
    left: u32,
}

impl<'a> SetReader<'a> {
    /// Reads a set's header; the records follow from [`Iterator::next`].
    pub fn new(bytes: &'a [u8]) -> Result<SetReader<'a>, RecordError> {
        let mut reader = Reader { bytes };
        let version = reader.u8()?;
        if version != SET_VERSION {
            return Err(RecordError::Version(version));
        }
        let left = u32::from_le_bytes(reader.array()?);
        if left as usize > SET_RECORDS_MAX {
            return Err(RecordError::Malformed("set too large"));
        }
        Ok(SetReader { reader, left })
    }

    /// Records still to read.
    pub fn len(&self) -> usize {
        self.left as usize
    }

    /// Returns true if and only if every record was read.
    pub fn is_empty(&self) -> bool {
        self.left == 0
    }
}

impl<'a> Iterator for SetReader<'a> {
    type Item = Result<UnitRecord<'a>, RecordError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        let record = u32::from_le_bytes(match self.reader.array() {
            Ok(len) => len,
            Err(error) => {
                // A cut frame leaves nothing readable after it.
                self.left = 0;
                return Some(Err(error));
            }
        }) as usize;
        match self.reader.take(record) {
            Ok(bytes) => Some(UnitRecord::decode(bytes)),
            Err(error) => {
                self.left = 0;
                Some(Err(error))
            }
        }
    }
}

/// Default number of partitions of the units topic: the most ledger instances that can
/// share the work (4 instances hold 3 partitions each).
pub const UNITS_PARTITIONS_DEFAULT: u32 = 12;

/// The units topic of a database when none is configured: `{database}.units`.
pub fn default_units_topic(database: &str) -> String {
    format!("{database}.units")
}

/// The 128-bit hash a unit key is owned and indexed under: xxh3 of `program \x1f unit_key`.
/// A collision chance around 10⁻²¹ even at a billion units.
pub fn key_hash(program: Program, unit_key: &str) -> u128 {
    // One-shot over a stack buffer when the key fits (every key producers send does):
    // the streaming hasher costs several times more per call. Both give the same hash.
    const STACK_BYTES: usize = 256;
    let program = program.as_str().as_bytes();
    let length = program.len() + 1 + unit_key.len();
    if length <= STACK_BYTES {
        let mut joined = [0u8; STACK_BYTES];
        joined[..program.len()].copy_from_slice(program);
        joined[program.len()] = 0x1f;
        joined[program.len() + 1..length].copy_from_slice(unit_key.as_bytes());
        return xxhash_rust::xxh3::xxh3_128(&joined[..length]);
    }
    let mut hasher = xxhash_rust::xxh3::Xxh3::new();
    hasher.update(program);
    hasher.update(&[0x1f]);
    hasher.update(unit_key.as_bytes());
    hasher.digest128()
}

/// The hash of the key whose owner decides a record: its own key's, except a void's,
/// which is decided by the owner of the record it names — so the owner sees the void and
/// the record in one order, whichever arrived first, and a void that comes first waits
/// there for its record.
pub fn owner_hash(program: Program, unit_key: &str) -> u128 {
    match (program, crate::domain::voided_record(unit_key)) {
        (Program::UnitVoided, Some((voided, key))) => key_hash(voided, key),
        _ => key_hash(program, unit_key),
    }
}

/// The units-topic partition that owns a key. Depends on the key and the partition count
/// only, so the count is fixed for a deployment's life (README: growing past one machine).
pub fn owner_partition(key_hash: u128, partitions: u32) -> i32 {
    assert!(partitions > 0, "the units topic has at least one partition");
    ((key_hash >> 64) as u64 % u64::from(partitions)) as i32
}

/// One valid unit on its way to its owner, borrowed (encoding) or borrowed from the
/// Kafka message it was read from (decoding).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct UnitRecord<'a> {
    pub source_topic: &'a str,
    pub source_partition: u32,
    pub source_offset: u64,
    /// When the admit stage consumed the source message, Unix seconds.
    pub received_at_unix_s: u32,
    pub program: Option<Program>,
    pub event_id: &'a str,
    pub unit_key: &'a str,
    pub recipient_id: &'a str,
    pub district_code: &'a str,
    pub occurred_at_unix_s: u32,
    /// Asia/Shanghai local date, days since 1970-01-01.
    pub local_date_days: u16,
    /// Nominal amount, fen (caps are applied over the monthly aggregates, not here).
    pub amount_fen: i64,
    /// [`FLAG_POISON`] or 0.
    pub flags: u8,
    /// The firm Article 18 judged and Article 21 may revoke ([`crate::domain::Unit`]).
    pub eligible_firm: &'a str,
    /// A void's reason, a revocation's issuer and reason ([`crate::domain::Unit`]).
    pub note: &'a str,
}

/// Why a record could not be read. Records are written only by this program, so this
/// means another writer or another version shares the topic.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    #[error("unit record version {0} (this build reads {RECORD_VERSION_OLDEST} to {RECORD_VERSION}): another build or writer uses the units topic")]
    Version(u8),
    #[error("unit record cut short or malformed ({0})")]
    Malformed(&'static str),
}

impl<'a> UnitRecord<'a> {
    /// The program; every record carries one.
    pub fn program(&self) -> Program {
        self.program.expect("a unit record always has a program")
    }

    /// Appends the encoded record to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let program = Program::ALL
            .iter()
            .position(|p| Some(*p) == self.program)
            .expect("a unit record always has a program") as u8;
        out.push(RECORD_VERSION);
        out.push(self.flags);
        out.push(program);
        out.extend_from_slice(&self.source_partition.to_le_bytes());
        out.extend_from_slice(&self.source_offset.to_le_bytes());
        out.extend_from_slice(&self.received_at_unix_s.to_le_bytes());
        out.extend_from_slice(&self.occurred_at_unix_s.to_le_bytes());
        out.extend_from_slice(&self.local_date_days.to_le_bytes());
        out.extend_from_slice(&self.amount_fen.to_le_bytes());
        for text in [
            self.source_topic,
            self.event_id,
            self.unit_key,
            self.recipient_id,
            self.district_code,
            self.eligible_firm,
            self.note,
        ] {
            out.extend_from_slice(&(text.len() as u32).to_le_bytes());
            out.extend_from_slice(text.as_bytes());
        }
    }

    /// Reads a record, borrowing its text from `bytes`.
    pub fn decode(bytes: &'a [u8]) -> Result<UnitRecord<'a>, RecordError> {
        let mut reader = Reader { bytes };
        let version = reader.u8()?;
        if !(RECORD_VERSION_OLDEST..=RECORD_VERSION).contains(&version) {
            return Err(RecordError::Version(version));
        }
        let flags = reader.u8()?;
        let program = *Program::ALL
            .get(reader.u8()? as usize)
            .ok_or(RecordError::Malformed("program"))?;
        let source_partition = u32::from_le_bytes(reader.array()?);
        let source_offset = u64::from_le_bytes(reader.array()?);
        let received_at_unix_s = u32::from_le_bytes(reader.array()?);
        let occurred_at_unix_s = u32::from_le_bytes(reader.array()?);
        let local_date_days = u16::from_le_bytes(reader.array()?);
        let amount_fen = i64::from_le_bytes(reader.array()?);
        let record = UnitRecord {
            source_topic: reader.text()?,
            source_partition,
            source_offset,
            received_at_unix_s,
            program: Some(program),
            event_id: reader.text()?,
            unit_key: reader.text()?,
            recipient_id: reader.text()?,
            district_code: reader.text()?,
            occurred_at_unix_s,
            local_date_days,
            amount_fen,
            flags,
            eligible_firm: "",
            note: "",
        };
        let record = if version >= 2 {
            UnitRecord {
                eligible_firm: reader.text()?,
                note: reader.text()?,
                ..record
            }
        } else {
            record
        };
        if !reader.bytes.is_empty() {
            return Err(RecordError::Malformed("trailing bytes"));
        }
        Ok(record)
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], RecordError> {
        if self.bytes.len() < n {
            return Err(RecordError::Malformed("cut short"));
        }
        let (head, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Ok(head)
    }

    fn u8(&mut self) -> Result<u8, RecordError> {
        Ok(self.take(1)?[0])
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], RecordError> {
        Ok(self.take(N)?.try_into().expect("took N bytes"))
    }

    fn text(&mut self) -> Result<&'a str, RecordError> {
        let len = u32::from_le_bytes(self.array()?) as usize;
        std::str::from_utf8(self.take(len)?).map_err(|_| RecordError::Malformed("text not UTF-8"))
    }
}

/// A valid unit record for unit tests across the crate.
#[cfg(test)]
pub(crate) fn sample_record() -> UnitRecord<'static> {
    UnitRecord {
        source_topic: "subsidy.import.parcels",
        source_partition: 3,
        source_offset: 1 << 40,
        received_at_unix_s: 1_700_000_000,
        program: Some(Program::ImportParcel),
        event_id: "e-1",
        unit_key: "SF0001",
        recipient_id: "sf-express",
        district_code: "330109",
        occurred_at_unix_s: 1_699_999_000,
        local_date_days: 19_675,
        amount_fen: 100,
        flags: 0,
        eligible_firm: "sf-express",
        note: "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> UnitRecord<'static> {
        sample_record()
    }

    /// The grouping rule stated once, plainly: take records while the set has fewer than
    /// SET_RECORDS_MAX and the next one fits in SET_BYTES_MAX (a set takes at least one).
    fn reference_sets(records: &[Vec<u8>]) -> Vec<Vec<u8>> {
        let mut sets = Vec::new();
        let mut rest = records;
        while !rest.is_empty() {
            let (mut take, mut bytes) = (0, 0);
            while take < rest.len()
                && take < SET_RECORDS_MAX
                && (take == 0 || bytes + rest[take].len() <= SET_BYTES_MAX)
            {
                bytes += rest[take].len() + 4;
                take += 1;
            }
            let mut set = Vec::new();
            encode_set(rest[..take].iter().map(Vec::as_slice), &mut set);
            sets.push(set);
            rest = &rest[take..];
        }
        sets
    }

    #[test]
    fn proves_the_set_writer_writes_the_sets_encode_set_would_at_every_boundary() {
        let keys: Vec<String> = (0..3_000)
            .map(|n| match n % 997 {
                // A few huge keys, so sets also close on bytes, not only on records.
                0 => "k".repeat(200_000 + n),
                _ => format!("SF{n:06}"),
            })
            .collect();
        for count in [
            0,
            1,
            SET_RECORDS_MAX - 1,
            SET_RECORDS_MAX,
            SET_RECORDS_MAX + 1,
            3_000,
        ] {
            let mut writer = SetWriter::default();
            let mut encoded = Vec::new();
            for key in &keys[..count] {
                let unit = UnitRecord {
                    unit_key: key,
                    ..record()
                };
                writer.push(&unit);
                let mut bytes = Vec::new();
                unit.encode(&mut bytes);
                encoded.push(bytes);
            }
            writer.finish();
            let written: Vec<Vec<u8>> = writer.sets().map(|(set, _)| set.to_vec()).collect();
            assert_eq!(written, reference_sets(&encoded), "{count} records");
            let read: usize = writer
                .sets()
                .map(|(set, records)| {
                    assert_eq!(SetReader::new(set).unwrap().len(), records);
                    records
                })
                .sum();
            assert_eq!(read, count);
            writer.clear();
            assert_eq!((writer.sets().count(), writer.len_bytes()), (0, 0));
        }
    }

    #[test]
    fn records_round_trip() {
        let mut bytes = Vec::new();
        record().encode(&mut bytes);
        assert_eq!(UnitRecord::decode(&bytes), Ok(record()));
    }

    #[test]
    fn other_versions_and_cut_records_are_refused() {
        let mut bytes = Vec::new();
        record().encode(&mut bytes);
        assert_eq!(
            UnitRecord::decode(&bytes[..bytes.len() - 1]),
            Err(RecordError::Malformed("cut short"))
        );
        bytes[0] = 9;
        assert_eq!(UnitRecord::decode(&bytes), Err(RecordError::Version(9)));
        // A version-1 record (a previous build's, still on the topic) reads with no
        // eligible firm and no note.
        let mut v2 = Vec::new();
        record().encode(&mut v2);
        let tail = 4 + record().eligible_firm.len() + 4;
        let mut v1 = v2[..v2.len() - tail].to_vec();
        v1[0] = 1;
        assert_eq!(
            UnitRecord::decode(&v1),
            Ok(UnitRecord {
                eligible_firm: "",
                note: "",
                ..record()
            })
        );
        assert!(UnitRecord::decode(&[]).is_err());
    }

    #[test]
    fn sets_carry_their_records_in_order_and_refuse_cut_frames() {
        let mut one = Vec::new();
        record().encode(&mut one);
        let mut other = Vec::new();
        UnitRecord {
            unit_key: "SF0002",
            ..record()
        }
        .encode(&mut other);
        let mut set = Vec::new();
        encode_set([one.as_slice(), other.as_slice()].into_iter(), &mut set);
        let read: Vec<_> = SetReader::new(&set).unwrap().collect();
        assert_eq!(read.len(), 2);
        assert_eq!(read[0], Ok(record()));
        assert_eq!(read[1].as_ref().unwrap().unit_key, "SF0002");
        let cut: Vec<_> = SetReader::new(&set[..set.len() - 3]).unwrap().collect();
        assert_eq!(cut.len(), 2);
        assert!(cut[0].is_ok() && cut[1].is_err());
        assert!(SetReader::new(&one).is_err(), "a bare record is not a set");
        assert!(SetReader::new(&[]).is_err());
    }

    #[test]
    fn ledger_positions_ascend_with_offset_then_index() {
        assert!(ledger_position(5, 1_023) < ledger_position(6, 0));
        assert_eq!(ledger_position(1, 2), 65_538);
    }

    #[test]
    fn proves_the_key_hash_is_the_streaming_xxh3_of_program_separator_key_at_every_length() {
        // The state on disk is keyed by this hash: it must never change.
        for length in 0..400 {
            let key: String = (0..length)
                .map(|i| (b'a' + (i % 26) as u8) as char)
                .collect();
            let mut hasher = xxhash_rust::xxh3::Xxh3::new();
            hasher.update(b"rural_delivery\x1f");
            hasher.update(key.as_bytes());
            assert_eq!(
                key_hash(Program::RuralDelivery, &key),
                hasher.digest128(),
                "{length}"
            );
        }
    }

    #[test]
    fn the_owner_depends_on_the_key_only_and_spreads_keys() {
        let mut counts = [0u32; 12];
        for n in 0..12_000 {
            let key = key_hash(Program::RuralDelivery, &format!("YT{n:08}"));
            counts[owner_partition(key, 12) as usize] += 1;
        }
        assert!(
            counts.iter().all(|&c| (800..1_200).contains(&c)),
            "{counts:?}"
        );
        let a = key_hash(Program::ImportParcel, "W1");
        assert_eq!(owner_partition(a, 12), owner_partition(a, 12));
        assert_ne!(a, key_hash(Program::RuralDelivery, "W1"));
    }
}
