//! `conservation`: the check anyone can run that nothing was lost or counted twice.
//!
//! Per topic and partition, from the `conservation` view: consumed messages (distinct
//! source offsets stored) = ledgered units + rejected rows, and the stored offsets form one
//! run without gaps. With the broker at hand it also shows how far each partition's end
//! (high watermark) is ahead of what was stored: messages not consumed yet.

use crate::kafka::KafkaConfig;
use crate::store::{Store, StoreError};
use rdkafka::consumer::Consumer;
use std::time::Duration;

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
    pub balanced: bool,
    /// Messages in Kafka after the last stored offset (`None` without a broker check).
    pub not_yet_consumed: Option<i64>,
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

/// Reads the balance of every partition ever consumed into this database.
pub async fn check(
    store: &Store,
    kafka: Option<&KafkaConfig>,
) -> Result<Vec<PartitionBalance>, StoreError> {
    let statement = store.sql(
        "SELECT topic AS topic, `partition` AS `partition`, toUInt64(messages) AS messages, \
         toUInt64(min_offset) AS min_offset, toUInt64(max_offset) AS max_offset, \
         toUInt64(units) AS units, toUInt64(rejected) AS rejected, toInt64(gaps) AS gaps, \
         toUInt8(balanced) AS balanced \
         FROM {db}.conservation ORDER BY topic, `partition`",
    );
    let rows: Vec<Row> = store.fetch_all(&statement).await?;
    let consumer = kafka.and_then(|k| k.plain_consumer("subsidy-ingester-conservation").ok());
    Ok(rows
        .into_iter()
        .map(|r| {
            let not_yet_consumed = consumer.as_ref().and_then(|c| {
                c.fetch_watermarks(&r.topic, r.partition as i32, Duration::from_secs(10))
                    .ok()
                    .map(|(_, high)| high - (r.max_offset as i64 + 1))
            });
            PartitionBalance {
                topic: r.topic,
                partition: r.partition,
                messages: r.messages,
                min_offset: r.min_offset,
                max_offset: r.max_offset,
                units: r.units,
                rejected: r.rejected,
                gaps: r.gaps,
                balanced: r.balanced != 0,
                not_yet_consumed,
            }
        })
        .collect())
}

/// The balances as an aligned table with a verdict line.
pub fn render(balances: &[PartitionBalance]) -> String {
    let mut out = format!(
        "{:<40} {:>9} {:>10} {:>10} {:>10} {:>10} {:>5} {:>13}  {}\n",
        "topic",
        "partition",
        "messages",
        "units",
        "rejected",
        "max_offset",
        "gaps",
        "not_consumed",
        "balanced"
    );
    for b in balances {
        out.push_str(&format!(
            "{:<40} {:>9} {:>10} {:>10} {:>10} {:>10} {:>5} {:>13}  {}\n",
            b.topic,
            b.partition,
            b.messages,
            b.units,
            b.rejected,
            b.max_offset,
            b.gaps,
            b.not_yet_consumed
                .map_or("-".to_string(), |n| n.to_string()),
            if b.balanced { "yes" } else { "NO" }
        ));
    }
    let messages: u64 = balances.iter().map(|b| b.messages).sum();
    let units: u64 = balances.iter().map(|b| b.units).sum();
    let rejected: u64 = balances.iter().map(|b| b.rejected).sum();
    let bad = balances.iter().filter(|b| !b.balanced).count();
    out.push_str(&format!(
        "total: {messages} messages = {units} units + {rejected} rejected; {}\n",
        if bad == 0 {
            "every partition balances".to_string()
        } else {
            format!("{bad} partition(s) do NOT balance")
        }
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_verdict_names_unbalanced_partitions() {
        let mut b = PartitionBalance {
            topic: "t".into(),
            partition: 0,
            messages: 3,
            min_offset: 0,
            max_offset: 2,
            units: 2,
            rejected: 1,
            gaps: 0,
            balanced: true,
            not_yet_consumed: Some(0),
        };
        assert!(render(std::slice::from_ref(&b)).contains("every partition balances"));
        b.balanced = false;
        assert!(render(&[b]).contains("1 partition(s) do NOT balance"));
    }
}
