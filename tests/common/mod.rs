//! Helpers shared by the integration tests (each test file includes them with `mod common;`).
//!
//! - [`oracle`]: the analyst views a sample feed must produce, computed independently of the
//!   crate's rules from the generator's labels.

pub mod oracle;
pub mod views;
