//! Operations: what an operator watches while `run` works.
//!
//! - [`metrics`]: the Prometheus metric names, their descriptions, and the recorder (one
//!   home for every name, so the README table, the dashboard and the code agree).
//! - [`health`]: liveness and readiness, with the reason when not ready.
//! - [`http`]: the listener serving `/metrics`, `/livez` and `/readyz` (`--metrics-addr`).
//! - [`progress`]: progress lines for long work on a terminal (`replay`, `refdata load`,
//!   a state restore), quiet when stdout is not a terminal.

pub mod health;
pub mod http;
pub mod metrics;
pub mod progress;
