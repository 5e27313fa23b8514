//! Every metric `run` exports, named once here, and the Prometheus recorder.
//!
//! Names follow Prometheus conventions: `subsidy_` prefix, base units (`_seconds`,
//! `_bytes`), `_total` for counters. Hot paths never touch the recorder per message:
//! the poll loops count locally and add per batch or per second, so the cost stays a few
//! atomic adds per batch (measured by `subsidy-dev bench`, README "Metrics").
//!
//! Without `--metrics-addr` no recorder is installed and every macro is a no-op.

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Messages taken from the raw topics, by `topic` (redeliveries of durable ones included).
pub const MESSAGES_CONSUMED: &str = "subsidy_messages_consumed_total";
/// Messages skipped because their outcome was already durable (a redelivery), by `topic`.
pub const MESSAGES_REDELIVERED: &str = "subsidy_messages_redelivered_total";
/// Units made durable as new, by `topic` and `program`.
pub const MESSAGES_ACCEPTED: &str = "subsidy_messages_accepted_total";
/// Messages made durable as rejected, by `topic` and `reason` (admit and ledger stages).
pub const MESSAGES_REJECTED: &str = "subsidy_messages_rejected_total";
/// Dead letters by `result`: `sent`, `truncated` (sent, payload cut), `failed`.
pub const DEAD_LETTERS: &str = "subsidy_dead_letters_total";
/// Successful ClickHouse inserts, by `table`.
pub const CLICKHOUSE_INSERTS: &str = "subsidy_clickhouse_inserts_total";
/// Rows written by successful inserts, by `table`.
pub const CLICKHOUSE_ROWS: &str = "subsidy_clickhouse_rows_total";
/// Insert attempts that failed transiently and were retried, by `table`.
pub const CLICKHOUSE_RETRIES: &str = "subsidy_clickhouse_retries_total";
/// Rows ClickHouse refused for good (stored as `storage_refused`), by `table`.
pub const CLICKHOUSE_REFUSALS: &str = "subsidy_clickhouse_refusals_total";
/// Time of one successful insert request, by `table`.
pub const CLICKHOUSE_INSERT_DURATION: &str = "subsidy_clickhouse_insert_duration_seconds";
/// Rows per durable batch, by `stage` (`admit`, `ledger`).
pub const BATCH_ROWS: &str = "subsidy_batch_rows";
/// From a batch's first row to the batch being durable, by `stage`.
pub const BATCH_AGE: &str = "subsidy_batch_age_seconds";
/// Messages between the consumer's position and the high watermark, by `topic`,
/// `partition` (raw topics and the internal units topic).
pub const CONSUMER_LAG_MESSAGES: &str = "subsidy_consumer_lag_messages";
/// How old the last consumed message of a partition was when consumed, by `topic`,
/// `partition` and `clock`: `broker` (its Kafka timestamp) or `event` (its `occurred_at`,
/// raw topics only).
pub const CONSUMER_LAG_SECONDS: &str = "subsidy_consumer_lag_seconds";
/// The next offset after what is durable, per `topic` and `partition` (what the advisory
/// commit says, so kafka_exporter and Burrow agree).
pub const DURABLE_OFFSET: &str = "subsidy_durable_offset";
/// Bytes the ledger state takes on disk.
pub const STATE_STORE_BYTES: &str = "subsidy_state_store_bytes";
/// Ledger records re-read from ClickHouse into the state while restoring partitions.
pub const STATE_RESTORE_RECORDS: &str = "subsidy_state_restore_records_total";
/// Units-topic partitions assigned and still restoring their state.
pub const STATE_RESTORE_PARTITIONS_PENDING: &str = "subsidy_state_restore_partitions_pending";
/// 1, with the build's `version`, `commit` and the `edition` names in force.
pub const BUILD_INFO: &str = "subsidy_build_info";
/// 1 when `/readyz` says ready, else 0.
pub const READY: &str = "subsidy_ready";

