//! Counters of one `run`, shared by the poll loop and the flusher, and the summary printed
//! at exit (one JSON line on stdout, for scripts and the benchmark).

use crate::domain::Reason;
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Instant;

/// Live counters. Every consumed message is counted once: as durable (accepted or
/// rejected) once its batch landed, or as skipped when it was already durable.
#[derive(Default)]
pub struct Stats {
    pub consumed: AtomicU64,
    pub skipped_already_durable: AtomicU64,
    pub durable_accepted: AtomicU64,
    pub durable_rejected: AtomicU64,
    pub batches: AtomicU64,
    /// Valid units the admit stage routed to their owners and made durable in `outcomes`.
    pub routed: AtomicU64,
    /// Unit records the ledger stage read again for a message it had decided already.
    pub records_already_decided: AtomicU64,
    /// Records on the units topic this build cannot read (logged and skipped).
    pub records_unreadable: AtomicU64,
    pub insert_retries: AtomicU64,
    /// Dead letters the broker acknowledged.
    pub dead_letters: AtomicU64,
    /// Dead letters whose payload was cut to fit the letter bound.
    pub dead_letters_truncated: AtomicU64,
    /// Dead letters given up (refused permanently, or failing after every retry).
    pub dead_letters_failed: AtomicU64,
    rejected_by_reason: Mutex<[u64; Reason::ALL.len()]>,
    first_message_at: Mutex<Option<Instant>>,
    last_durable_at: Mutex<Option<Instant>>,
}

impl Stats {
    /// Notes that a message was consumed now.
    pub fn message_consumed(&self) {
        if self.consumed.fetch_add(1, Ordering::Relaxed) == 0 {
            *self.first_message_at.lock().expect("stats poisoned") = Some(Instant::now());
        }
    }

    /// Notes an admit batch that became durable: its routed units and its rejections.
    pub fn admit_durable(&self, routed: u64, rejected_by_reason: &[u64; Reason::ALL.len()]) {
        self.routed.fetch_add(routed, Ordering::Relaxed);
        self.batch_durable(0, rejected_by_reason);
    }

    /// Notes a batch that became durable: units paid and messages rejected.
    pub fn batch_durable(&self, accepted: u64, rejected_by_reason: &[u64; Reason::ALL.len()]) {
        self.batches.fetch_add(1, Ordering::Relaxed);
        self.durable_accepted.fetch_add(accepted, Ordering::Relaxed);
        let rejected: u64 = rejected_by_reason.iter().sum();
        self.durable_rejected.fetch_add(rejected, Ordering::Relaxed);
        let mut by_reason = self.rejected_by_reason.lock().expect("stats poisoned");
        for (total, add) in by_reason.iter_mut().zip(rejected_by_reason) {
            *total += add;
        }
        *self.last_durable_at.lock().expect("stats poisoned") = Some(Instant::now());
    }

    /// Adds one batch's dead-letter tally.
    pub fn dead_letters_sent(&self, tally: &super::dead_letter::SendTally) {
        self.dead_letters.fetch_add(tally.sent, Ordering::Relaxed);
        self.dead_letters_truncated
            .fetch_add(tally.truncated, Ordering::Relaxed);
        self.dead_letters_failed
            .fetch_add(tally.failed, Ordering::Relaxed);
        use crate::telemetry::metrics::DEAD_LETTERS;
        for (result, n) in [
            ("sent", tally.sent),
            ("truncated", tally.truncated),
            ("failed", tally.failed),
        ] {
            if n > 0 {
                metrics::counter!(DEAD_LETTERS, "result" => result).increment(n);
            }
        }
    }

