//! ClickHouse: the durable side of the pipeline.
//!
//! - [`aggregates`]: `monthly_nominal` against a recompute from the ledger; the repair.
//! - [`client`]: connecting, server version detection, the one place that decides retry.
//! - [`migrate`]: applies `schemas/clickhouse/*.sql` once each, idempotently.
//! - [`rowbinary`]: a small RowBinary encoder for the hot insert path.
//! - [`outcomes`]: the `outcomes` table: batch inserts, resume offsets, the paid-unit index.
//! - [`decisions`]: the `unit_decisions` table: the ledger stage's rows, checkpoint and restore.
//! - [`sink`]: the one write path: bounded retries, no row twice, poison isolation.
//! - [`refdata_store`]: reference data snapshots (`refdata load`, read by `run`).
//! - [`tls`]: the HTTP(S) client underneath, with an optional custom CA.

pub mod aggregates;
pub mod client;
pub mod decisions;
pub mod migrate;
pub mod outcomes;
pub mod refdata_store;
pub mod rowbinary;
pub mod sink;
pub mod tls;

pub use client::{Store, StoreConfig, StoreError};