/// Every exported name, with its type and help text (the README table lists the same).
pub const ALL: &[(&str, &str, &str)] = &[
    (
        MESSAGES_CONSUMED,
        "counter",
        "Messages taken from the raw topics.",
    ),
    (
        MESSAGES_REDELIVERED,
        "counter",
        "Messages skipped as already durable (redeliveries).",
    ),
    (
        MESSAGES_ACCEPTED,
        "counter",
        "Units made durable as new, by program.",
    ),
    (
        MESSAGES_REJECTED,
        "counter",
        "Messages made durable as rejected, by reason.",
    ),
    (
        DEAD_LETTERS,
        "counter",
        "Dead letters sent, truncated or failed.",
    ),
    (
        CLICKHOUSE_INSERTS,
        "counter",
        "Successful ClickHouse inserts.",
    ),
    (CLICKHOUSE_ROWS, "counter", "Rows written to ClickHouse."),
    (
        CLICKHOUSE_RETRIES,
        "counter",
        "ClickHouse insert attempts retried after a transient failure.",
    ),
    (
        CLICKHOUSE_REFUSALS,
        "counter",
        "Rows ClickHouse refused for good (stored as storage_refused).",
    ),
    (
        CLICKHOUSE_INSERT_DURATION,
        "histogram",
        "Duration of one successful ClickHouse insert.",
    ),
    (BATCH_ROWS, "histogram", "Rows per durable batch."),
    (
        BATCH_AGE,
        "histogram",
        "Seconds from a batch's first row until it is durable.",
    ),
    (
        CONSUMER_LAG_MESSAGES,
        "gauge",
        "Messages behind the high watermark.",
    ),
    (
        CONSUMER_LAG_SECONDS,
        "gauge",
        "Age of the last consumed message when consumed.",
    ),
    (
        DURABLE_OFFSET,
        "gauge",
        "Next offset after what is durable.",
    ),
    (
        STATE_STORE_BYTES,
        "gauge",
        "Bytes of the ledger state on disk.",
    ),
    (
        STATE_RESTORE_RECORDS,
        "counter",
        "Records restored into the ledger state from ClickHouse.",
    ),
    (
        STATE_RESTORE_PARTITIONS_PENDING,
        "gauge",
        "Assigned units partitions still restoring.",
    ),
    (
        BUILD_INFO,
        "gauge",
        "Build version, commit and editions in force.",
    ),
    (READY, "gauge", "1 when ready (see /readyz)."),
];

/// Histogram buckets for durations, seconds: 1 ms … 60 s.
const DURATION_BUCKETS_S: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];
/// Histogram buckets for batch rows: 1 … 1,000,000 (the largest batch).
const ROWS_BUCKETS: &[f64] = &[
    1.0,
    10.0,
    100.0,
    1_000.0,
    10_000.0,
    50_000.0,
    100_000.0,
    250_000.0,
    500_000.0,
    1_000_000.0,
];

/// The commit this binary was built from (`build.rs`), or `unknown`.
pub const BUILD_COMMIT: &str = match option_env!("SUBSIDY_BUILD_COMMIT") {
    Some(commit) => commit,
    None => "unknown",
};

/// Why the recorder could not be installed.
#[derive(Debug, thiserror::Error)]
#[error("cannot install the metrics recorder: {0}")]
pub struct InstallError(String);

/// Installs the Prometheus recorder for the whole process, describes every metric and
/// sets the build info; the handle renders the exposition text.
///
/// # Errors
///
/// A recorder is installed already (a second call in one process).
pub fn install(editions: &str) -> Result<PrometheusHandle, InstallError> {
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), DURATION_BUCKETS_S)
        .and_then(|b| b.set_buckets_for_metric(Matcher::Full(BATCH_ROWS.into()), ROWS_BUCKETS))
        .map_err(|e| InstallError(e.to_string()))?
        .install_recorder()
        .map_err(|e| InstallError(e.to_string()))?;
    for (name, kind, help) in ALL {
        match *kind {
            "counter" => metrics::describe_counter!(*name, *help),
            "histogram" => metrics::describe_histogram!(*name, *help),
            _ => metrics::describe_gauge!(*name, *help),
        }
    }
    metrics::gauge!(
        BUILD_INFO,
        "version" => env!("CARGO_PKG_VERSION"),
        "commit" => BUILD_COMMIT,
        "edition" => editions.to_string()
    )
    .set(1.0);
    Ok(handle)
}

/// Per-topic message counts a poll loop keeps between two flushes to the recorder: a
/// linear search over the handful of topics a loop reads beats a hash per message.
#[derive(Debug, Default)]
pub struct TopicCounts {
    counts: Vec<(String, u64, u64)>,
}

