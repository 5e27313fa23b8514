//! Liveness and readiness of the process, with the reason when not ready.
//!
//! One process-wide [`HEALTH`] (like the metrics recorder): the loops and the sinks set a
//! few atomics as they go; `/livez` and `/readyz` read them. Nothing here blocks or
//! allocates on a hot path.
//!
//! - **live**: the poll loops (or what they wait in: room for a batch, a drain, a restore)
//!   turned within [`LIVENESS_STALE`]. A wedged process is restarted by its supervisor.
//! - **ready**: reference data present, source partitions assigned, no ledger partition
//!   restoring, ClickHouse answering the probe, and no sink in an outage backoff.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long the loops may go without turning before `/livez` fails.
pub const LIVENESS_STALE: Duration = Duration::from_secs(60);

/// The process's health.
pub struct Health {
    /// Milliseconds since [`Health::epoch`] of the last turn of a loop.
    beat_ms: AtomicU64,
    /// Set once `run` started its loops; before that `/readyz` says what it waits for.
    running: AtomicBool,
    /// Raw-topic partitions assigned to the admit stage.
    source_partitions: AtomicI64,
    /// Units-topic partitions being restored.
    restoring: AtomicI64,
    /// Sinks (admit, ledger) retrying ClickHouse or the units topic right now.
    in_backoff: AtomicI64,
    /// Whether the last ClickHouse probe answered.
    clickhouse_ok: AtomicBool,
    /// Why the process waits before it can start (e.g. no reference data), if it does;
    /// and the last ClickHouse probe's error.
    waiting: Mutex<Option<String>>,
    clickhouse_error: Mutex<String>,
    epoch: std::sync::OnceLock<Instant>,
}

/// The process's one [`Health`].
pub static HEALTH: Health = Health {
    beat_ms: AtomicU64::new(0),
    running: AtomicBool::new(false),
    source_partitions: AtomicI64::new(0),
    restoring: AtomicI64::new(0),
    in_backoff: AtomicI64::new(0),
    clickhouse_ok: AtomicBool::new(false),
    waiting: Mutex::new(None),
    clickhouse_error: Mutex::new(String::new()),
    epoch: std::sync::OnceLock::new(),
};

impl Health {
    fn now_ms(&self) -> u64 {
        self.epoch.get_or_init(Instant::now).elapsed().as_millis() as u64
    }

    /// A loop turned: the process is alive.
    pub fn beat(&self) {
        self.beat_ms.store(self.now_ms(), Ordering::Relaxed);
    }

    /// Says what start-up waits for (`None` once it waits no more).
    pub fn set_waiting(&self, reason: Option<String>) {
        self.beat();
        *self.waiting.lock().expect("health poisoned") = reason;
    }

    /// The loops started (or stopped).
    pub fn set_running(&self, running: bool) {
        self.beat();
        self.running.store(running, Ordering::Relaxed);
    }

    /// The admit stage's assigned partitions changed by `delta`.
    pub fn source_partitions_changed(&self, delta: i64) {
        self.source_partitions.fetch_add(delta, Ordering::Relaxed);
    }

    /// A units partition started (`true`) or finished (`false`) restoring its state.
    pub fn restoring(&self, started: bool) {
        self.beat();
        self.restoring
            .fetch_add(if started { 1 } else { -1 }, Ordering::Relaxed);
        metrics::gauge!(super::metrics::STATE_RESTORE_PARTITIONS_PENDING)
            .set(self.restoring.load(Ordering::Relaxed).max(0) as f64);
    }

    /// A sink entered (`true`) or left (`false`) an outage backoff.
    pub fn backoff(&self, entered: bool) {
        self.in_backoff
            .fetch_add(if entered { 1 } else { -1 }, Ordering::Relaxed);
    }

    /// The result of a ClickHouse probe.
    pub fn clickhouse_probed(&self, result: Result<(), String>) {
        let ok = result.is_ok();
        if let Err(error) = result {
            *self.clickhouse_error.lock().expect("health poisoned") = error;
        }
        self.clickhouse_ok.store(ok, Ordering::Relaxed);
    }

    /// `Ok` when alive, else why not.
    pub fn liveness(&self) -> Result<(), String> {
        let since_ms = self
            .now_ms()
            .saturating_sub(self.beat_ms.load(Ordering::Relaxed));
        if since_ms > LIVENESS_STALE.as_millis() as u64 {
            Err(format!(
                "the poll loops have not turned for {:.1} s",
                since_ms as f64 / 1000.0
            ))
        } else {
            Ok(())
        }
    }

