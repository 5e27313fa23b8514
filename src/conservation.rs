//! `conservation`: the check anyone can run that nothing was lost, counted twice or stuck.
//!
//! Two halves:
//! - **Stored** (the `conservation` view): per topic and partition, consumed messages
//!   (distinct source offsets stored) = ledgered units + rejected rows, and the stored
//!   offsets form one run without gaps.
//! - **Kafka** (on by default): every partition of the configured topics, and of every
//!   topic found in storage, is compared with the broker. A partition whose messages have
//!   no outcome yet is *behind*; the check then waits up to the settle time for the
//!   ingester, and fails if messages that were in Kafka when it started still have no
//!   outcome. A partition with no stored row at all is listed too: that is what a stuck
//!   partition looks like.
//!
//! The broker's end of a partition is not taken on trust: ListOffsets answers can be wrong
//! (Tansu reports a high watermark of 1 for a partition of 3,000 messages at times). So a
//! probe consumer reads each partition from its first offset without an outcome: a message
//! read there is proof the partition is behind, end of partition is proof it is not, and the
//! end is the largest of the message read, the watermark in the fetch responses and a
//! ListOffsets answer that is not below what is already stored.

use crate::kafka::{KafkaConfig, KafkaSetupError, ProbeContext};
use crate::store::{Store, StoreError};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::{Message, Offset, TopicPartitionList};
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

/// How long the probe may read before it settles for what the watermarks say.
const PROBE_TIMEOUT: Duration = Duration::from_secs(10);

/// One broker request's time limit (metadata, ListOffsets).
const KAFKA_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// How often stored offsets are re-read while waiting for a behind partition.
const SETTLE_POLL_INTERVAL: Duration = Duration::from_millis(500);

/// What to compare storage with.
#[derive(Debug, Clone)]
pub struct CheckOptions {
    /// The broker, or `None` for the stored half only.
    pub kafka: Option<KafkaConfig>,
    /// Topics whose every partition must have been consumed (besides those in storage).
    pub topics: Vec<String>,
    /// How long a behind partition may take to catch up before it fails the check.
    pub settle: Duration,
}

/// Why the check could not be made (as opposed to a check that found a problem).
#[derive(Debug, thiserror::Error)]
pub enum ConservationError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    KafkaSetup(#[from] KafkaSetupError),
    /// The broker did not answer a request.
    #[error("Kafka {what} failed: {detail}; check SUBSIDY_KAFKA_BROKERS, or pass --no-kafka to check storage only")]
    Kafka { what: String, detail: String },
}

/// One partition's balance.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PartitionBalance {
    pub topic: String,
    pub partition: u32,
    pub messages: u64,
    pub min_offset: u64,
    pub max_offset: u64,
    pub units: u64,
    pub rejected: u64,
    pub gaps: i64,
    /// Stored messages = units + rejected, and no gaps.
    pub balanced: bool,
    /// The partition's end in Kafka as established by the probe (`None` without a broker
    /// check).
    pub kafka_end: Option<i64>,
    /// Messages in Kafka after the last stored offset, after the settle time (`None`
    /// without a broker check).
    pub not_yet_consumed: Option<i64>,
    /// Behind and no new outcome during the settle time.
    pub stuck: bool,
    /// What the probe noticed (a watermark it did not trust, a topic missing).
    pub note: Option<String>,
}

impl PartitionBalance {
    /// Returns true if and only if the partition balances and nothing in Kafka lacks an
    /// outcome.
    pub fn is_ok(&self) -> bool {
        self.balanced && self.not_yet_consumed.unwrap_or(0) == 0
    }

    fn without_rows(topic: &str, partition: u32) -> PartitionBalance {
        PartitionBalance {
            topic: topic.to_string(),
            partition,
            messages: 0,
            min_offset: 0,
            max_offset: 0,
            units: 0,
            rejected: 0,
            gaps: 0,
            balanced: true,
            kafka_end: None,
            not_yet_consumed: None,
            stuck: false,
            note: None,
        }
    }

    /// The first offset without a stored outcome, or `None` when nothing is stored.
    fn next_offset(&self) -> Option<i64> {
        (self.messages > 0).then_some(self.max_offset as i64 + 1)
    }
}

#[derive(clickhouse::Row, serde::Deserialize)]
struct Row {
    topic: String,
    partition: u32,
    messages: u64,
    min_offset: u64,
    max_offset: u64,
    units: u64,
    rejected: u64,
    gaps: i64,
    balanced: u8,
}

