//! Named crash points: the dangerous moments of the pipeline, reachable on purpose.
//!
//! Compiled into every build and free when unused (one relaxed atomic load). `run` with
//! `SUBSIDY_CRASH_AT=<point>` and `SUBSIDY_CRASH_AFTER=<n>` (default 1) aborts the process —
//! no unwinding, no flush, like SIGKILL — the n-th time it reaches that point. The
//! fault-injection tests use them to prove that every window is safe.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::OnceLock;

/// Every crash point: name and the window it opens.
pub const CRASH_POINTS: [(&str, &str); 14] = [
    (
        "after_index_rebuild",
        "the dedup index is rebuilt, nothing consumed yet",
    ),
    (
        "during_assign",
        "inside the rebalance callback, before partitions are assigned",
    ),
    (
        "during_revoke",
        "inside the rebalance callback, while partitions are revoked",
    ),
    (
        "mid_batch",
        "a message was processed into a batch that is not shipped",
    ),
    (
        "before_dead_letters",
        "a batch is ready; nothing of it sent anywhere",
    ),
    (
        "after_dead_letters",
        "dead letters acknowledged by Kafka, rows not inserted",
    ),
    (
        "after_route",
        "unit records acknowledged by the units topic, the raw checkpoint not written",
    ),
    (
        "ledger_mid_batch",
        "a units-topic message (a set of records) was decided into a ledger batch that is not shipped",
    ),
    (
        "ledger_after_insert",
        "decision rows and their aggregates durable in ClickHouse, the ledger state not written",
    ),
    (
        "ledger_after_state",
        "ledger state written, the advisory commit of the units topic not issued",
    ),
    (
        "mid_insert",
        "rows sent to ClickHouse, the insert not finished",
    ),
    (
        "after_insert",
        "rows durable in ClickHouse, Kafka offsets not committed",
    ),
    (
        "after_commit",
        "rows durable and the advisory Kafka commit issued",
    ),
    (
        "during_shutdown",
        "a signal was received, the last batch not yet flushed",
    ),
];

struct Armed {
    point: String,
    after: u64,
    hits: AtomicU64,
}

static ENABLED: AtomicBool = AtomicBool::new(false);
static ARMED: OnceLock<Option<Armed>> = OnceLock::new();
static POISON_MARKER: OnceLock<Option<Vec<u8>>> = OnceLock::new();

/// Fault injection for poison-message tests: with `SUBSIDY_FAULT_POISON_MARKER` set, the
/// outcome row of every message containing the marker is encoded so that ClickHouse
/// refuses it. Returns true if and only if `payload` is such a message.
#[inline]
pub fn is_poison(payload: &[u8]) -> bool {
    let marker = POISON_MARKER.get_or_init(|| {
        std::env::var("SUBSIDY_FAULT_POISON_MARKER")
            .ok()
            .filter(|m| !m.is_empty())
            .map(String::into_bytes)
    });
    match marker {
        None => false,
        Some(marker) => payload
            .windows(marker.len())
            .any(|w| w == marker.as_slice()),
    }
}

/// Why the crash-point settings are unusable.
#[derive(Debug, thiserror::Error)]
pub enum CrashSetupError {
    #[error(
        "SUBSIDY_CRASH_AT={0:?} is not a crash point; `subsidy-ingester crash-points` lists them"
    )]
    UnknownPoint(String),
    #[error("SUBSIDY_CRASH_AFTER={0:?} must be a whole number ≥ 1")]
    BadCount(String),
}

/// Reads `SUBSIDY_CRASH_AT` / `SUBSIDY_CRASH_AFTER` once. Call at start-up of `run`.
pub fn arm_from_env() -> Result<(), CrashSetupError> {
    let point = std::env::var("SUBSIDY_CRASH_AT")
        .ok()
        .filter(|p| !p.is_empty());
    let Some(point) = point else {
        let _ = ARMED.set(None);
        return Ok(());
    };
    if !CRASH_POINTS.iter().any(|(name, _)| *name == point) {
        return Err(CrashSetupError::UnknownPoint(point));
    }
    let after_text = std::env::var("SUBSIDY_CRASH_AFTER").unwrap_or_else(|_| "1".into());
    let after = match after_text.parse::<u64>() {
        Ok(n) if n >= 1 => n,
        _ => return Err(CrashSetupError::BadCount(after_text)),
    };
    tracing::warn!(message = "Crash point armed.", point = %point, after);
    let _ = ARMED.set(Some(Armed {
        point,
        after,
        hits: AtomicU64::new(0),
    }));
    ENABLED.store(true, Ordering::Release);
    Ok(())
}

/// Marks that execution reached `point`; aborts the process if it is the armed point's
/// n-th hit.
#[inline]
pub fn reached(point: &'static str) {
    if !ENABLED.load(Ordering::Relaxed) {
        return;
    }
    hit(point);
}

#[cold]
fn hit(point: &'static str) {
    debug_assert!(
        CRASH_POINTS.iter().any(|(name, _)| *name == point),
        "unlisted crash point {point}"
    );
    if let Some(Some(armed)) = ARMED.get() {
        if armed.point == point && armed.hits.fetch_add(1, Ordering::AcqRel) + 1 == armed.after {
            eprintln!(
                "crash point {point} reached (hit {}): aborting",
                armed.after
            );
            std::process::abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn points_are_unique_snake_case_names() {
        let mut names: Vec<&str> = CRASH_POINTS.iter().map(|(n, _)| *n).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), CRASH_POINTS.len());
        assert!(names
            .iter()
            .all(|n| n.chars().all(|c| c.is_ascii_lowercase() || c == '_')));
    }

    #[test]
    fn unarmed_points_cost_nothing_and_never_abort() {
        for (name, _) in CRASH_POINTS {
            reached(name);
        }
    }
}
