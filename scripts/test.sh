#!/usr/bin/env bash
# Runs every check CI runs: formatting, lints (warnings are errors) and the whole
# test suite. Integration tests need Kafka and ClickHouse: start them first with
# `bash scripts/services.sh start` (.ci/run does).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

cargo fmt --check
cargo clippy --all-targets -- -D warnings
# Release profile on purpose: the benchmark also runs on the release build, so CI
# compiles the crate and its dependencies (librdkafka included) in release once
# and the tests and the benchmark share those artifacts.
cargo test --release
