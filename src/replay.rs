//! `replay`: reprocesses a range of one topic into a scratch database and shows how the
//! outcomes differ from the live ones — a dry run for audits and after a rule or
//! reference-data fix. Replay never writes to the live database, sends no dead letters and
//! commits nothing to Kafka (its consumer is assigned partitions explicitly and joins no
//! group).
//!
//! ## Steps
//!
//! 1. Resolve the range per partition: `[start, end)`. A start offset is clamped to the
//!    partition's low and high watermarks; a start time becomes the first offset whose
//!    message timestamp is at or after it (librdkafka `offsets_for_times`; the high
//!    watermark when there is none). An end offset is exclusive and clamped to the high
//!    watermark; an end time is resolved like a start time, so messages stamped before it
//!    are in the range; without an end the range runs to the high watermark at start.
//!    Both answers of the broker are checked by reading: the high watermark by reading on
//!    from it to the end of the partition, a time's offset by reading on from it to the
//!    first message stamped at or after the time (some Kafka-compatible brokers — Tansu —
//!    list the start of the last record batch as the high watermark, and answer a batch's
//!    or the partition's start for a time).
//! 2. (Re)create the scratch database — only one that does not exist, is empty or was made
//!    by an earlier replay (it carries a `replay_scratch` marker table): replay never drops
//!    anything else, nor `default` or `system` — migrate it and copy the live current
//!    reference data into it. A kept scratch database holds only the replayed messages, so
//!    its views total those alone.
//! 3. Seed the dedup index with every live accepted unit whose source is *outside* the
//!    range, so a replayed message repeating a unit paid elsewhere is still a `duplicate`.
//!    Live units inside the range are decided afresh by the replay. A unit paid outside
//!    the range keeps it even when paid *after* the range: should a fix make an earlier,
//!    replayed message valid for that key, replay calls it a duplicate (a full re-ingest
//!    into a fresh database would pay it there instead).
//! 4. Read each partition from start to end and process every message exactly as `run`
//!    does (decode → rules → dedup), inserting the outcome rows into the scratch `outcomes`
//!    in batches of [`REPLAY_BATCH_ROWS`].
//! 5. Compare live and scratch for exactly the replayed sources (see below), then drop the
//!    scratch database unless asked to keep it.
//!
//! ## What is compared
//!
//! Each side's outcome of a source (topic, partition, offset) is the one the analyst views
//! give it: a unit of `ledger` (accepted) or a row of `rejected_events` (its reason). So
//! a message stored accepted in live but whose unit key an earlier source also holds
//! (two instances racing) counts as a `duplicate`, exactly as in the live totals. A source
//! of the range that live has not processed yet is `absent` there (and counted apart, so
//! lag is not mistaken for a rule change).
//!
//! - **Messages**: a message changed if one side accepted it and the other did not, if
//!   both rejected it with different reasons, or if both accepted it with a different unit
//!   key, recipient, district, local date or amount. Rejection details are not compared.
//!   Up to [`EXAMPLES_MAX`] changed messages are listed.
//! - **Money**: the nominal amount (rate × units, caps *not* applied — caps depend on a
//!   recipient's whole year, most of which is outside the range) of the accepted units of
//!   the replayed messages, per (month, program, recipient, district), live and replay;
//!   every cell that differs is listed with `delta = replay − live`, in exact yuan.
//! - **Reasons**: the number of messages per outcome (accepted or reason) on each side.
//!
//! Both sides are read sorted by (partition, offset) from ClickHouse and merged as
//! streams, so memory stays bounded by the number of money cells, not of messages.

use crate::dedup::{SourceRef, UnitIndex};
use crate::domain::{Program, Reason};
use crate::ingest::batch::{Batch, BatchLimits};
use crate::ingest::process::{Consumed, Processor};
use crate::kafka::{KafkaConfig, KafkaSetupError};
use crate::ledger::decide::decide_into;
use crate::refdata::{Firm, Outlet, Zone};
use crate::store::decisions::insert_decisions;
use crate::store::outcomes::{
    date_from_days, escape_literal, for_each_stored_unit, insert_outcomes,
};
use crate::store::rowbinary::RowBinaryWriter;
use crate::store::{migrate, refdata_store, Store, StoreConfig, StoreError};
use chrono::{DateTime, Datelike, FixedOffset, NaiveDate};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use rust_decimal::Decimal;
use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Rows per insert into the scratch `outcomes`.
pub const REPLAY_BATCH_ROWS: usize = 50_000;
/// Changed messages listed in a report, at most.
pub const EXAMPLES_MAX: usize = 20;
/// Encoded bytes per insert, at most.
const REPLAY_BATCH_BYTES: usize = 32 << 20;
/// Time limit of one Kafka metadata, watermark or offsets-for-times request.
const KAFKA_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Replay fails when no partition made progress for this long.
const STALL_TIMEOUT: Duration = Duration::from_secs(120);
/// Table marking a database as made by `replay` (so a later replay may drop it).
const MARKER_TABLE: &str = "replay_scratch";
/// Databases of the server itself, never used as scratch even when empty.
const RESERVED_DATABASES: [&str; 3] = ["default", "system", "information_schema"];
/// Money cells listed by [`render`], at most (the JSON report lists all).
const RENDERED_CELLS_MAX: usize = 100;

/// What to replay, from where, into which scratch database.
#[derive(Debug, Clone)]
pub struct ReplaySettings {
    /// The policy editions the rules judge by.
    pub editions: crate::edition::Editions,
    /// The brokers (the group id is not used: replay joins no group).
    pub kafka: KafkaConfig,
    /// The live database; only read.
    pub live: StoreConfig,
    /// Dropped, recreated and (unless `keep_scratch`) dropped again; must differ from the
    /// live database and must not hold anything but an earlier replay.
    pub scratch_database: String,
    /// The topic to replay.
    pub topic: String,
    /// Partitions to replay; `None` = all of the topic's.
    pub partitions: Option<Vec<i32>>,
    pub start: ReplayStart,
    /// `None` = up to the high watermark when the replay starts.
    pub end: Option<ReplayEnd>,
    /// Keep the scratch database for inspection.
    pub keep_scratch: bool,
}

/// Where the range starts, in every replayed partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplayStart {
    /// This offset (clamped to the partition's watermarks).
    Offset(i64),
    /// The first message whose timestamp is at or after this instant.
    Time(DateTime<FixedOffset>),
}

/// Where the range ends (exclusive), in every replayed partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplayEnd {
    /// Before this offset (clamped to the high watermark).
    Offset(i64),
    /// Before the first message whose timestamp is at or after this instant.
    Time(DateTime<FixedOffset>),
}

/// Why a replay failed. Each message says what to do.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Kafka(#[from] KafkaSetupError),
    #[error("Kafka {what} failed: {detail}")]
    KafkaRequest { what: String, detail: String },
    #[error("topic {0:?} does not exist on the broker")]
    UnknownTopic(String),
    #[error("topic {topic:?} has no partition {partition} (its partitions: {existing:?})")]
    UnknownPartition {
        topic: String,
        partition: i32,
        existing: Vec<i32>,
    },
    #[error("the scratch database must differ from the live database `{0}`")]
    ScratchIsLive(String),
    #[error("database `{0}` exists and was not made by `replay`; choose another --scratch-database (replay drops and recreates it)")]
    ScratchNotOurs(String),
    #[error("no reference data in database `{0}`: run `subsidy-ingester refdata load --firms F --outlets O --zones Z` first")]
    NoRefData(String),
    #[error("replay stalled: partition {partition} got no message for {} s at offset {next} (range ends before {end})", STALL_TIMEOUT.as_secs())]
    Stalled { partition: i32, next: i64, end: i64 },
    #[error("the replay consumer stopped: {0}")]
    Consumer(String),
}

/// One partition's range, `[start_offset, end_offset)`, and how many messages were read.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PartitionRange {
    pub partition: i32,
    pub start_offset: i64,
    /// Exclusive.
    pub end_offset: i64,
    pub messages_replayed: u64,
}

impl PartitionRange {
    fn contains(&self, offset: u64) -> bool {
        let offset = offset.min(i64::MAX as u64) as i64;
        self.start_offset <= offset && offset < self.end_offset
    }