    /// The summary of the run so far.
    pub fn summary(&self, units_indexed: u64, process_started: Instant) -> RunSummary {
        let first = *self.first_message_at.lock().expect("stats poisoned");
        let first_message_after_ms = first.map_or(0, |f| {
            f.saturating_duration_since(process_started).as_millis() as u64
        });
        let last = *self.last_durable_at.lock().expect("stats poisoned");
        let active_seconds = match (first, last) {
            (Some(first), Some(last)) if last > first => (last - first).as_secs_f64(),
            _ => 0.0,
        };
        let durable = self.durable_accepted.load(Ordering::Relaxed)
            + self.durable_rejected.load(Ordering::Relaxed);
        let by_reason = self.rejected_by_reason.lock().expect("stats poisoned");
        RunSummary {
            consumed: self.consumed.load(Ordering::Relaxed),
            skipped_already_durable: self.skipped_already_durable.load(Ordering::Relaxed),
            accepted: self.durable_accepted.load(Ordering::Relaxed),
            rejected: self.durable_rejected.load(Ordering::Relaxed),
            rejected_by_reason: Reason::ALL
                .iter()
                .map(|r| r.as_str())
                .zip(by_reason.iter().copied())
                .filter(|(_, n)| *n > 0)
                .map(|(r, n)| (r.to_string(), n))
                .collect(),
            batches: self.batches.load(Ordering::Relaxed),
            routed: self.routed.load(Ordering::Relaxed),
            records_already_decided: self.records_already_decided.load(Ordering::Relaxed),
            insert_retries: self.insert_retries.load(Ordering::Relaxed),
            dead_letters: self.dead_letters.load(Ordering::Relaxed),
            dead_letters_truncated: self.dead_letters_truncated.load(Ordering::Relaxed),
            dead_letters_failed: self.dead_letters_failed.load(Ordering::Relaxed),
            units_indexed,
            first_message_after_ms,
            active_seconds,
            events_per_second: if active_seconds > 0.0 {
                (durable as f64 / active_seconds).round() as u64
            } else {
                0
            },
            peak_rss_bytes: peak_rss_bytes(),
            cpu_seconds: cpu_seconds(),
        }
    }
}

/// What one `run` did; printed as one JSON line on stdout at exit.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
pub struct RunSummary {
    /// Messages taken from Kafka.
    pub consumed: u64,
    /// Messages skipped because ClickHouse already held their outcome (a redelivery).
    pub skipped_already_durable: u64,
    /// Accepted units made durable.
    pub accepted: u64,
    /// Rejected messages made durable.
    pub rejected: u64,
    pub rejected_by_reason: BTreeMap<String, u64>,
    pub batches: u64,
    /// Valid units the admit stage routed to their owners (durable in `outcomes`).
    #[serde(default)]
    pub routed: u64,
    /// Unit records the ledger stage had decided already (routed twice after a crash).
    #[serde(default)]
    pub records_already_decided: u64,
    pub insert_retries: u64,
    /// Dead letters acknowledged by the broker.
    pub dead_letters: u64,
    /// Dead letters whose payload was cut to the letter bound (the whole payload stays in
    /// `rejected_events`).
    #[serde(default)]
    pub dead_letters_truncated: u64,
    /// Dead letters given up: refused for good, or failing after every retry (logged with
    /// their source; the rejection is still stored).
    #[serde(default)]
    pub dead_letters_failed: u64,
    /// Units the ledger state holds for the partitions this instance owned at exit
    /// (an estimate from the store).
    pub units_indexed: u64,
    /// Milliseconds from the start of `run` to its first consumed message (start-up,
    /// including restoring the ledger state); 0 when nothing was consumed.
    #[serde(default)]
    pub first_message_after_ms: u64,
    /// Seconds from the first consumed message to the last durable batch.
    pub active_seconds: f64,
    /// Durable messages per second over `active_seconds`.
    pub events_per_second: u64,
    /// Peak resident memory of this process (`VmHWM`), bytes; 0 where unknown.
    pub peak_rss_bytes: u64,
    /// CPU time of this process so far (user + system, every thread), seconds; 0 where
    /// unknown. Unlike events/s it barely moves when other work shares the cores.
    #[serde(default)]
    pub cpu_seconds: f64,
}

/// CPU time of this process (user + system, all threads) from `/proc/self/stat`
/// (Linux; fields 14 and 15, in the ABI's fixed 100 ticks per second), seconds.
pub fn cpu_seconds() -> f64 {
    std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|stat| {
            // The command name (field 2) may hold spaces: count fields after its ')'.
            let rest = stat.rsplit_once(')')?.1;
            let fields: Vec<&str> = rest.split_whitespace().collect();
            let utime: u64 = fields.get(11)?.parse().ok()?;
            let stime: u64 = fields.get(12)?.parse().ok()?;
            Some((utime + stime) as f64 / 100.0)
        })
        .unwrap_or(0.0)
}

/// The process's peak resident set size from `/proc/self/status` (Linux), bytes.
pub fn peak_rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}
