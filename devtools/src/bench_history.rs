//! `bench --history-units N`: seeds N units of history the fast way — the very rows the two
//! stages would have written had they ingested them (admitted `outcomes` rows with their
//! source coordinates, `unit_decisions` rows on each key's owner partition in offset order,
//! the aggregates through the same materialized view, and one rejection per
//! [`REJECTED_EVERY`] messages) — without the broker. The ledger state is then built by
//! `run` itself, through the same restore code a lost store takes.
//!
//! History spans the whole policy period (2022-07 … 2025-12) in time order, over a fixed
//! set of recipients, so the analyst views have as many cells as a real city's would
//! (recipients × months), however many units there are.

use bytes::Bytes;
use std::time::Instant;
use subsidy_ingester::domain::{Program, Reason};
use subsidy_ingester::route::{key_hash, owner_partition, UnitRecord, SET_RECORDS_MAX};
use subsidy_ingester::store::decisions::{insert_decisions, DecisionRow};
use subsidy_ingester::store::outcomes::{insert_outcomes, OutcomeRow};
use subsidy_ingester::store::rowbinary::RowBinaryWriter;
use subsidy_ingester::store::{Store, StoreError};

/// Messages per insert.
const CHUNK_MESSAGES: u64 = 1_000_000;
/// One message in this many is a rejection (as in the sample feed, about 5 %).
pub const REJECTED_EVERY: u64 = 20;
/// Couriers who receive the takeout units of history.
const COURIERS: u64 = 2_000;
/// Partitions of the history's source topic.
const SOURCE_PARTITIONS: u64 = 4;
/// 2022-07-01 and 2025-12-31 as ClickHouse `Date` days.
const FIRST_DAY: u64 = 19_174;
const LAST_DAY: u64 = 20_453;

/// Where the seeded recipients come from: the bench feed's reference data.
pub struct Recipients<'a> {
    /// (firm_id, district_code) of import firms.
    pub firms: &'a [(String, String)],
    /// (outlet_id, district_code) of rural outlets.
    pub outlets: &'a [(String, String)],
}

/// What was seeded.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct Seeded {
    /// Units-topic messages (sets of decisions) seeded per partition.
    #[serde(skip)]
    pub messages_per_partition: [u64; 64],
    pub messages: u64,
    pub units: u64,
    pub rejected: u64,
    pub seconds: f64,
}

/// Fills the units topic with one placeholder message (no key, no value) per seeded set
/// of decisions, so its offsets stand where the seeded `unit_decisions` say: the ledger stage
/// resumes after them as it would after real history. Returns the records produced.
pub fn fill_units_topic(
    kafka: &subsidy_ingester::kafka::KafkaConfig,
    units_topic: &str,
    records_per_partition: &[u64],
) -> anyhow::Result<u64> {
    use rdkafka::config::ClientConfig;
    use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
    let producer: ThreadedProducer<DefaultProducerContext> = kafka
        .properties
        .apply(
            ClientConfig::new()
                .set("bootstrap.servers", &kafka.brokers)
                .set("acks", "all")
                .set("linger.ms", "50")
                .set("batch.num.messages", "100000")
                .set("queue.buffering.max.messages", "2000000"),
        )
        .create()?;
    let mut produced = 0u64;
    for (partition, &count) in records_per_partition.iter().enumerate() {
        for _ in 0..count {
            let mut record: BaseRecord<'_, (), ()> =
                BaseRecord::to(units_topic).partition(partition as i32);
            loop {
                match producer.send(record) {
                    Ok(()) => break,
                    Err((_, returned)) => {
                        // Queue full: let the background thread deliver, then resend.
                        std::thread::sleep(std::time::Duration::from_millis(5));
                        record = returned;
                    }
                }
            }
            produced += 1;
        }
    }
    producer.flush(std::time::Duration::from_secs(600))?;
    Ok(produced)
}

