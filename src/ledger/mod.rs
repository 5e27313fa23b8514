//! The ledger stage: owns partitions of the units topic and decides, once per unit key,
//! whether a routed unit is new (a unit of the ledger) or a `duplicate` (SPEC §5 step 7).
//!
//! - [`decide`]: the pure decision, from a unit record and what the state knows of its key.
//! - [`state`]: the on-disk dedup state (fjall), consistent with ClickHouse.
//! - [`batch`]: the decision rows of one bounded batch, and the state they commit.
//! - [`stage`]: the consumer of the units topic: restore on assignment, process, flush.

pub mod batch;
pub mod decide;
pub mod stage;
pub mod state;