impl TopicCounts {
    /// Counts one consumed message of `topic` (`redelivered`: skipped as durable).
    pub fn add(&mut self, topic: &str, redelivered: bool) {
        let index = match self.counts.iter().position(|(t, _, _)| t == topic) {
            Some(index) => index,
            None => {
                self.counts.push((topic.to_string(), 0, 0));
                self.counts.len() - 1
            }
        };
        let entry = &mut self.counts[index];
        entry.1 += 1;
        if redelivered {
            entry.2 += 1;
        }
    }

    /// Adds the counts to the recorder and starts again from zero.
    pub fn flush(&mut self) {
        for (topic, consumed, redelivered) in &mut self.counts {
            if *consumed > 0 {
                metrics::counter!(MESSAGES_CONSUMED, "topic" => topic.clone()).increment(*consumed);
            }
            if *redelivered > 0 {
                metrics::counter!(MESSAGES_REDELIVERED, "topic" => topic.clone())
                    .increment(*redelivered);
            }
            *consumed = 0;
            *redelivered = 0;
        }
    }
}

/// Records one durable batch's outcomes: accepted per (topic, program) and rejected per
/// (topic, reason), from `(topic, program, rejection)` per row.
pub fn record_outcomes<'a>(
    rows: impl Iterator<Item = (&'a str, &'static str, Option<crate::domain::Reason>)>,
) {
    // A batch holds a handful of topics × programs/reasons: a small vector, not a map.
    let mut accepted: Vec<(&str, &str, u64)> = Vec::new();
    let mut rejected: Vec<(&str, &str, u64)> = Vec::new();
    for (topic, program, rejection) in rows {
        let (table, label) = match rejection {
            None => (&mut accepted, program),
            Some(reason) => (&mut rejected, reason.as_str()),
        };
        match table
            .iter_mut()
            .find(|(t, l, _)| *t == topic && *l == label)
        {
            Some(entry) => entry.2 += 1,
            None => table.push((topic, label, 1)),
        }
    }
    for (topic, program, n) in accepted {
        metrics::counter!(MESSAGES_ACCEPTED, "topic" => topic.to_string(), "program" => program)
            .increment(n);
    }
    for (topic, reason, n) in rejected {
        metrics::counter!(MESSAGES_REJECTED, "topic" => topic.to_string(), "reason" => reason)
            .increment(n);
    }
}

/// Records a batch made durable by `stage`: its rows and its age.
pub fn record_batch(stage: &'static str, rows: usize, first_row_at: Option<std::time::Instant>) {
    metrics::histogram!(BATCH_ROWS, "stage" => stage).record(rows as f64);
    if let Some(first) = first_row_at {
        metrics::histogram!(BATCH_AGE, "stage" => stage).record(first.elapsed().as_secs_f64());
    }
}

/// Records the next durable offsets of partitions of `topic`.
pub fn record_durable_offsets<'a>(offsets: impl IntoIterator<Item = (&'a str, i32, i64)>) {
    for (topic, partition, next) in offsets {
        metrics::gauge!(DURABLE_OFFSET, "topic" => topic.to_string(), "partition" => partition.to_string())
            .set(next as f64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_prometheus_conventions() {
        for (name, kind, help) in ALL {
            assert!(name.starts_with("subsidy_"), "{name}");
            assert!(!help.is_empty());
            if *kind == "counter" {
                assert!(name.ends_with("_total"), "{name} is a counter");
            } else {
                assert!(!name.ends_with("_total"), "{name} is not a counter");
            }
            assert!(
                name.chars().all(|c| c.is_ascii_lowercase() || c == '_'),
                "{name}"
            );
        }
        let mut names: Vec<&str> = ALL.iter().map(|(n, _, _)| *n).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), ALL.len(), "each name once");
    }

    #[test]
    fn topic_counts_keep_topics_apart_and_reset_on_flush() {
        let mut counts = TopicCounts::default();
        counts.add("a", false);
        counts.add("b", true);
        counts.add("a", true);
        assert_eq!(
            counts.counts,
            vec![("a".to_string(), 2, 1), ("b".to_string(), 1, 1)]
        );
        counts.flush();
        assert_eq!(
            counts.counts,
            vec![("a".to_string(), 0, 0), ("b".to_string(), 0, 0)]
        );
    }
}