    fn is_empty(&self) -> bool {
        self.start_offset >= self.end_offset
    }
}

/// The reference-data snapshots (`load_id` per kind; 0 = none) copied from live.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct RefDataLoads {
    pub firms: u64,
    pub outlets: u64,
    pub zones: u64,
}

/// One message's outcome on one side.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum MessageOutcome {
    /// A paid unit.
    Accepted {
        program: String,
        unit_key: String,
        recipient_id: String,
        district_code: String,
        local_date: NaiveDate,
        /// Yuan, exact.
        amount: Decimal,
    },
    /// A rejection with its reason code.
    Rejected { reason: String, detail: String },
    /// No outcome stored for the message (live has not processed it yet, or the replay
    /// could not read it).
    Absent,
}

impl MessageOutcome {
    /// `accepted`, the reason code, or `absent`.
    pub fn label(&self) -> &str {
        match self {
            MessageOutcome::Accepted { .. } => "accepted",
            MessageOutcome::Rejected { reason, .. } => reason,
            MessageOutcome::Absent => "absent",
        }
    }

    /// Returns true if and only if the two outcomes differ in what counts (rejection
    /// details do not).
    pub fn differs_from(&self, other: &MessageOutcome) -> bool {
        match (self, other) {
            (
                MessageOutcome::Rejected { reason: a, .. },
                MessageOutcome::Rejected { reason: b, .. },
            ) => a != b,
            _ => self != other,
        }
    }

    fn describe(&self) -> String {
        match self {
            MessageOutcome::Accepted {
                program,
                unit_key,
                recipient_id,
                district_code,
                local_date,
                amount,
            } => format!(
                "accepted {program} {unit_key} → {recipient_id}, {district_code}, {local_date}, {amount:.2}"
            ),
            MessageOutcome::Rejected { reason, detail } => format!("{reason}: {detail}"),
            MessageOutcome::Absent => "absent (no outcome stored)".to_string(),
        }
    }
}

/// A message whose outcome differs.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ChangedMessage {
    /// `topic/partition/offset`.
    pub source: String,
    pub partition: i32,
    pub offset: i64,
    pub event_id: String,
    pub live: MessageOutcome,
    pub replay: MessageOutcome,
}

/// Messages per outcome on each side.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct OutcomeCount {
    /// `accepted`, a reason code, or `absent`.
    pub outcome: String,
    pub live: u64,
    pub replay: u64,
}

/// One (month, program, recipient, district) cell whose units or nominal amount differ.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct NominalDifference {
    /// First day of the local month.
    pub month: NaiveDate,
    pub program: String,
    pub recipient_id: String,
    pub district_code: String,
    pub live_units: u64,
    pub replay_units: u64,
    pub live_nominal: Decimal,
    pub replay_nominal: Decimal,
    /// `replay_nominal − live_nominal`.
    pub delta: Decimal,
}

/// The dry-run result.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ReplayReport {
    pub topic: String,
    pub live_database: String,
    pub scratch_database: String,
    pub scratch_kept: bool,
    /// The live reference data the replay used.
    pub reference_data: RefDataLoads,
    pub partitions: Vec<PartitionRange>,
    pub messages_replayed: u64,
    /// Live units (distinct unit keys) paid outside the range: the dedup index's start.
    pub units_seeded: u64,
    /// Sources of the range with an outcome on either side.
    pub messages_compared: u64,
    /// Sources of the range with an outcome in live.
    pub messages_in_live: u64,
    /// Sources whose outcome differs (including those absent on one side).
    pub messages_changed: u64,
    /// Sources of the range live has no outcome for (not processed yet).
    pub messages_not_in_live: u64,
    /// Sources live has an outcome for that the replay did not read.
    pub messages_not_replayed: u64,
    /// The first [`EXAMPLES_MAX`] changed messages, in (partition, offset) order.
    pub changed_examples: Vec<ChangedMessage>,
    pub outcomes: Vec<OutcomeCount>,
    /// Nominal (caps not applied) of the range's accepted units, yuan.
    pub nominal_live: Decimal,
    pub nominal_replay: Decimal,
    pub nominal_delta: Decimal,
    /// Every cell whose units or nominal differ, by month, program, recipient, district.
    pub nominal_differences: Vec<NominalDifference>,
}

/// Runs the replay and the comparison; see the module documentation.
pub async fn replay(settings: &ReplaySettings) -> Result<ReplayReport, ReplayError> {
    if settings.scratch_database == settings.live.database {
        return Err(ReplayError::ScratchIsLive(settings.live.database.clone()));
    }
    if RESERVED_DATABASES
        .iter()
        .any(|r| r.eq_ignore_ascii_case(&settings.scratch_database))
    {
        return Err(ReplayError::ScratchNotOurs(
            settings.scratch_database.clone(),
        ));
    }
    let live = Store::connect(&settings.live).await?;
    migrate::ensure_migrated(&live, &settings.editions).await?;
    settings.kafka.check_reachable(KAFKA_REQUEST_TIMEOUT)?;
    let consumer = replay_consumer(&settings.kafka)?;
    let ranges = resolve_ranges(&consumer, settings)?;
    tracing::info!(message = "Replay range resolved.", topic = %settings.topic, ranges = ?ranges);

    let scratch_config = StoreConfig {
        database: settings.scratch_database.clone(),
        ..settings.live.clone()
    };
    let scratch = Store::connect(&scratch_config).await?;
    recreate_scratch(&scratch, &live, &settings.topic, &settings.editions).await?;
    let result = replay_into(settings, &live, &scratch, consumer, ranges).await;
    if !settings.keep_scratch {
        let drop = format!("DROP DATABASE IF EXISTS {}", scratch.database());
        if let Err(error) = scratch.execute(&drop).await {
            tracing::warn!(message = "Could not drop the scratch database.", database = scratch.database(), %error);
        }
    }
    result
}

async fn replay_into(
    settings: &ReplaySettings,
    live: &Store,
    scratch: &Store,
    consumer: ReplayConsumer,
    mut ranges: Vec<PartitionRange>,
) -> Result<ReplayReport, ReplayError> {
    let (refdata, loads) = copy_refdata(live, scratch).await?;
    let (index, units_seeded, range_units) = seed_index(live, &settings.topic, &ranges).await?;
    tracing::info!(
        message = "Replaying.",
        units_seeded,
        firms = refdata.firms.len(),
        outlets = refdata.outlets.len(),
        zones = refdata.zones.len()
    );
    let processor = Processor::new(
        refdata,
        settings.editions.clone(),
        crate::route::UNITS_PARTITIONS_DEFAULT,
    );
    let ledger = ReplayLedger::new(index);
    let handle = tokio::runtime::Handle::current();
    let loop_scratch = scratch.clone();
    let topic = settings.topic.clone();
    let loop_ranges = ranges.clone();
    let replayed = tokio::task::spawn_blocking(move || {
        consume(
            &consumer,
            &topic,
            &loop_ranges,
            (processor, ledger),
            range_units,
            &loop_scratch,
            &handle,
        )
    })
    .await
    .map_err(|e| ReplayError::Consumer(e.to_string()))??;
    for range in &mut ranges {
        range.messages_replayed = replayed.get(&range.partition).copied().unwrap_or(0);
    }
    let mut report = compare(live, scratch, &settings.topic, &ranges).await?;
    report.scratch_kept = settings.keep_scratch;
    report.reference_data = loads;
    report.units_seeded = units_seeded;
    report.messages_replayed = ranges.iter().map(|r| r.messages_replayed).sum();
    report.partitions = ranges;
    Ok(report)
}

/// The replay consumers' context: end-of-partition is expected, not an error to log.
struct ReplayContext;

impl rdkafka::client::ClientContext for ReplayContext {
    fn error(&self, error: KafkaError, reason: &str) {
        if matches!(
            error,
            KafkaError::Global(rdkafka::error::RDKafkaErrorCode::PartitionEOF)
        ) {
            return;
        }
        tracing::warn!(message = "Kafka client error.", %error, reason);
    }
}

impl rdkafka::consumer::ConsumerContext for ReplayContext {}

type ReplayConsumer = BaseConsumer<ReplayContext>;

