//! `run`: the ingest service. Kafka → decode → rules → dedup → ClickHouse, with the
//! outcome rows as the checkpoint.
//!
//! - [`process`]: one message → one outcome row (and a dead letter if rejected). Pure but
//!   for the dedup index it updates.
//! - [`batch`]: rows, dead letters and commit positions of one bounded batch.
//! - [`dead_letter`]: bounded dead letters for rejected messages; refusals counted, never fatal.
//! - [`context`]: the consumer context: seeks every assigned partition to where ClickHouse
//!   says it resumes.
//! - [`flusher`]: makes a batch durable: dead letters to Kafka, rows to ClickHouse, then an
//!   advisory Kafka commit; retries with bounded backoff.
//! - [`service`]: wiring and the poll loops.
//! - [`shutdown`]: running until a signal, with the shutdown deadline.

pub mod batch;
pub mod context;
pub mod dead_letter;
pub mod flusher;
pub mod process;
pub mod service;
pub mod shutdown;
pub mod stats;

pub use service::{run, RunError, RunSettings};
pub use shutdown::{run_until_signal, EXIT_SHUTDOWN_TIMEOUT};
pub use stats::RunSummary;