/// Checks every partition; with a broker, waits up to `options.settle` for behind ones.
pub async fn check(
    store: &Store,
    options: &CheckOptions,
) -> Result<Vec<PartitionBalance>, ConservationError> {
    let stored = stored_balances(store).await?;
    let Some(kafka) = &options.kafka else {
        return Ok(stored);
    };
    let mut topics: BTreeSet<String> = options.topics.iter().cloned().collect();
    topics.extend(stored.iter().map(|b| b.topic.clone()));
    let kafka = kafka.clone();
    let probe_input = stored.clone();
    let ends = tokio::task::spawn_blocking(move || probe_ends(&kafka, &topics, &probe_input))
        .await
        .map_err(|e| ConservationError::Kafka {
            what: "probe".into(),
            detail: e.to_string(),
        })??;
    let started = Instant::now();
    let mut balances = merge(stored, &ends);
    let first_next: BTreeMap<(String, u32), Option<i64>> = balances
        .iter()
        .map(|b| ((b.topic.clone(), b.partition), b.next_offset()))
        .collect();
    let behind = |b: &PartitionBalance| b.not_yet_consumed.unwrap_or(0) > 0;
    while balances.iter().any(behind) && started.elapsed() < options.settle {
        tokio::time::sleep(SETTLE_POLL_INTERVAL.min(options.settle)).await;
        balances = merge(stored_balances(store).await?, &ends);
    }
    for balance in &mut balances {
        let before = first_next.get(&(balance.topic.clone(), balance.partition));
        balance.stuck = behind(balance) && before == Some(&balance.next_offset());
    }
    Ok(balances)
}

/// The stored half: one row per partition with any stored outcome.
async fn stored_balances(store: &Store) -> Result<Vec<PartitionBalance>, StoreError> {
    let statement = store.sql(
        "SELECT topic AS topic, `partition` AS `partition`, toUInt64(messages) AS messages, \
         toUInt64(min_offset) AS min_offset, toUInt64(max_offset) AS max_offset, \
         toUInt64(units) AS units, toUInt64(rejected) AS rejected, toInt64(gaps) AS gaps, \
         toUInt8(balanced) AS balanced \
         FROM {db}.conservation ORDER BY topic, `partition`",
    );
    let rows: Vec<Row> = store.fetch_all(&statement).await?;
    Ok(rows
        .into_iter()
        .map(|r| PartitionBalance {
            messages: r.messages,
            min_offset: r.min_offset,
            max_offset: r.max_offset,
            units: r.units,
            rejected: r.rejected,
            gaps: r.gaps,
            balanced: r.balanced != 0,
            ..PartitionBalance::without_rows(&r.topic, r.partition)
        })
        .collect())
}

/// A partition's end in Kafka, as the probe established it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct KafkaEnd {
    /// One past the last message (the high watermark), as far as it could be verified.
    end: i64,
    /// The first offset the broker still holds (where a partition with nothing stored
    /// starts).
    start: i64,
    note: Option<String>,
}

/// Adds the Kafka half to the stored balances; partitions only Kafka knows get a row.
fn merge(
    stored: Vec<PartitionBalance>,
    ends: &BTreeMap<(String, u32), KafkaEnd>,
) -> Vec<PartitionBalance> {
    let mut by_partition: BTreeMap<(String, u32), PartitionBalance> = stored
        .into_iter()
        .map(|b| ((b.topic.clone(), b.partition), b))
        .collect();
    for ((topic, partition), end) in ends {
        let balance = by_partition
            .entry((topic.clone(), *partition))
            .or_insert_with(|| PartitionBalance::without_rows(topic, *partition));
        let next = balance.next_offset().unwrap_or(end.start);
        balance.kafka_end = Some(end.end);
        balance.not_yet_consumed = Some((end.end - next).max(0));
        balance.note = end.note.clone();
    }
    by_partition.into_values().collect()
}