/// A consumer that is only ever assigned partitions: it joins no group, commits nothing,
/// and reports the end of a partition (so a range whose last offsets hold no message — a
/// transaction marker, a compacted record — still completes).
fn replay_consumer(kafka: &KafkaConfig) -> Result<ReplayConsumer, ReplayError> {
    let millis = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    kafka
        .properties
        .apply(
            ClientConfig::new()
                .set("bootstrap.servers", &kafka.brokers)
                // librdkafka wants a group id for a consumer; with `assign` and no commits the
                // group is never joined nor written.
                .set("group.id", format!("subsidy-ingester-replay-{millis}"))
                .set("enable.auto.commit", "false")
                .set("enable.auto.offset.store", "false")
                .set("enable.partition.eof", "true")
                .set("auto.offset.reset", "earliest")
                .set("queued.max.messages.kbytes", "32768")
                .set("fetch.max.bytes", "16777216")
                .set("fetch.queue.backoff.ms", "20"),
        )
        .create_with_context(ReplayContext)
        .map_err(|source| {
            ReplayError::Kafka(KafkaSetupError::Client {
                client: "replay consumer",
                source,
            })
        })
}

fn kafka_request(what: impl Into<String>) -> impl FnOnce(KafkaError) -> ReplayError {
    let what = what.into();
    move |error| ReplayError::KafkaRequest {
        what,
        detail: error.to_string(),
    }
}

/// The `[start, end)` of every partition to replay (empty ranges included).
fn resolve_ranges(
    consumer: &ReplayConsumer,
    settings: &ReplaySettings,
) -> Result<Vec<PartitionRange>, ReplayError> {
    let topic = settings.topic.as_str();
    let metadata = consumer
        .fetch_metadata(Some(topic), KAFKA_REQUEST_TIMEOUT)
        .map_err(kafka_request(format!("metadata of {topic}")))?;
    let existing: Vec<i32> = match metadata.topics().iter().find(|t| t.name() == topic) {
        Some(t) if t.error().is_none() && !t.partitions().is_empty() => {
            let mut ids: Vec<i32> = t.partitions().iter().map(|p| p.id()).collect();
            ids.sort_unstable();
            ids
        }
        _ => return Err(ReplayError::UnknownTopic(topic.to_string())),
    };
    let partitions = match &settings.partitions {
        None => existing.clone(),
        Some(wanted) => {
            let mut wanted = wanted.clone();
            wanted.sort_unstable();
            wanted.dedup();
            if let Some(&missing) = wanted.iter().find(|p| !existing.contains(p)) {
                return Err(ReplayError::UnknownPartition {
                    topic: topic.to_string(),
                    partition: missing,
                    existing,
                });
            }
            wanted
        }
    };
    let mut listed = HashMap::new();
    for &partition in &partitions {
        let marks = consumer
            .fetch_watermarks(topic, partition, KAFKA_REQUEST_TIMEOUT)
            .map_err(kafka_request(format!("watermarks of {topic}/{partition}")))?;
        listed.insert(partition, marks);
    }
    // The listed high watermark is checked by reading on from it to the end of the
    // partition: some Kafka-compatible brokers (Tansu) list the last record batch's start.
    let from: HashMap<i32, i64> = listed.iter().map(|(p, (_, high))| (*p, *high)).collect();
    let tails = scan(&settings.kafka, topic, &from, |_| false)?;
    let watermarks: HashMap<i32, (i64, i64)> = listed
        .iter()
        .map(|(p, (low, high))| (*p, (*low, (*high).max(tails[p].next))))
        .collect();
    for (partition, (_, high)) in &watermarks {
        if *high > listed[partition].1 {
            tracing::info!(message = "The broker listed a high watermark short of the partition's end; using the end.", partition, listed = listed[partition].1, end = high);
        }
    }
    let start_by_time = match settings.start {
        ReplayStart::Time(t) => Some(offsets_for_time(
            &settings.kafka,
            consumer,
            topic,
            &watermarks,
            t,
        )?),
        ReplayStart::Offset(_) => None,
    };
    let end_by_time = match settings.end {
        Some(ReplayEnd::Time(t)) => Some(offsets_for_time(
            &settings.kafka,
            consumer,
            topic,
            &watermarks,
            t,
        )?),
        _ => None,
    };
    Ok(partitions
        .iter()
        .map(|&partition| {
            let (low, high) = watermarks[&partition];
            let start = match (settings.start, &start_by_time) {
                (ReplayStart::Offset(o), _) => o.clamp(low, high),
                (ReplayStart::Time(_), Some(found)) => found[&partition],
                (ReplayStart::Time(_), None) => unreachable!("resolved above"),
            };
            let end = match (settings.end, &end_by_time) {
                (None, _) => high,
                (Some(ReplayEnd::Offset(o)), _) => o.min(high),
                (Some(ReplayEnd::Time(_)), Some(found)) => found[&partition],
                (Some(ReplayEnd::Time(_)), None) => unreachable!("resolved above"),
            };
            PartitionRange {
                partition,
                start_offset: start,
                end_offset: end.max(start),
                messages_replayed: 0,
            }
        })
        .collect())
}

/// Per partition, the first offset whose message timestamp is at or after `time`; the
/// high watermark when no message is that late.
fn offsets_for_time(
    kafka: &KafkaConfig,
    consumer: &ReplayConsumer,
    topic: &str,
    watermarks: &HashMap<i32, (i64, i64)>,
    time: DateTime<FixedOffset>,
) -> Result<HashMap<i32, i64>, ReplayError> {
    let mut request = TopicPartitionList::new();
    for &partition in watermarks.keys() {
        request
            .add_partition_offset(topic, partition, Offset::Offset(time.timestamp_millis()))
            .map_err(kafka_request("offsets for times"))?;
    }
    let answer = consumer
        .offsets_for_times(request, KAFKA_REQUEST_TIMEOUT)
        .map_err(kafka_request(format!("offsets for time {time} in {topic}")))?;
    let mut found = HashMap::new();
    for element in answer.elements_for_topic(topic) {
        let partition = element.partition();
        let (low, high) = watermarks[&partition];
        if let Err(error) = element.error() {
            return Err(kafka_request(format!(
                "offset for time {time} in {topic}/{partition}"
            ))(error));
        }
        let offset = match element.offset() {
            Offset::Offset(o) => o.clamp(low, high),
            Offset::End => high,
            other => {
                return Err(ReplayError::KafkaRequest {
                    what: format!("offset for time {time} in {topic}/{partition}"),
                    detail: format!("unexpected answer {other:?}"),
                })
            }
        };
        found.insert(partition, offset);
    }
    if let Some(partition) = watermarks.keys().find(|p| !found.contains_key(p)) {
        return Err(ReplayError::KafkaRequest {
            what: format!("offset for time {time} in {topic}/{partition}"),
            detail: "no answer for the partition".into(),
        });
    }
    // Check the answers: the message there must be stamped at or after `time`. Some
    // Kafka-compatible brokers (Tansu) answer the start of a record batch, or of the
    // partition when no message is that late; read on to the first one that is.
    let from: HashMap<i32, i64> = found
        .iter()
        .filter(|(p, o)| **o < watermarks[*p].1)
        .map(|(p, o)| (*p, *o))
        .collect();
    let millis = time.timestamp_millis();
    let checked = scan(kafka, topic, &from, |message| {
        message
            .timestamp()
            .to_millis()
            .is_none_or(|ms| ms >= millis)
    })?;
    for (partition, scanned) in checked {
        let offset = scanned.stopped_at.unwrap_or(watermarks[&partition].1);
        if offset != found[&partition] {
            tracing::info!(message = "The broker's offset for a time was early; read on to the first message stamped at or after it.", %time, partition, answered = found[&partition], offset);
        }
        found.insert(partition, offset);
    }
    Ok(found)
}

/// Where a [`scan`] of one partition stopped.
struct Scanned {
    /// The offset of the first message `stop` accepted; `None` at the partition's end.
    stopped_at: Option<i64>,
    /// The offset after the last message read (the start when none was read).
    next: i64,
}

