//! Helpers shared by the integration tests (each test file includes them with `mod common;`).
//!
//! - [`oracle`]: the analyst views a sample feed must produce, computed independently of the
//!   crate's rules from the generator's labels.
//! - [`oracle_v2`]: the views of a feed of every program, revocations and voids (SPEC §2 and
//!   §8), computed from the SPEC text alone.

pub mod oracle;
pub mod oracle_v2;
pub mod views;
