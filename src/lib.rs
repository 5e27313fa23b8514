//! # subsidy-ingester
//!
//! Turns delivery platforms' and couriers' Kafka event feeds into exact, auditable subsidy
//! totals for Hangzhou's 2022 new e-commerce policy (see `README.md` and the SPEC).
//!
//! ## Layout — the flow of one message
//!
//! - [`domain`]: the vocabulary: events, units, programs, reason codes.
//! - [`edition`]: the policy's numbers as data: editions (`editions/*.toml`), loaded at start.
//! - [`policy`]: the policy's arithmetic: local dates, calendar months, fen, half-even shares.
//! - [`decode`]: bytes → typed [`domain::Event`] or a schema rejection (SPEC §3, §5 steps 1–4).
//! - [`refdata`]: firms, outlets and zones: CSV parsing with file/line/field errors.
//! - [`rules`]: pure eligibility rules: event + reference data → unit or rejection (§5 steps 5–6).
//! - [`route`]: unit records and the owner partition of each unit key (admit → ledger).
//! - [`ledger`]: the ledger stage: one owner per unit key decides new vs `duplicate`, with
//!   its dedup state on disk.
//! - [`dedup`]: the in-memory index of paid unit keys (`replay`).
//! - [`ingest`]: `run`: the poll loop, bounded batches, the flusher (dead letters, ClickHouse,
//!   advisory commits) and the consumer context that seeks from ClickHouse.
//! - [`store`]: ClickHouse: connection and retry classification, migrations, the `outcomes`
//!   table (result and checkpoint at once), reference-data snapshots.
//! - [`kafka`]: Kafka client configuration (the operator's librdkafka properties on every
//!   client) and topic creation.
//! - [`report`]: `report monthly` queries and rendering.
//! - [`conservation`]: the per-partition check that messages = units + rejected rows.
//! - [`recycle`]: flushed batches go back to their poll loop, buffers and all.
//! - [`crash`]: named crash points and the poison-row hook, for fault injection.
//! - [`replay`]: reprocesses a topic range into a scratch database and diffs it against live (dry run).
//! - [`telemetry`]: metrics, `/livez` and `/readyz`, progress lines on a terminal.
//! - [`secret`]: passwords, read from the environment or a file, redacted when printed.
//! - [`validate`]: `validate FILE|-`: a producer's dry run of an NDJSON file through the
//!   same decode, rules and dedup decision, against an empty history.
//! - [`cli`]: the command line.
//!
//! Dev tools — the sample-feed generator, producing it, the benchmarks — are the
//! `subsidy-devtools` crate (`devtools/`, binary `subsidy-dev`), not part of this library.

pub mod cli;
pub mod conservation;
pub mod crash;
pub mod decode;
pub mod dedup;
pub mod domain;
pub mod edition;
pub mod ingest;
pub mod kafka;
pub mod ledger;
pub mod policy;
pub mod recycle;
pub mod refdata;
pub mod replay;
pub mod report;
pub mod route;
pub mod rules;
pub mod secret;
pub mod store;
pub mod telemetry;
pub mod validate;