    /// `Ok` when ready, else every reason it is not, one per line.
    pub fn readiness(&self) -> Result<(), Vec<String>> {
        let mut reasons = Vec::new();
        if let Some(waiting) = self.waiting.lock().expect("health poisoned").as_ref() {
            reasons.push(waiting.clone());
        }
        if !self.clickhouse_ok.load(Ordering::Relaxed) {
            let error = self.clickhouse_error.lock().expect("health poisoned");
            reasons.push(if error.is_empty() {
                "ClickHouse not probed yet".to_string()
            } else {
                format!("ClickHouse unreachable: {error}")
            });
        }
        if !self.running.load(Ordering::Relaxed) {
            reasons.push("starting: the poll loops are not running yet".into());
        } else if self.source_partitions.load(Ordering::Relaxed) <= 0 {
            reasons.push(
                "no source partitions assigned (joining the consumer group, or more instances than partitions)"
                    .into(),
            );
        }
        let restoring = self.restoring.load(Ordering::Relaxed);
        if restoring > 0 {
            reasons.push(format!(
                "restoring the ledger state of {restoring} units partition(s) from ClickHouse"
            ));
        }
        if self.in_backoff.load(Ordering::Relaxed) > 0 {
            reasons.push(
                "in an outage backoff: retrying ClickHouse or the units topic (see the log)".into(),
            );
        }
        let ready = reasons.is_empty();
        metrics::gauge!(super::metrics::READY).set(if ready { 1.0 } else { 0.0 });
        if ready {
            Ok(())
        } else {
            Err(reasons)
        }
    }
}

/// Marks a sink in an outage backoff for as long as it lives.
pub struct BackoffGuard {
    entered: bool,
}

impl BackoffGuard {
    /// Not in a backoff yet.
    pub fn new() -> BackoffGuard {
        BackoffGuard { entered: false }
    }

    /// The sink is retrying: not ready until the guard drops.
    pub fn enter(&mut self) {
        if !self.entered {
            self.entered = true;
            HEALTH.backoff(true);
        }
    }
}

impl Default for BackoffGuard {
    fn default() -> Self {
        BackoffGuard::new()
    }
}

impl Drop for BackoffGuard {
    fn drop(&mut self) {
        if self.entered {
            HEALTH.backoff(false);
        }
    }
}

/// Probes ClickHouse every `interval` (a `SELECT 1` bounded by the interval), forever.
pub async fn probe_clickhouse(client: clickhouse::Client, url: String, interval: Duration) {
    let mut ticker = tokio::time::interval(interval);
    loop {
        ticker.tick().await;
        let result = match tokio::time::timeout(interval, client.query("SELECT 1").execute()).await
        {
            Ok(Ok(())) => Ok(()),
            Ok(Err(error)) => Err(format!("{url}: {error}")),
            Err(_) => Err(format!(
                "{url}: no answer within {} ms",
                interval.as_millis()
            )),
        };
        HEALTH.clickhouse_probed(result);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readiness_names_every_reason_and_clears_when_they_go() {
        // One test touches the process-wide HEALTH, so the order below is the only one.
        let health = &HEALTH;
        health.beat();
        assert!(health.liveness().is_ok());
        let reasons = health.readiness().unwrap_err();
        assert!(reasons.iter().any(|r| r.contains("ClickHouse not probed")));
        assert!(reasons.iter().any(|r| r.contains("starting")));
        health.set_waiting(Some("no reference data: run refdata load".into()));
        health.clickhouse_probed(Err("http://x: refused".into()));
        health.set_running(true);
        health.restoring(true);
        let reasons = health.readiness().unwrap_err();
        assert!(reasons.iter().any(|r| r.contains("no reference data")));
        assert!(reasons.iter().any(|r| r.contains("http://x: refused")));
        assert!(reasons.iter().any(|r| r.contains("no source partitions")));
        assert!(reasons.iter().any(|r| r.contains("restoring")));
        {
            let mut guard = BackoffGuard::new();
            guard.enter();
            guard.enter();
            assert!(health
                .readiness()
                .unwrap_err()
                .iter()
                .any(|r| r.contains("outage backoff")));
        }
        health.set_waiting(None);
        health.clickhouse_probed(Ok(()));
        health.restoring(false);
        health.source_partitions_changed(3);
        assert_eq!(health.readiness(), Ok(()));
        health.source_partitions_changed(-3);
        assert!(health.readiness().is_err());
    }
}
