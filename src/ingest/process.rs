//! The admit stage: one consumed message → exactly one outcome row, plus a dead letter
//! when rejected, or a unit record routed to its owner when valid.
//!
//! decode (SPEC §5 steps 1–4) → rules (steps 5–6) → route. Pure: whether a valid unit is
//! new or a `duplicate` (step 7) is decided by the ledger stage that owns its key.

use super::batch::{Batch, DeadLetter};
use crate::decode::decode;
use crate::domain::{Reason, Rejection};
use crate::edition::Editions;
use crate::refdata::RefData;
use crate::route::{owner_hash, owner_partition, UnitRecord, FLAG_POISON};
use crate::rules::evaluate;
use crate::store::outcomes::{date_days, datetime_seconds, OutcomeRow};

/// A consumed Kafka message, borrowed.
#[derive(Debug, Clone, Copy)]
pub struct Consumed<'a> {
    pub topic: &'a str,
    pub partition: i32,
    pub offset: i64,
    /// The message value; `None` for a Kafka tombstone (a message without a value).
    pub payload: Option<&'a [u8]>,
    pub received_at_unix_s: u32,
}

/// The rules' state: reference data, the editions, and the partition count of the units
/// topic.
pub struct Processor {
    refdata: RefData,
    editions: Editions,
    units_partitions: u32,
    /// `occurred_at` of the last message decoded (s since the epoch; 0 if it was not):
    /// the poll loop's event-clock lag.
    last_occurred_at_unix_s: u32,
}

impl Processor {
    /// A processor over the given reference data, routing to `units_partitions` owners.
    pub fn new(refdata: RefData, editions: Editions, units_partitions: u32) -> Processor {
        assert!(units_partitions > 0, "the units topic has partitions");
        Processor {
            refdata,
            editions,
            units_partitions,
            last_occurred_at_unix_s: 0,
        }
    }

    /// `occurred_at` of the last message processed, s since the epoch; 0 if it did not
    /// decode.
    pub fn last_occurred_at_unix_s(&self) -> u32 {
        self.last_occurred_at_unix_s
    }

    /// Decides the message's outcome and appends it to `batch`: a rejection (row and dead
    /// letter), or an admitted row (`reason = ''`) and the unit record for its owner.
    pub fn process(&mut self, message: Consumed<'_>, batch: &mut Batch) {
        self.last_occurred_at_unix_s = 0;
        let mut row = OutcomeRow {
            topic: message.topic,
            partition: message.partition as u32,
            offset: message.offset as u64,
            received_at_unix_s: message.received_at_unix_s,
            ..OutcomeRow::default()
        };
        let Some(payload) = message.payload else {
            let rejection = Rejection::new(
                Reason::MalformedJson,
                "Kafka tombstone: the message has no value (null), so there is no JSON to read",
            );
            return reject(batch, row, &message, &rejection);
        };
        let event = match decode(payload) {
            Ok(event) => event,
            Err(rejection) => return reject(batch, row, &message, &rejection),
        };
        let unit_key;
        let date = event.booking_date();
        row.event_id = &event.event_id;
        row.program = event.program().as_str();
        row.occurred_at_unix_s = datetime_seconds(&event.occurred_at);
        self.last_occurred_at_unix_s = row.occurred_at_unix_s;
        row.local_date_days = date_days(date);
        let unit = match evaluate(&event, &self.refdata, &self.editions) {
            Ok(unit) => unit,
            Err(rejection) => {
                unit_key = event.unit_key();
                row.unit_key = &unit_key;
                return reject(batch, row, &message, &rejection);
            }
        };
        debug_assert!(unit.amount_fen >= 0, "a unit never pays a negative amount");
        // The admitted message's row is its checkpoint and says where it went; the unit
        // itself (key, recipient, district, amount) is the ledger's row in
        // `unit_decisions`, so it is not stored twice.
        let record = UnitRecord {
            source_topic: message.topic,
            source_partition: message.partition as u32,
            source_offset: message.offset as u64,
            received_at_unix_s: message.received_at_unix_s,
            program: Some(unit.program),
            event_id: &event.event_id,
            unit_key: &unit.unit_key,
            recipient_id: unit.recipient_id,
            district_code: unit.district_code,
            occurred_at_unix_s: row.occurred_at_unix_s,
            local_date_days: row.local_date_days,
            amount_fen: unit.amount_fen,
            flags: if crate::crash::is_poison(payload) {
                FLAG_POISON
            } else {
                0
            },
            eligible_firm: unit.eligible_firm,
            note: &unit.note,
        };
        let key = owner_hash(unit.program, &unit.unit_key);
        batch.push(&row, None);
        batch.push_unit(owner_partition(key, self.units_partitions), &record);
    }
}

/// Appends a rejected row (the raw payload kept) and its dead letter.
fn reject<'a>(
    batch: &mut Batch,
    mut row: OutcomeRow<'a>,
    message: &Consumed<'a>,
    rejection: &'a Rejection,
) {
    row.reason = rejection.reason.as_str();
    row.detail = &rejection.detail;
    row.payload = message.payload.unwrap_or_default();
    row.amount_fen = 0;
    batch.push(&row, Some(rejection.reason));
    if crate::crash::is_poison(message.payload.unwrap_or_default()) {
        batch.poison_last_row();
    }
    batch.push_dead_letter(DeadLetter {
        topic: message.topic.to_string(),
        partition: message.partition,
        offset: message.offset,
        reason: rejection.reason,
        detail: rejection.detail.clone(),
        payload: message.payload.map(<[u8]>::to_vec),
        payload_at_source: false,
        received_at_unix_s: message.received_at_unix_s,
    });
}
