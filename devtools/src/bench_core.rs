//! `bench --core`: the CPU cost of the pipeline's pure path per event, without any I/O —
//! decode, rules, routing (key hash and owner), the RowBinary outcome row and the unit
//! record (admit), then the unit record read back and decided against an in-memory index
//! and encoded as a decision row (ledger). One thread, so ns/event is CPU per event and
//! events/s is per core.

use crate::sample::{self, SampleConfig};
use std::time::Instant;
use subsidy_ingester::decode::decode;
use subsidy_ingester::dedup::{SourceRef, UnitIndex};
use subsidy_ingester::ingest::batch::Batch;
use subsidy_ingester::ingest::process::{Consumed, Processor};
use subsidy_ingester::ledger::decide::{decide_into, Decision};
use subsidy_ingester::refdata::RefData;
use subsidy_ingester::route::SetReader;
use subsidy_ingester::rules::evaluate;
use subsidy_ingester::store::rowbinary::RowBinaryWriter;

/// Messages per batch, as `run`'s default `batch_rows_max`.
const BATCH_MESSAGES: usize = 100_000;

/// What the core path costs.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CoreReport {
    pub events: usize,
    /// Passes over the feed; the first warms caches and is not counted.
    pub passes: usize,
    /// Of admit: decoding alone, then decoding and the rules (separate passes).
    pub decode_ns_per_event: f64,
    pub decode_rules_ns_per_event: f64,
    pub admit_ns_per_event: f64,
    pub ledger_ns_per_unit: f64,
    pub total_ns_per_event: f64,
    pub events_per_second_per_core: u64,
}

/// Measures the core path over a generated feed of `events`.
pub fn bench_core(events: usize, seed: u64, passes: usize) -> CoreReport {
    let feed = sample::generate(&SampleConfig {
        seed,
        events,
        ..SampleConfig::default()
    });
    let refdata =
        RefData::from_records(feed.firms.clone(), feed.outlets.clone(), feed.zones.clone());
    let (decode_ns, decode_rules_ns) = stage_passes(&feed.messages, &refdata, passes);
    let mut processor = Processor::new(
        refdata,
        subsidy_ingester::edition::Editions::builtin(),
        subsidy_ingester::route::UNITS_PARTITIONS_DEFAULT,
    );
    let mut admit_ns = 0u128;
    let mut ledger_ns = 0u128;
    let mut units = 0u64;
    for pass in 0..=passes {
        let mut index = UnitIndex::new();
        for (chunk_index, chunk) in feed.messages.chunks(BATCH_MESSAGES).enumerate() {
            let mut batch = Batch::with_capacity(64 << 20);
            let started = Instant::now();
            for (i, message) in chunk.iter().enumerate() {
                let consumed = Consumed {
                    topic: &message.topic,
                    partition: 0,
                    offset: (chunk_index * BATCH_MESSAGES + i) as i64,
                    payload: Some(&message.payload),
                    received_at_unix_s: 1_700_000_000,
                };
                processor.process(consumed, &mut batch);
            }
            batch.finish_units();
            let sets = batch.unit_sets();
            let admitted = started.elapsed();
            let started = Instant::now();
            let mut rows = RowBinaryWriter::with_capacity(32 << 20);
            let mut decided = 0u64;
            for (offset, set) in sets.iter().enumerate() {
                let reader = SetReader::new(set.payload).expect("own encoding");
                for (position, record) in reader.enumerate() {
                    let record = record.expect("own encoding");
                    let source = SourceRef {
                        topic: record.source_topic,
                        partition: record.source_partition,
                        offset: record.source_offset,
                    };
                    let seen = index.check_and_record(record.program(), record.unit_key, source);
                    let decision = decide_into(
                        record,
                        seen,
                        set.partition as u32,
                        offset as u64,
                        position as u32,
                        1_700_000_000,
                        &mut rows,
                    );
                    if decision != Decision::AlreadyDecided {
                        decided += 1;
                    }
                }
            }
            let ledgered = started.elapsed();
            std::hint::black_box((batch.bytes(), rows.len()));
            if pass > 0 {
                admit_ns += admitted.as_nanos();
                ledger_ns += ledgered.as_nanos();
                units += decided;
            }
        }
    }
    let counted = (events * passes.max(1)) as f64;
    let admit = admit_ns as f64 / counted;
    let ledger_per_unit = if units > 0 {
        ledger_ns as f64 / units as f64
    } else {
        0.0
    };
    let total = (admit_ns + ledger_ns) as f64 / counted;
    CoreReport {
        events,
        passes,
        decode_ns_per_event: (decode_ns * 10.0).round() / 10.0,
        decode_rules_ns_per_event: (decode_rules_ns * 10.0).round() / 10.0,
        admit_ns_per_event: (admit * 10.0).round() / 10.0,
        ledger_ns_per_unit: (ledger_per_unit * 10.0).round() / 10.0,
        total_ns_per_event: (total * 10.0).round() / 10.0,
        events_per_second_per_core: if total > 0.0 {
            (1e9 / total).round() as u64
        } else {
            0
        },
    }
}

/// ns/event of decoding alone and of decoding plus the rules, each over `passes` passes
/// after a warming one: where admit's time goes.
fn stage_passes(
    messages: &[sample::SampleMessage],
    refdata: &RefData,
    passes: usize,
) -> (f64, f64) {
    let editions = subsidy_ingester::edition::Editions::builtin();
    let mut decode_ns = 0u128;
    let mut rules_ns = 0u128;
    for pass in 0..=passes {
        let started = Instant::now();
        let mut decoded = 0usize;
        for message in messages {
            decoded += usize::from(decode(&message.payload).is_ok());
        }
        let decoding = started.elapsed();
        let started = Instant::now();
        let mut admitted = 0usize;
        for message in messages {
            if let Ok(event) = decode(&message.payload) {
                admitted += usize::from(evaluate(&event, refdata, &editions).is_ok());
            }
        }
        let ruling = started.elapsed();
        std::hint::black_box((decoded, admitted));
        if pass > 0 {
            decode_ns += decoding.as_nanos();
            rules_ns += ruling.as_nanos();
        }
    }
    let counted = (messages.len() * passes.max(1)) as f64;
    (decode_ns as f64 / counted, rules_ns as f64 / counted)
}

/// The report as people read it.
pub fn render(report: &CoreReport) -> String {
    format!(
        "core path (no I/O), {} events × {} passes, one thread:\n\
         decode alone:                          {:.1} ns/event\n\
         decode + rules:                        {:.1} ns/event\n\
         admit (decode, rules, route, encode):  {:.1} ns/event\n\
         ledger (decode record, decide, encode): {:.1} ns/unit\n\
         total:                                 {:.1} ns/event = {} events/s per core\n",
        report.events,
        report.passes,
        report.decode_ns_per_event,
        report.decode_rules_ns_per_event,
        report.admit_ns_per_event,
        report.ledger_ns_per_unit,
        report.total_ns_per_event,
        report.events_per_second_per_core
    )
}