/// Reads each partition from its offset in `from` until `stop` accepts a message or the
/// partition ends (librdkafka's end-of-partition, from the fetch's high watermark).
/// Fails when a partition yields nothing for [`KAFKA_REQUEST_TIMEOUT`].
fn scan(
    kafka: &KafkaConfig,
    topic: &str,
    from: &HashMap<i32, i64>,
    stop: impl Fn(&rdkafka::message::BorrowedMessage<'_>) -> bool,
) -> Result<HashMap<i32, Scanned>, ReplayError> {
    let mut open: HashMap<i32, i64> = from.clone();
    let mut done: HashMap<i32, Scanned> = HashMap::new();
    if open.is_empty() {
        return Ok(done);
    }
    let reader = replay_consumer(kafka)?;
    let mut assignment = TopicPartitionList::new();
    for (&partition, &offset) in &open {
        assignment
            .add_partition_offset(topic, partition, Offset::Offset(offset))
            .map_err(kafka_request("assign"))?;
    }
    reader
        .assign(&assignment)
        .map_err(kafka_request(format!("assign {topic}")))?;
    let mut last_progress = Instant::now();
    while !open.is_empty() {
        match reader.poll(Duration::from_millis(100)) {
            Some(Ok(message)) => {
                let partition = message.partition();
                let Some(next) = open.get_mut(&partition) else {
                    continue;
                };
                last_progress = Instant::now();
                if message.offset() < *next {
                    continue;
                }
                *next = message.offset() + 1;
                if stop(&message) {
                    open.remove(&partition);
                    let scanned = Scanned {
                        stopped_at: Some(message.offset()),
                        next: message.offset() + 1,
                    };
                    done.insert(partition, scanned);
                }
            }
            Some(Err(KafkaError::PartitionEOF(partition))) => {
                if let Some(next) = open.remove(&partition) {
                    let scanned = Scanned {
                        stopped_at: None,
                        next,
                    };
                    done.insert(partition, scanned);
                }
            }
            Some(Err(error)) => {
                tracing::warn!(message = "Kafka consumer error while reading ahead.", %error);
            }
            None => {}
        }
        if !open.is_empty() && last_progress.elapsed() > KAFKA_REQUEST_TIMEOUT {
            let (partition, next) = open.iter().next().expect("an open partition");
            return Err(ReplayError::KafkaRequest {
                what: format!("reading {topic}/{partition} from offset {next}"),
                detail: format!("nothing within {} s", KAFKA_REQUEST_TIMEOUT.as_secs()),
            });
        }
    }
    Ok(done)
}

/// Drops (if it is ours or empty) and recreates the scratch database, migrated and marked.
async fn recreate_scratch(
    scratch: &Store,
    live: &Store,
    topic: &str,
    editions: &crate::edition::Editions,
) -> Result<(), ReplayError> {
    let name = escape_literal(scratch.database());
    let exists: u64 = scratch
        .fetch_one(&format!(
            "SELECT count() FROM system.databases WHERE name = '{name}'"
        ))
        .await?;
    if exists > 0 {
        let tables: Vec<String> = scratch
            .fetch_all(&format!(
                "SELECT name FROM system.tables WHERE database = '{name}'"
            ))
            .await?;
        if !tables.is_empty() && !tables.iter().any(|t| t == MARKER_TABLE) {
            return Err(ReplayError::ScratchNotOurs(scratch.database().to_string()));
        }
        scratch
            .execute(&scratch.sql("DROP DATABASE IF EXISTS {db}"))
            .await?;
    }
    migrate::migrate(scratch, editions).await?;
    scratch
        .execute(&scratch.sql(&format!(
            "CREATE TABLE IF NOT EXISTS {{db}}.{MARKER_TABLE} \
             (created_at DateTime, live_database String, topic String) ENGINE = TinyLog"
        )))
        .await?;
    scratch
        .execute(&scratch.sql(&format!(
            "INSERT INTO {{db}}.{MARKER_TABLE} VALUES (now(), '{}', '{}')",
            escape_literal(live.database()),
            escape_literal(topic)
        )))
        .await?;
    Ok(())
}

/// Copies live's current reference data into the scratch database; returns it and the
/// live snapshots it came from.
async fn copy_refdata(
    live: &Store,
    scratch: &Store,
) -> Result<(crate::refdata::RefData, RefDataLoads), ReplayError> {
    // Read the snapshot ids around the data so a concurrent `refdata load` cannot make
    // them disagree.
    let mut attempts = 0;
    let (refdata, loads) = loop {
        let before = current_loads(live).await?;
        let refdata = refdata_store::load_current(live).await?;
        let after = current_loads(live).await?;
        attempts += 1;
        if before == after || attempts == 3 {
            break (refdata, after);
        }
    };
    if refdata.firms.is_empty() && refdata.outlets.is_empty() && refdata.zones.is_empty() {
        return Err(ReplayError::NoRefData(live.database().to_string()));
    }
    let mut firms: Vec<Firm> = refdata.firms.values().cloned().collect();
    firms.sort_by(|a, b| a.firm_id.cmp(&b.firm_id));
    let mut outlets: Vec<Outlet> = refdata.outlets.values().cloned().collect();
    outlets.sort_by(|a, b| a.outlet_id.cmp(&b.outlet_id));
    let mut zones: Vec<Zone> = refdata.zones.values().cloned().collect();
    zones.sort_by(|a, b| a.zone_id.cmp(&b.zone_id));
    let label = |kind: &str, load: u64| format!("{}.{kind}_history load {load}", live.database());
    let (firm_label, outlet_label, zone_label) = (
        label("firms", loads.firms),
        label("outlets", loads.outlets),
        label("zones", loads.zones),
    );
    let load_id = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(1, |d| d.as_millis() as u64);
    refdata_store::save_snapshots(
        scratch,
        load_id,
        (!firms.is_empty()).then_some((firm_label.as_str(), firms.as_slice())),
        (!outlets.is_empty()).then_some((outlet_label.as_str(), outlets.as_slice())),
        (!zones.is_empty()).then_some((zone_label.as_str(), zones.as_slice())),
    )
    .await?;
    Ok((refdata, loads))
}

async fn current_loads(live: &Store) -> Result<RefDataLoads, StoreError> {
    let max = |table: &str| live.sql(&format!("SELECT max(load_id) FROM {{db}}.{table}"));
    Ok(RefDataLoads {
        firms: live.fetch_one(&max("firms_history")).await?,
        outlets: live.fetch_one(&max("outlets_history")).await?,
        zones: live.fetch_one(&max("zones_history")).await?,
    })
}

/// Live's unit of each key paid inside the range: key hash → its (partition, offset).
type RangeUnits = HashMap<u128, (i32, i64)>;

/// The dedup index of every live unit whose source is outside the range, with the number
/// of units in it, and live's units inside the range.
async fn seed_index(
    live: &Store,
    topic: &str,
    ranges: &[PartitionRange],
) -> Result<(UnitIndex, u64, RangeUnits), ReplayError> {
    let by_partition: HashMap<u32, &PartitionRange> =
        ranges.iter().map(|r| (r.partition as u32, r)).collect();
    let mut index = UnitIndex::new();
    let mut inside: RangeUnits = HashMap::new();
    for_each_stored_unit(live, |unit| {
        let Some(program) = Program::from_type(&unit.program) else {
            return;
        };
        let in_range = unit.topic == topic
            && by_partition
                .get(&unit.partition)
                .is_some_and(|r| r.contains(unit.offset));
        if in_range {
            // Should two sources hold the key (instances racing), the smallest is the unit.
            let source = (unit.partition as i32, unit.offset as i64);
            inside
                .entry(UnitIndex::key_hash(program, &unit.unit_key))
                .and_modify(|s| *s = (*s).min(source))
                .or_insert(source);
            return;
        }
        let source = SourceRef {
            topic: &unit.topic,
            partition: unit.partition,
            offset: unit.offset,
        };
        index.record_stored(program, &unit.unit_key, source);
    })
    .await?;
    let seeded = index.len() as u64;
    Ok((index, seeded, inside))
}

/// One partition's progress through its range.
struct Cursor {
    next: i64,
    end: i64,
    replayed: u64,
    done: bool,
}

/// A message held back, by its source.
struct Held {
    partition: i32,
    offset: i64,
    /// `None` for a tombstone.
    payload: Option<Vec<u8>>,
}

/// Processes the range's messages into batches.
///
/// Which of two messages with one unit key is paid depends on the order they are read in,
/// and across partitions that order is the broker's whim, in live as in replay. So that
/// an unchanged replay does not swap unit and duplicate between partitions, a message
/// whose key live paid to a message of the range in another partition waits until that
/// message is replayed: if it is still payable it is the unit again and the waiting one
/// its duplicate; if not, the waiting ones are decided in the order they arrived. (Within
/// a partition the earlier offset stays the unit, as in `run`.)
struct Replayer<'a> {
    topic: &'a str,
    processor: Processor,
    batch: Batch,
    range_units: RangeUnits,
    /// Held messages by the source of the live unit they wait for.
    held: BTreeMap<(i32, i64), Vec<Held>>,
    cursors: HashMap<i32, Cursor>,
}

