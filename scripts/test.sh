#!/usr/bin/env bash
# Sets up everything the tests need and runs every check CI runs: starts ClickHouse and
# the Kafka-compatible broker (installing them if missing; idempotent), then formatting,
# lints (warnings are errors) and the whole test suite against the real services.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

bash scripts/services.sh start
cargo fmt --check
cargo clippy --all-targets -- -D warnings
# Release profile on purpose: the end-to-end tests push hundreds of thousands of events,
# and the benchmark uses the same build.
cargo test --release
