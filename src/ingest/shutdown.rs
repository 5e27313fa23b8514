//! Running until a signal: SIGTERM or SIGINT asks `run` to flush and stop; if flushing
//! takes longer than the shutdown deadline, the process exits with
//! [`EXIT_SHUTDOWN_TIMEOUT`] (nothing is lost: unflushed messages are read again).

use super::service::{run, RunError, RunSettings};
use super::stats::RunSummary;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Exit code when `run` could not flush within the shutdown deadline after a signal.
pub const EXIT_SHUTDOWN_TIMEOUT: i32 = 3;

/// Runs the service until SIGTERM/SIGINT (or, with `until_caught_up`, until caught up).
pub async fn run_until_signal(
    settings: RunSettings,
    shutdown_timeout: Duration,
) -> Result<RunSummary, RunError> {
    let shutdown = Arc::new(AtomicBool::new(false));
    let signal_flag = shutdown.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!(message = "Shutdown requested; flushing.");
        signal_flag.store(true, Ordering::Relaxed);
        tokio::time::sleep(shutdown_timeout).await;
        eprintln!(
            "error: could not flush within {} ms after the signal; exiting. Unflushed messages are re-read on the next start (nothing is lost).",
            shutdown_timeout.as_millis()
        );
        std::process::exit(EXIT_SHUTDOWN_TIMEOUT);
    });
    run(settings, shutdown).await
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut terminate = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(error) => {
            tracing::error!(message = "Cannot listen for SIGTERM.", %error);
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = terminate.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