impl Replayer<'_> {
    /// Takes one message of the range (in offset order within its partition): processes
    /// it, or holds it back, then processes what waited for it.
    fn take(&mut self, partition: i32, offset: i64, payload: Option<&[u8]>) {
        match self.unit_not_replayed_yet(partition, payload) {
            Some(unit) => self.held.entry(unit).or_default().push(Held {
                partition,
                offset,
                payload: payload.map(<[u8]>::to_vec),
            }),
            None => self.process(partition, offset, payload),
        }
        if let Some(cursor) = self.cursors.get_mut(&partition) {
            cursor.replayed += 1;
            cursor.next = offset + 1;
        }
        self.release(partition, offset);
    }

    /// The source of live's unit for this message's key, if that is another message of the
    /// range not replayed yet.
    fn unit_not_replayed_yet(&self, partition: i32, payload: Option<&[u8]>) -> Option<(i32, i64)> {
        if self.range_units.is_empty() {
            return None;
        }
        let event = crate::decode::decode(payload?).ok()?;
        let key = UnitIndex::key_hash(event.program(), &event.unit_key());
        let unit = *self.range_units.get(&key)?;
        // Within a partition the earlier offset is the unit, whatever live decided.
        if unit.0 == partition {
            return None;
        }
        let cursor = self.cursors.get(&unit.0)?;
        (!cursor.done && cursor.next <= unit.1).then_some(unit)
    }

    /// Processes the messages waiting for a unit at `partition`, offset `upto` or before.
    fn release(&mut self, partition: i32, upto: i64) {
        if self.held.is_empty() {
            return;
        }
        let sources: Vec<(i32, i64)> = self
            .held
            .range((partition, i64::MIN)..=(partition, upto))
            .map(|(source, _)| *source)
            .collect();
        for source in sources {
            for held in self.held.remove(&source).unwrap_or_default() {
                self.process(held.partition, held.offset, held.payload.as_deref());
            }
        }
    }

    /// Processes every held message (the range is read).
    fn release_all(&mut self) {
        for (_, waiting) in std::mem::take(&mut self.held) {
            for held in waiting {
                self.process(held.partition, held.offset, held.payload.as_deref());
            }
        }
    }

    /// Marks a partition's range read.
    fn finish(&mut self, partition: i32) {
        if let Some(cursor) = self.cursors.get_mut(&partition) {
            cursor.done = true;
        }
        self.release(partition, i64::MAX);
    }

    fn process(&mut self, partition: i32, offset: i64, payload: Option<&[u8]>) {
        let consumed = Consumed {
            topic: self.topic,
            partition,
            offset,
            payload,
            received_at_unix_s: now_unix_s(),
        };
        self.processor.process(consumed, &mut self.batch);
    }
}

/// Reads every range and inserts the outcome rows into the scratch database; returns the
/// messages read per partition. Runs on a blocking thread.
fn consume(
    consumer: &ReplayConsumer,
    topic: &str,
    ranges: &[PartitionRange],
    (processor, mut ledger): (Processor, ReplayLedger),
    range_units: RangeUnits,
    scratch: &Store,
    handle: &tokio::runtime::Handle,
) -> Result<HashMap<i32, u64>, ReplayError> {
    let limits = BatchLimits {
        rows_max: REPLAY_BATCH_ROWS,
        bytes_max: REPLAY_BATCH_BYTES,
        flush_interval: Duration::from_secs(3600),
    };
    let cursors: HashMap<i32, Cursor> = ranges
        .iter()
        .map(|r| {
            let cursor = Cursor {
                next: r.start_offset,
                end: r.end_offset,
                replayed: 0,
                done: r.is_empty(),
            };
            (r.partition, cursor)
        })
        .collect();
    let mut assignment = TopicPartitionList::new();
    for range in ranges.iter().filter(|r| !r.is_empty()) {
        assignment
            .add_partition_offset(topic, range.partition, Offset::Offset(range.start_offset))
            .map_err(kafka_request("assign"))?;
    }
    let mut pending = cursors.values().filter(|c| !c.done).count();
    if pending > 0 {
        consumer
            .assign(&assignment)
            .map_err(kafka_request(format!("assign {topic}")))?;
    }
    let pause = |partition: i32| {
        let mut one = TopicPartitionList::new();
        one.add_partition(topic, partition);
        let _ = consumer.pause(&one);
    };
    let mut replayer = Replayer {
        topic,
        processor,
        batch: Batch::with_capacity(1 << 20),
        range_units,
        held: BTreeMap::new(),
        cursors,
    };
    let mut last_progress = Instant::now();
    let total: i64 = ranges
        .iter()
        .map(|r| (r.end_offset - r.start_offset).max(0))
        .sum();
    let mut progress = crate::telemetry::progress::Progress::new(
        format!("replaying {topic}: messages"),
        Some(total as u64),
    );
    let mut seen = 0u64;
    while pending > 0 {
        match consumer.poll(Duration::from_millis(100)) {
            None => {}
            // The fetch reached the high watermark, which is at or past the end.
            Some(Err(KafkaError::PartitionEOF(partition)))
                if replayer.cursors.get(&partition).is_some_and(|c| !c.done) =>
            {
                replayer.finish(partition);
                pending -= 1;
                pause(partition);
            }
            Some(Err(KafkaError::PartitionEOF(_))) => {}
            Some(Err(error)) => {
                tracing::warn!(message = "Kafka consumer error during replay.", %error);
            }
            Some(Ok(message)) => {
                let (partition, offset) = (message.partition(), message.offset());
                let Some(cursor) = replayer.cursors.get(&partition).filter(|c| !c.done) else {
                    continue;
                };
                last_progress = Instant::now();
                if offset < cursor.next {
                    continue;
                }
                let end = cursor.end;
                if offset < end {
                    replayer.take(partition, offset, message.payload());
                    seen += 1;
                    if seen.is_multiple_of(4096) {
                        progress.set(seen);
                    }
                }
                if offset + 1 >= end {
                    replayer.finish(partition);
                    pending -= 1;
                    pause(partition);
                }
            }
        }
        if replayer.batch.is_full(&limits) {
            insert(&mut replayer.batch, &mut ledger, scratch, handle)?;
            last_progress = Instant::now();
        }
        if pending > 0 && last_progress.elapsed() > STALL_TIMEOUT {
            let (&partition, cursor) = replayer
                .cursors
                .iter()
                .find(|(_, c)| !c.done)
                .expect("a pending partition");
            return Err(ReplayError::Stalled {
                partition,
                next: cursor.next,
                end: cursor.end,
            });
        }
    }
    progress.set(seen);
    progress.finish();
    replayer.release_all();
    insert(&mut replayer.batch, &mut ledger, scratch, handle)?;
    let _ = consumer.unassign();
    Ok(replayer
        .cursors
        .into_iter()
        .map(|(partition, c)| (partition, c.replayed))
        .collect())
}

/// The ledger stage of a replay, in-process: the same decision as `run`'s owners make
/// ([`crate::ledger::decide`]), over an in-memory index seeded from live, in the order the
/// admit stage routed the units.
struct ReplayLedger {
    index: UnitIndex,
    /// Next scratch units-topic offset per owner partition.
    next_offsets: HashMap<i32, u64>,
}