/// Reads each partition of `topics` from its first offset without an outcome and returns
/// where each partition ends. One topic at a time, since librdkafka's end-of-partition
/// event names only the partition. Blocking (librdkafka calls).
fn probe_ends(
    kafka: &KafkaConfig,
    topics: &BTreeSet<String>,
    stored: &[PartitionBalance],
) -> Result<BTreeMap<(String, u32), KafkaEnd>, ConservationError> {
    let consumer = kafka.probe_consumer()?;
    let stored_next: BTreeMap<(&str, u32), i64> = stored
        .iter()
        .filter_map(|b| Some(((b.topic.as_str(), b.partition), b.next_offset()?)))
        .collect();
    let deadline = Instant::now() + PROBE_TIMEOUT;
    let mut ends = BTreeMap::new();
    for topic in topics {
        let metadata = consumer
            .fetch_metadata(Some(topic), KAFKA_REQUEST_TIMEOUT)
            .map_err(|e| kafka_error(&format!("metadata of {topic}"), &e))?;
        let Some(topic_metadata) = metadata.topics().first() else {
            continue;
        };
        if topic_metadata.error().is_some() || topic_metadata.partitions().is_empty() {
            // A configured topic nobody produced to yet, or one deleted since.
            continue;
        }
        let mut topic_ends = BTreeMap::new();
        let mut assignment = TopicPartitionList::new();
        for partition in topic_metadata.partitions() {
            let id = partition.id();
            let (low, high) = consumer
                .fetch_watermarks(topic, id, KAFKA_REQUEST_TIMEOUT)
                .map_err(|e| kafka_error(&format!("ListOffsets of {topic}/{id}"), &e))?;
            let next = stored_next.get(&(topic.as_str(), id as u32)).copied();
            topic_ends.insert(id, listed_end(low, high, next));
            let from = next.map_or(Offset::Beginning, Offset::Offset);
            assignment
                .add_partition_offset(topic, id, from)
                .map_err(|e| kafka_error("assign", &e))?;
        }
        consumer
            .assign(&assignment)
            .map_err(|e| kafka_error(&format!("assign {topic}"), &e))?;
        read_to_ends(&consumer, topic, &mut topic_ends, deadline);
        for (id, end) in topic_ends {
            ends.insert((topic.clone(), id as u32), end);
        }
    }
    Ok(ends)
}

/// A partition's end as ListOffsets tells it (`low`, `high`), checked against the first
/// offset without a stored outcome (`next`): an end below what is stored is wrong.
fn listed_end(low: i64, high: i64, next: Option<i64>) -> KafkaEnd {
    match next {
        Some(next) if high < next => KafkaEnd {
            end: next,
            start: low.min(next),
            note: Some(format!(
                "broker's ListOffsets said {high}, below the {next} offsets stored; ignored"
            )),
        },
        Some(next) => KafkaEnd {
            end: high,
            start: low.min(next),
            note: None,
        },
        None => KafkaEnd {
            end: high.max(low),
            start: low,
            note: None,
        },
    }
}

/// Polls the probe, assigned to one topic's partitions, until every partition delivered a
/// message or reported its end, or `deadline` passed; raises each partition's end to what
/// it saw and to the watermark of the fetch responses.
fn read_to_ends(
    consumer: &BaseConsumer<ProbeContext>,
    topic: &str,
    ends: &mut BTreeMap<i32, KafkaEnd>,
    deadline: Instant,
) {
    let mut open: BTreeSet<i32> = ends.keys().copied().collect();
    while !open.is_empty() && Instant::now() < deadline {
        match consumer.poll(Duration::from_millis(100)) {
            None => {}
            Some(Ok(message)) => {
                if let Some(end) = ends.get_mut(&message.partition()) {
                    end.end = end.end.max(message.offset() + 1);
                }
                open.remove(&message.partition());
            }
            Some(Err(KafkaError::PartitionEOF(partition))) => {
                open.remove(&partition);
            }
            Some(Err(_)) => {}
        }
    }
    for (partition, end) in ends.iter_mut() {
        if let Some((_, high)) = crate::kafka::cached_watermarks(consumer, topic, *partition) {
            end.end = end.end.max(high);
        }
        if open.contains(partition) && end.note.is_none() {
            end.note = Some(format!(
                "could not read to the end within {} s",
                PROBE_TIMEOUT.as_secs()
            ));
        }
    }
}

fn kafka_error(what: &str, error: &KafkaError) -> ConservationError {
    ConservationError::Kafka {
        what: what.to_string(),
        detail: error.to_string(),
    }
}

/// The aggregate check's verdict, with every cell that differs.
pub fn render_aggregates(cells: &[crate::store::aggregates::CellDifference]) -> String {
    use std::fmt::Write;
    if cells.is_empty() {
        return "aggregates: every monthly cell equals a recompute from the ledger\n".into();
    }
    let mut out = format!(
        "aggregates: {} cell(s) differ from the ledger (ledger − aggregates):\n",
        cells.len()
    );
    for cell in cells {
        let _ = writeln!(out, "  {cell}");
    }
    out
}

