//! # subsidy-devtools
//!
//! The dev tools of `subsidy-ingester`, kept out of the service's library:
//!
//! - [`sample`]: a deterministic sample-feed generator with the expected outcome of every
//!   message (the tests' oracle input and the demo's feed).
//! - [`feed`]: producing a sample feed into Kafka.
//! - [`bench`](mod@bench): the end-to-end benchmark against a bare consumer.
//! - [`bench_core`]: `bench --core`: the CPU cost of the pure path per event.
//! - [`bench_history`]: seeding N units of history for `bench --history-units`.

pub mod bench;
pub mod bench_core;
pub mod bench_history;
pub mod feed;
pub mod sample;