impl ReplayLedger {
    fn new(index: UnitIndex) -> ReplayLedger {
        ReplayLedger {
            index,
            next_offsets: HashMap::new(),
        }
    }

    /// Decides the batch's routed units into encoded `unit_decisions` rows.
    fn decide_all(&mut self, batch: &Batch) -> Vec<u8> {
        let mut rows = RowBinaryWriter::default();
        for (partition, record) in batch.routed_units() {
            let source = SourceRef {
                topic: record.source_topic,
                partition: record.source_partition,
                offset: record.source_offset,
            };
            let seen = self
                .index
                .check_and_record(record.program(), record.unit_key, source);
            let next = self.next_offsets.entry(partition).or_insert(0);
            let offset = *next;
            *next += 1;
            decide_into(
                record,
                seen,
                partition as u32,
                offset,
                0,
                now_unix_s(),
                &mut rows,
            );
        }
        rows.into_inner()
    }
}

/// Inserts the batch's rows into the scratch `outcomes`, then its units' decisions into
/// the scratch `unit_decisions` (dead letters are dropped).
fn insert(
    batch: &mut Batch,
    ledger: &mut ReplayLedger,
    scratch: &Store,
    handle: &tokio::runtime::Handle,
) -> Result<(), ReplayError> {
    if batch.is_empty() {
        return Ok(());
    }
    let mut full = std::mem::replace(batch, Batch::with_capacity(1 << 20));
    full.finish_units();
    let decisions = ledger.decide_all(&full);
    let rows = bytes::Bytes::from(full.take_rows());
    handle.block_on(insert_outcomes(scratch, rows))?;
    if !decisions.is_empty() {
        handle.block_on(insert_decisions(scratch, bytes::Bytes::from(decisions)))?;
    }
    Ok(())
}

fn now_unix_s() -> u32 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs().min(u64::from(u32::MAX)) as u32)
}

/// One source's stored outcome, as the views see it (see [`source_outcomes_sql`]).
#[derive(Debug, Clone, clickhouse::Row, serde::Deserialize)]
struct SourceRow {
    partition: u32,
    offset: u64,
    message_event_id: String,
    accepted_rows: u64,
    rejected_reason: String,
    rejected_detail: String,
    key_program: String,
    key_unit: String,
    unit_recipient_id: String,
    unit_district_code: String,
    unit_local_date: u16,
    unit_amount_fen: i64,
    winner_topic: String,
    winner_partition: u32,
    winner_offset: u64,
}

impl SourceRow {
    /// The outcome the views give this source: accepted if it is the smallest source of
    /// its unit key among accepted rows (`ledger`), a duplicate if an earlier source holds
    /// the key, else its rejection (`rejected_events`).
    fn outcome(&self, topic: &str) -> MessageOutcome {
        if self.accepted_rows == 0 {
            return MessageOutcome::Rejected {
                reason: self.rejected_reason.clone(),
                detail: self.rejected_detail.clone(),
            };
        }
        let is_winner = self.winner_topic.is_empty()
            || (self.winner_topic == topic
                && self.winner_partition == self.partition
                && self.winner_offset == self.offset);
        if !is_winner {
            return MessageOutcome::Rejected {
                reason: Reason::Duplicate.as_str().to_string(),
                detail: format!(
                    "unit already paid: first recorded at {}/{}/{}",
                    self.winner_topic, self.winner_partition, self.winner_offset
                ),
            };
        }
        MessageOutcome::Accepted {
            program: self.key_program.clone(),
            unit_key: self.key_unit.clone(),
            recipient_id: self.unit_recipient_id.clone(),
            district_code: self.unit_district_code.clone(),
            local_date: date_from_days(self.unit_local_date),
            amount: Decimal::new(self.unit_amount_fen, 2),
        }
    }
}

/// The outcome of every source of the ranges in `{db}`, sorted by (partition, offset):
/// one row per source, with the smallest source among accepted rows of its unit key in
/// the whole table (the `ledger` winner). Runs on ClickHouse 18.16: one JOIN, tuples.
fn source_outcomes_sql(topic: &str, ranges: &[PartitionRange]) -> String {
    let topic = escape_literal(topic);
    let in_range = ranges
        .iter()
        .filter(|r| !r.is_empty())
        .map(|r| {
            format!(
                "(`partition` = {} AND `offset` >= {} AND `offset` < {})",
                r.partition, r.start_offset, r.end_offset
            )
        })
        .collect::<Vec<_>>()
        .join(" OR ");
    format!(
        "SELECT `partition`, `offset`, message_event_id, accepted_rows, rejected_reason, rejected_detail, \
                key_program, key_unit, unit_recipient_id, unit_district_code, unit_local_date, unit_amount_fen, \
                winner_topic, winner_partition, winner_offset \
         FROM \
         ( \
             SELECT `partition`, `offset`, \
                    any(event_id) AS message_event_id, \
                    countIf(reason = '') AS accepted_rows, \
                    anyIf(reason, reason != '') AS rejected_reason, \
                    anyIf(detail, reason != '') AS rejected_detail, \
                    anyIf(program, reason = '') AS key_program, \
                    anyIf(unit_key, reason = '') AS key_unit, \
                    anyIf(recipient_id, reason = '') AS unit_recipient_id, \
                    anyIf(district_code, reason = '') AS unit_district_code, \
                    anyIf(local_date, reason = '') AS unit_local_date, \
                    anyIf(amount_fen, reason = '') AS unit_amount_fen \
             FROM \
             ( \
                 SELECT `partition`, `offset`, event_id, reason, detail, program, unit_key, recipient_id, district_code, local_date, amount_fen \
                 FROM {{db}}.outcomes WHERE topic = '{topic}' AND ({in_range}) AND reason != '' \
                 UNION ALL \
                 SELECT `partition`, `offset`, event_id, reason, detail, program, unit_key, recipient_id, district_code, local_date, amount_fen \
                 FROM {{db}}.unit_decisions WHERE topic = '{topic}' AND ({in_range}) \
             ) \
             GROUP BY `partition`, `offset` \
         ) AS sources \
         ANY LEFT JOIN \
         ( \
             SELECT key_program, key_unit, winner.1 AS winner_topic, winner.2 AS winner_partition, winner.3 AS winner_offset \
             FROM \
             ( \
                 SELECT program AS key_program, unit_key AS key_unit, min((topic, `partition`, `offset`)) AS winner \
                 FROM {{db}}.unit_decisions \
                 WHERE reason = '' AND (program, unit_key) IN \
                     (SELECT program, unit_key FROM {{db}}.unit_decisions WHERE reason = '' AND topic = '{topic}' AND ({in_range})) \
                 GROUP BY program, unit_key \
             ) \
         ) AS winners USING (key_program, key_unit) \
         ORDER BY `partition`, `offset`"
    )
}

/// A sorted stream of one side's source outcomes.
struct Side<'a> {
    store: &'a Store,
    statement: String,
    cursor: clickhouse::query::RowCursor<SourceRow>,
}