/// Seeds `units` units of history (and their share of rejections) into `store`.
pub async fn seed(
    store: &Store,
    units: u64,
    units_partitions: u32,
    topic: &str,
    recipients: &Recipients<'_>,
) -> Result<Seeded, StoreError> {
    assert!(!recipients.firms.is_empty() && !recipients.outlets.is_empty());
    let started = Instant::now();
    let messages = units + units / (REJECTED_EVERY - 1);
    let mut next_ledger_offset = vec![0u64; units_partitions as usize];
    assert!(
        units_partitions as usize <= 64,
        "at most 64 units partitions"
    );
    let mut seeded = Seeded {
        messages_per_partition: [0; 64],
        messages: 0,
        units: 0,
        rejected: 0,
        seconds: 0.0,
    };
    let mut first = 0u64;
    while first < messages {
        let end = (first + CHUNK_MESSAGES).min(messages);
        let mut outcomes = RowBinaryWriter::with_capacity(((end - first) * 110) as usize);
        // Decision rows per owner partition, concatenated in partition order below.
        let mut pending: Vec<RowBinaryWriter> = (0..units_partitions)
            .map(|_| {
                RowBinaryWriter::with_capacity(
                    ((end - first) * 140 / u64::from(units_partitions)) as usize,
                )
            })
            .collect();
        for n in first..end {
            let day = (FIRST_DAY + n * (LAST_DAY - FIRST_DAY) / messages.max(1)) as u16;
            let at = u32::from(day) * 86_400 + 3_600 * 10 - 8 * 3_600;
            let partition = (n % SOURCE_PARTITIONS) as u32;
            let offset = n / SOURCE_PARTITIONS;
            let event_id = format!("h{n}");
            if n % REJECTED_EVERY == REJECTED_EVERY - 1 {
                let reason = [
                    Reason::SchemaViolation,
                    Reason::UnknownFirm,
                    Reason::FirmIneligible,
                    Reason::ZoneInactive,
                ][(n / REJECTED_EVERY % 4) as usize];
                let payload = format!(
                    r#"{{"type":"import_parcel","event_id":"{event_id}","occurred_at":"2024-01-01T10:00:00+08:00","firm_id":"nobody","waybill_no":"HX{n}","channel":"express"}}"#
                );
                OutcomeRow {
                    topic,
                    partition,
                    offset,
                    received_at_unix_s: at,
                    event_id: &event_id,
                    reason: reason.as_str(),
                    detail: "seeded history rejection",
                    payload: payload.as_bytes(),
                    program: Program::ImportParcel.as_str(),
                    occurred_at_unix_s: at,
                    local_date_days: day,
                    ..OutcomeRow::default()
                }
                .encode(&mut outcomes);
                seeded.rejected += 1;
                continue;
            }
            let (program, recipient, district, amount_fen) = match n % 10 {
                0..=4 => (
                    Program::TakeoutOrder,
                    format!("HC{}", n % COURIERS),
                    "330106".to_string(),
                    100,
                ),
                5..=7 => {
                    let (firm, district) =
                        &recipients.firms[(n / 10) as usize % recipients.firms.len()];
                    (Program::ImportParcel, firm.clone(), district.clone(), 100)
                }
                _ => {
                    let (outlet, district) =
                        &recipients.outlets[(n / 10) as usize % recipients.outlets.len()];
                    (Program::RuralDelivery, outlet.clone(), district.clone(), 30)
                }
            };
            let unit_key = format!("hist/H{n:011}");
            let row = OutcomeRow {
                topic,
                partition,
                offset,
                received_at_unix_s: at,
                event_id: &event_id,
                program: program.as_str(),
                unit_key: &unit_key,
                recipient_id: &recipient,
                district_code: &district,
                occurred_at_unix_s: at,
                local_date_days: day,
                amount_fen,
                ..OutcomeRow::default()
            };
            row.encode(&mut outcomes);
            let record = UnitRecord {
                source_topic: topic,
                source_partition: partition,
                source_offset: offset,
                received_at_unix_s: at,
                program: Some(program),
                event_id: &event_id,
                unit_key: &unit_key,
                recipient_id: &recipient,
                district_code: &district,
                occurred_at_unix_s: at,
                local_date_days: day,
                amount_fen,
                flags: 0,
                // The seeded programs' eligible firm: the recipient firm, the platform
                // (takeout: the key's first field) or the outlet's firm (rural; the seed
                // has no outlets table to look it up in, so the recipient stands in).
                eligible_firm: unit_key
                    .split('/')
                    .next()
                    .filter(|_| program == Program::TakeoutOrder)
                    .unwrap_or(&recipient),
                note: "",
            };
            let owner = owner_partition(key_hash(program, &unit_key), units_partitions) as usize;
            // Full sets of records, as a busy admit stage routes them.
            let record_number = next_ledger_offset[owner];
            next_ledger_offset[owner] += 1;
            DecisionRow {
                ledger_partition: owner as u32,
                ledger_offset: record_number / SET_RECORDS_MAX as u64,
                ledger_index: (record_number % SET_RECORDS_MAX as u64) as u32,
                record,
                decided_at_unix_s: at,
                reason: "",
                detail: "",
                voided: false,
                voids_position: 0,
            }
            .encode(&mut pending[owner]);
            seeded.units += 1;
        }
        // Rows of a partition in offset order, as the ledger stage writes them.
        let mut decisions = Vec::new();
        for rows in pending {
            decisions.extend_from_slice(&rows.into_inner());
        }
        insert_outcomes(store, Bytes::from(outcomes.into_inner())).await?;
        insert_decisions(store, Bytes::from(decisions)).await?;
        seeded.messages = end;
        eprintln!(
            "bench: history {} of {} messages seeded ({:.0} s)",
            end,
            messages,
            started.elapsed().as_secs_f64()
        );
        first = end;
    }
    for (partition, next) in next_ledger_offset.iter().enumerate() {
        seeded.messages_per_partition[partition] = next.div_ceil(SET_RECORDS_MAX as u64);
    }
    seeded.seconds = started.elapsed().as_secs_f64();
    Ok(seeded)
}