/// The balances as an aligned table with a verdict line.
pub fn render(balances: &[PartitionBalance]) -> String {
    let mut out = format!(
        "{:<40} {:>9} {:>10} {:>10} {:>10} {:>10} {:>5} {:>10} {:>13}  {}\n",
        "topic",
        "partition",
        "messages",
        "units",
        "rejected",
        "max_offset",
        "gaps",
        "kafka_end",
        "not_consumed",
        "balanced"
    );
    for b in balances {
        let dash = |n: Option<i64>| n.map_or("-".to_string(), |n| n.to_string());
        let verdict = match (b.balanced, b.not_yet_consumed.unwrap_or(0) > 0, b.stuck) {
            (false, _, _) => "NO",
            (true, true, true) => "STUCK",
            (true, true, false) => "BEHIND",
            (true, false, _) => "yes",
        };
        out.push_str(&format!(
            "{:<40} {:>9} {:>10} {:>10} {:>10} {:>10} {:>5} {:>10} {:>13}  {}{}\n",
            b.topic,
            b.partition,
            b.messages,
            b.units,
            b.rejected,
            if b.messages > 0 {
                b.max_offset.to_string()
            } else {
                "-".to_string()
            },
            b.gaps,
            dash(b.kafka_end),
            dash(b.not_yet_consumed),
            verdict,
            b.note
                .as_ref()
                .map_or(String::new(), |n| format!("  ({n})"))
        ));
    }
    let messages: u64 = balances.iter().map(|b| b.messages).sum();
    let units: u64 = balances.iter().map(|b| b.units).sum();
    let rejected: u64 = balances.iter().map(|b| b.rejected).sum();
    let unbalanced = balances.iter().filter(|b| !b.balanced).count();
    let behind: Vec<&PartitionBalance> = balances
        .iter()
        .filter(|b| b.not_yet_consumed.unwrap_or(0) > 0)
        .collect();
    let checked_kafka = balances.iter().any(|b| b.kafka_end.is_some());
    let mut verdict = Vec::new();
    if unbalanced == 0 {
        verdict.push("every partition balances".to_string());
    } else {
        verdict.push(format!("{unbalanced} partition(s) do NOT balance"));
    }
    if checked_kafka {
        if behind.is_empty() {
            verdict.push("every message in Kafka has an outcome".to_string());
        } else {
            let waiting: i64 = behind.iter().filter_map(|b| b.not_yet_consumed).sum();
            let stuck = behind.iter().filter(|b| b.stuck).count();
            verdict.push(format!(
                "{waiting} message(s) in Kafka have NO outcome after the settle time in {} partition(s), {stuck} of them stuck (no progress)",
                behind.len()
            ));
        }
    } else {
        verdict.push("Kafka not checked".to_string());
    }
    out.push_str(&format!(
        "total: {messages} messages = {units} units + {rejected} rejected; {}\n",
        verdict.join("; ")
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn balance() -> PartitionBalance {
        PartitionBalance {
            messages: 3,
            max_offset: 2,
            units: 2,
            rejected: 1,
            ..PartitionBalance::without_rows("t", 0)
        }
    }

    #[test]
    fn the_verdict_names_unbalanced_partitions() {
        let mut b = balance();
        b.kafka_end = Some(3);
        b.not_yet_consumed = Some(0);
        let text = render(std::slice::from_ref(&b));
        assert!(text.contains("every partition balances"), "{text}");
        assert!(
            text.contains("every message in Kafka has an outcome"),
            "{text}"
        );
        b.balanced = false;
        assert!(render(&[b]).contains("1 partition(s) do NOT balance"));
    }

    #[test]
    fn a_partition_behind_kafka_fails_and_says_whether_it_is_stuck() {
        let mut b = balance();
        b.kafka_end = Some(10);
        b.not_yet_consumed = Some(7);
        b.stuck = true;
        assert!(!b.is_ok());
        let text = render(std::slice::from_ref(&b));
        assert!(text.contains("STUCK"), "{text}");
        assert!(
            text.contains("7 message(s) in Kafka have NO outcome"),
            "{text}"
        );
        assert!(text.contains("1 of them stuck"), "{text}");
    }

    #[test]
    fn kafka_only_partitions_get_a_row_and_untrusted_watermarks_are_ignored() {
        let mut ends = BTreeMap::new();
        ends.insert(
            ("t".to_string(), 0),
            KafkaEnd {
                end: 3,
                start: 0,
                note: None,
            },
        );
        ends.insert(
            ("t".to_string(), 1),
            KafkaEnd {
                end: 5,
                start: 0,
                note: None,
            },
        );
        let merged = merge(vec![balance()], &ends);
        assert_eq!(merged.len(), 2);
        assert_eq!(merged[0].not_yet_consumed, Some(0));
        assert!(merged[0].is_ok());
        assert_eq!(merged[1].messages, 0);
        assert_eq!(merged[1].not_yet_consumed, Some(5));
        assert!(!merged[1].is_ok());
    }

    #[test]
    fn a_listed_end_below_what_is_stored_is_not_believed() {
        let wrong = listed_end(0, 1, Some(3000));
        assert_eq!(wrong.end, 3000);
        assert!(wrong.note.unwrap().contains("ignored"));
        assert_eq!(listed_end(0, 3005, Some(3000)).end, 3005);
        assert_eq!(
            listed_end(7, 12, None),
            KafkaEnd {
                end: 12,
                start: 7,
                note: None
            }
        );
    }
}