impl<'a> Side<'a> {
    fn open(store: &'a Store, template: &str) -> Result<Side<'a>, StoreError> {
        let statement = store.sql(template);
        let cursor = store
            .client()
            .query(&statement)
            .fetch::<SourceRow>()
            .map_err(|e| store.classify(&statement, e))?;
        Ok(Side {
            store,
            statement,
            cursor,
        })
    }

    async fn next(&mut self) -> Result<Option<SourceRow>, StoreError> {
        self.store
            .bounded(&self.statement, self.cursor.next())
            .await
    }
}

/// Units and nominal fen of one money cell, live and replay.
#[derive(Default)]
struct Cell {
    live_units: u64,
    live_fen: i64,
    replay_units: u64,
    replay_fen: i64,
}

/// Compares live and scratch outcomes of the ranges' sources.
async fn compare(
    live: &Store,
    scratch: &Store,
    topic: &str,
    ranges: &[PartitionRange],
) -> Result<ReplayReport, ReplayError> {
    let mut report = ReplayReport {
        topic: topic.to_string(),
        live_database: live.database().to_string(),
        scratch_database: scratch.database().to_string(),
        scratch_kept: false,
        reference_data: RefDataLoads::default(),
        partitions: Vec::new(),
        messages_replayed: 0,
        units_seeded: 0,
        messages_compared: 0,
        messages_in_live: 0,
        messages_changed: 0,
        messages_not_in_live: 0,
        messages_not_replayed: 0,
        changed_examples: Vec::new(),
        outcomes: Vec::new(),
        nominal_live: Decimal::new(0, 2),
        nominal_replay: Decimal::new(0, 2),
        nominal_delta: Decimal::new(0, 2),
        nominal_differences: Vec::new(),
    };
    let mut counts: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    let mut cells: BTreeMap<(NaiveDate, String, String, String), Cell> = BTreeMap::new();
    if ranges.iter().all(PartitionRange::is_empty) {
        return Ok(report);
    }
    let template = source_outcomes_sql(topic, ranges);
    let mut live_side = Side::open(live, &template)?;
    let mut replay_side = Side::open(scratch, &template)?;
    let mut live_row = live_side.next().await?;
    let mut replay_row = replay_side.next().await?;
    loop {
        let key = |row: &Option<SourceRow>| row.as_ref().map(|r| (r.partition, r.offset));
        let (live_key, replay_key) = (key(&live_row), key(&replay_row));
        let (source, take_live, take_replay) = match (live_key, replay_key) {
            (None, None) => break,
            (Some(l), None) => (l, true, false),
            (None, Some(r)) => (r, false, true),
            (Some(l), Some(r)) => (l.min(r), l <= r, r <= l),
        };
        let mut event_id = String::new();
        let live_outcome = if take_live {
            let row = live_row.take().expect("live row");
            event_id.clone_from(&row.message_event_id);
            live_row = live_side.next().await?;
            row.outcome(topic)
        } else {
            MessageOutcome::Absent
        };
        let replay_outcome = if take_replay {
            let row = replay_row.take().expect("replay row");
            if event_id.is_empty() {
                event_id.clone_from(&row.message_event_id);
            }
            replay_row = replay_side.next().await?;
            row.outcome(topic)
        } else {
            MessageOutcome::Absent
        };
        report.messages_compared += 1;
        match (&live_outcome, &replay_outcome) {
            (MessageOutcome::Absent, _) => report.messages_not_in_live += 1,
            (_, MessageOutcome::Absent) => {
                report.messages_in_live += 1;
                report.messages_not_replayed += 1;
            }
            _ => report.messages_in_live += 1,
        }
        for (outcome, is_live) in [(&live_outcome, true), (&replay_outcome, false)] {
            if *outcome == MessageOutcome::Absent {
                continue;
            }
            let count = counts.entry(outcome.label().to_string()).or_default();
            if is_live {
                count.0 += 1;
            } else {
                count.1 += 1;
            }
            if let MessageOutcome::Accepted {
                program,
                recipient_id,
                district_code,
                local_date,
                amount,
                ..
            } = outcome
            {
                let month = local_date.with_day(1).unwrap_or(*local_date);
                let cell = cells
                    .entry((
                        month,
                        program.clone(),
                        recipient_id.clone(),
                        district_code.clone(),
                    ))
                    .or_default();
                let fen = (amount * Decimal::ONE_HUNDRED)
                    .trunc()
                    .try_into()
                    .unwrap_or(i64::MAX);
                if is_live {
                    cell.live_units += 1;
                    cell.live_fen += fen;
                } else {
                    cell.replay_units += 1;
                    cell.replay_fen += fen;
                }
            }
        }
        if live_outcome.differs_from(&replay_outcome) {
            report.messages_changed += 1;
            if report.changed_examples.len() < EXAMPLES_MAX {
                report.changed_examples.push(ChangedMessage {
                    source: format!("{topic}/{}/{}", source.0, source.1),
                    partition: source.0 as i32,
                    offset: source.1 as i64,
                    event_id,
                    live: live_outcome,
                    replay: replay_outcome,
                });
            }
        }
    }
    report.outcomes = ordered_counts(counts);
    let (mut live_fen, mut replay_fen) = (0i64, 0i64);
    for ((month, program, recipient_id, district_code), cell) in cells {
        live_fen += cell.live_fen;
        replay_fen += cell.replay_fen;
        if cell.live_units != cell.replay_units || cell.live_fen != cell.replay_fen {
            report.nominal_differences.push(NominalDifference {
                month,
                program,
                recipient_id,
                district_code,
                live_units: cell.live_units,
                replay_units: cell.replay_units,
                live_nominal: Decimal::new(cell.live_fen, 2),
                replay_nominal: Decimal::new(cell.replay_fen, 2),
                delta: Decimal::new(cell.replay_fen - cell.live_fen, 2),
            });
        }
    }
    report.nominal_live = Decimal::new(live_fen, 2);
    report.nominal_replay = Decimal::new(replay_fen, 2);
    report.nominal_delta = Decimal::new(replay_fen - live_fen, 2);
    Ok(report)
}

/// `accepted` first, then the reasons in SPEC order, then anything else by name.
fn ordered_counts(mut counts: BTreeMap<String, (u64, u64)>) -> Vec<OutcomeCount> {
    let mut out = Vec::new();
    let order = std::iter::once("accepted").chain(Reason::ALL.iter().map(|r| r.as_str()));
    for name in order {
        if let Some((live, replay)) = counts.remove(name) {
            out.push(OutcomeCount {
                outcome: name.to_string(),
                live,
                replay,
            });
        }
    }
    out.extend(
        counts
            .into_iter()
            .map(|(outcome, (live, replay))| OutcomeCount {
                outcome,
                live,
                replay,
            }),
    );
    out
}

fn signed(value: Decimal) -> String {
    if value > Decimal::ZERO {
        format!("+{value:.2}")
    } else {
        format!("{value:.2}")
    }
}

fn signed_count(live: u64, replay: u64) -> String {
    match replay.cmp(&live) {
        std::cmp::Ordering::Greater => format!("+{}", replay - live),
        std::cmp::Ordering::Less => format!("-{}", live - replay),
        std::cmp::Ordering::Equal => "0".to_string(),
    }
}

/// Left-aligns the first `text_columns` columns and right-aligns the rest.
fn aligned(rows: &[Vec<String>], text_columns: usize, out: &mut String) {
    let mut widths = vec![0usize; rows.first().map_or(0, Vec::len)];
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    for row in rows {
        let cells: Vec<String> = row
            .iter()
            .zip(&widths)
            .enumerate()
            .map(|(i, (cell, w))| {
                if i < text_columns {
                    format!("{cell:<w$}")
                } else {
                    format!("{cell:>w$}")
                }
            })
            .collect();
        let _ = writeln!(out, "  {}", cells.join("  ").trim_end());
    }
}

/// The report as people read it.
pub fn render(report: &ReplayReport) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "replay of {} from live database {} into scratch database {} ({})",
        report.topic,
        report.live_database,
        report.scratch_database,
        if report.scratch_kept {
            "kept"
        } else {
            "dropped"
        }
    );
    let loads = report.reference_data;
    let _ = writeln!(
        out,
        "reference data: live snapshots firms {}, outlets {}, zones {}",
        loads.firms, loads.outlets, loads.zones
    );
    let mut rows = vec![vec![
        "partition".to_string(),
        "from offset".to_string(),
        "to offset (excl.)".to_string(),
        "replayed".to_string(),
    ]];
    rows.extend(report.partitions.iter().map(|r| {
        vec![
            r.partition.to_string(),
            r.start_offset.to_string(),
            r.end_offset.to_string(),
            r.messages_replayed.to_string(),
        ]
    }));
    aligned(&rows, 0, &mut out);
    let _ = writeln!(
        out,
        "messages: {} replayed, {} with a live outcome, {} not processed by live yet, {} with a live outcome but not replayed; {} live units outside the range seeded the dedup index",
        report.messages_replayed,
        report.messages_in_live,
        report.messages_not_in_live,
        report.messages_not_replayed,
        report.units_seeded
    );
    let _ = writeln!(
        out,
        "\nchanged outcomes: {} of {} messages",
        report.messages_changed, report.messages_compared
    );
    for change in &report.changed_examples {
        let event = if change.event_id.is_empty() {
            String::new()
        } else {
            format!(" (event {})", change.event_id)
        };
        let _ = writeln!(out, "  {}{event}", change.source);
        let _ = writeln!(out, "    live:   {}", change.live.describe());
        let _ = writeln!(out, "    replay: {}", change.replay.describe());
    }
    if report.messages_changed > report.changed_examples.len() as u64 {
        let _ = writeln!(
            out,
            "  … and {} more (the scratch database, kept with --keep-scratch, has them all)",
            report.messages_changed - report.changed_examples.len() as u64
        );
    }
    let _ = writeln!(out, "\noutcomes by reason:");
    let mut rows = vec![vec![
        "outcome".to_string(),
        "live".to_string(),
        "replay".to_string(),
        "change".to_string(),
    ]];
    rows.extend(report.outcomes.iter().map(|c| {
        vec![
            c.outcome.clone(),
            c.live.to_string(),
            c.replay.to_string(),
            signed_count(c.live, c.replay),
        ]
    }));
    aligned(&rows, 1, &mut out);
    let _ = writeln!(
        out,
        "\nnominal of these messages' units (yuan, caps not applied): live {:.2}, replay {:.2}, delta {}",
        report.nominal_live,
        report.nominal_replay,
        signed(report.nominal_delta)
    );
    if report.nominal_differences.is_empty() {
        let _ = writeln!(out, "no monetary difference");
        return out;
    }
    let mut rows = vec![[
        "month",
        "program",
        "recipient_id",
        "district",
        "live units",
        "replay units",
        "live",
        "replay",
        "delta",
    ]
    .map(str::to_string)
    .to_vec()];
    rows.extend(
        report
            .nominal_differences
            .iter()
            .take(RENDERED_CELLS_MAX)
            .map(|d| {
                vec![
                    d.month.to_string(),
                    d.program.clone(),
                    d.recipient_id.clone(),
                    d.district_code.clone(),
                    d.live_units.to_string(),
                    d.replay_units.to_string(),
                    format!("{:.2}", d.live_nominal),
                    format!("{:.2}", d.replay_nominal),
                    signed(d.delta),
                ]
            }),
    );
    aligned(&rows, 4, &mut out);
    if report.nominal_differences.len() > RENDERED_CELLS_MAX {
        let _ = writeln!(
            out,
            "  … and {} more cells (--json lists them all)",
            report.nominal_differences.len() - RENDERED_CELLS_MAX
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accepted(recipient: &str, fen: i64) -> MessageOutcome {
        MessageOutcome::Accepted {
            program: "import_parcel".into(),
            unit_key: "W1".into(),
            recipient_id: recipient.into(),
            district_code: "330109".into(),
            local_date: NaiveDate::from_ymd_opt(2024, 1, 10).unwrap(),
            amount: Decimal::new(fen, 2),
        }
    }

    fn rejected(reason: &str, detail: &str) -> MessageOutcome {
        MessageOutcome::Rejected {
            reason: reason.into(),
            detail: detail.into(),
        }
    }

    #[test]
    fn outcomes_differ_by_reason_or_unit_fields_not_by_detail() {
        assert!(!rejected("duplicate", "first at a/0/1")
            .differs_from(&rejected("duplicate", "first at a/0/2")));
        assert!(rejected("duplicate", "").differs_from(&rejected("unknown_firm", "")));
        assert!(!accepted("sf", 100).differs_from(&accepted("sf", 100)));
        assert!(accepted("sf", 100).differs_from(&accepted("sf", 30)));
        assert!(accepted("sf", 100).differs_from(&accepted("zto", 100)));
        assert!(accepted("sf", 100).differs_from(&rejected("firm_ineligible", "")));
        assert!(MessageOutcome::Absent.differs_from(&accepted("sf", 100)));
    }

    fn row(partition: u32, offset: u64, accepted_rows: u64, winner: (&str, u32, u64)) -> SourceRow {
        SourceRow {
            partition,
            offset,
            message_event_id: "e".into(),
            accepted_rows,
            rejected_reason: if accepted_rows == 0 {
                "unknown_firm".into()
            } else {
                String::new()
            },
            rejected_detail: String::new(),
            key_program: "import_parcel".into(),
            key_unit: "W1".into(),
            unit_recipient_id: "sf".into(),
            unit_district_code: "330109".into(),
            unit_local_date: 19732, // 2024-01-10
            unit_amount_fen: 100,
            winner_topic: winner.0.into(),
            winner_partition: winner.1,
            winner_offset: winner.2,
        }
    }

    #[test]
    fn a_source_is_accepted_only_as_the_smallest_source_of_its_unit() {
        assert_eq!(row(0, 5, 1, ("t", 0, 5)).outcome("t"), accepted("sf", 100));
        assert_eq!(row(0, 5, 1, ("t", 0, 2)).outcome("t").label(), "duplicate");
        assert_eq!(
            row(0, 5, 1, ("other", 0, 5)).outcome("t").label(),
            "duplicate"
        );
        assert_eq!(
            row(0, 5, 0, ("", 0, 0)).outcome("t").label(),
            "unknown_firm"
        );
    }

    #[test]
    fn ranges_are_half_open() {
        let r = PartitionRange {
            partition: 0,
            start_offset: 3,
            end_offset: 5,
            messages_replayed: 0,
        };
        assert!(!r.contains(2) && r.contains(3) && r.contains(4) && !r.contains(5));
        assert!(!r.is_empty());
    }

    #[test]
    fn counts_list_accepted_first_then_reasons_in_spec_order() {
        let mut counts = BTreeMap::new();
        counts.insert("duplicate".to_string(), (1, 1));
        counts.insert("accepted".to_string(), (5, 4));
        counts.insert("firm_ineligible".to_string(), (1, 2));
        counts.insert("malformed_json".to_string(), (1, 1));
        let names: Vec<String> = ordered_counts(counts)
            .into_iter()
            .map(|c| c.outcome)
            .collect();
        assert_eq!(
            names,
            ["accepted", "malformed_json", "firm_ineligible", "duplicate"]
        );
    }

    #[test]
    fn render_shows_changes_and_signed_deltas() {
        let report = ReplayReport {
            topic: "t".into(),
            live_database: "live".into(),
            scratch_database: "live_replay".into(),
            scratch_kept: false,
            reference_data: RefDataLoads {
                firms: 2,
                outlets: 1,
                zones: 1,
            },
            partitions: vec![PartitionRange {
                partition: 0,
                start_offset: 0,
                end_offset: 2,
                messages_replayed: 2,
            }],
            messages_replayed: 2,
            units_seeded: 0,
            messages_compared: 2,
            messages_in_live: 2,
            messages_changed: 1,
            messages_not_in_live: 0,
            messages_not_replayed: 0,
            changed_examples: vec![ChangedMessage {
                source: "t/0/1".into(),
                partition: 0,
                offset: 1,
                event_id: "e1".into(),
                live: accepted("sf", 100),
                replay: rejected("firm_ineligible", "firm \"sf\" ineligible"),
            }],
            outcomes: vec![OutcomeCount {
                outcome: "accepted".into(),
                live: 2,
                replay: 1,
            }],
            nominal_live: Decimal::new(200, 2),
            nominal_replay: Decimal::new(100, 2),
            nominal_delta: Decimal::new(-100, 2),
            nominal_differences: vec![NominalDifference {
                month: NaiveDate::from_ymd_opt(2024, 1, 1).unwrap(),
                program: "import_parcel".into(),
                recipient_id: "sf".into(),
                district_code: "330109".into(),
                live_units: 2,
                replay_units: 1,
                live_nominal: Decimal::new(200, 2),
                replay_nominal: Decimal::new(100, 2),
                delta: Decimal::new(-100, 2),
            }],
        };
        let text = render(&report);
        assert!(text.contains("changed outcomes: 1 of 2 messages"), "{text}");
        assert!(text.contains("replay: firm_ineligible"), "{text}");
        assert!(text.contains("delta -1.00"), "{text}");
        assert!(text.contains("2024-01-01  import_parcel  sf"), "{text}");
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["nominal_delta"], "-1.00");
        assert_eq!(json["changed_examples"][0]["live"]["outcome"], "accepted");
        assert_eq!(json["changed_examples"][0]["live"]["amount"], "1.00");
    }
}
