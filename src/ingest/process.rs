//! One consumed message → exactly one outcome row, plus a dead letter when rejected.
//!
//! decode (SPEC §5 steps 1–4) → rules (steps 5–6) → dedup (step 7). Everything here is
//! pure except the dedup index, which records the units this message creates.

use super::batch::{Batch, DeadLetter};
use crate::decode::decode;
use crate::dedup::{Seen, SourceRef, UnitIndex};
use crate::domain::{Event, Reason, Rejection};
use crate::policy::local_date;
use crate::refdata::RefData;
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

/// The rules' state: reference data and the paid-unit index.
pub struct Processor {
    refdata: RefData,
    index: UnitIndex,
}

impl Processor {
    /// A processor over the given reference data and an index rebuilt from storage.
    pub fn new(refdata: RefData, index: UnitIndex) -> Processor {
        Processor { refdata, index }
    }

    /// Units currently in the dedup index.
    pub fn units_indexed(&self) -> usize {
        self.index.len()
    }

    /// Decides the message's outcome and appends it to `batch`.
    pub fn process(&mut self, message: Consumed<'_>, batch: &mut Batch) {
        self.decide(message, batch);
        if crate::crash::is_poison(message.payload.unwrap_or_default()) {
            batch.poison_last_row();
        }
    }

    fn decide(&mut self, message: Consumed<'_>, batch: &mut Batch) {
        let source = SourceRef {
            topic: message.topic,
            partition: message.partition as u32,
            offset: message.offset as u64,
        };
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
        let date = local_date(&event.occurred_at);
        row.event_id = &event.event_id;
        row.program = event.program().as_str();
        row.occurred_at_unix_s = datetime_seconds(&event.occurred_at);
        row.local_date_days = date_days(date);
        let unit = match evaluate(&event, &self.refdata) {
            Ok(unit) => unit,
            Err(rejection) => {
                unit_key = event.unit_key();
                row.unit_key = &unit_key;
                return reject(batch, row, &message, &rejection);
            }
        };
        row.unit_key = &unit.unit_key;
        row.recipient_id = &unit.recipient_id;
        row.district_code = &unit.district_code;
        match self
            .index
            .check_and_record(unit.program, &unit.unit_key, source)
        {
            // A redelivery of the message that created the unit writes the same row again;
            // the views read each source once.
            Seen::New | Seen::SameMessage => {
                row.amount_fen = unit.amount_fen;
                batch.push(&row, None);
            }
            Seen::DuplicateOf(first) => {
                let rejection = duplicate_of(&event, &first);
                reject(batch, row, &message, &rejection);
            }
        }
    }
}

fn duplicate_of(event: &Event, first: &str) -> Rejection {
    Rejection::new(
        Reason::Duplicate,
        format!(
            "unit {} {} already paid: first recorded at {first}",
            event.program(),
            event.unit_key()
        ),
    )
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
    batch.push_dead_letter(DeadLetter {
        topic: message.topic.to_string(),
        partition: message.partition,
        offset: message.offset,
        reason: rejection.reason,
        detail: rejection.detail.clone(),
        payload: message.payload.map(<[u8]>::to_vec),
        received_at_unix_s: message.received_at_unix_s,
    });
}
