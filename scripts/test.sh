#!/usr/bin/env bash
# Sets up everything the tests need and runs every check CI runs: starts ClickHouse 18.16,
# the Kafka-compatible broker and the ClickHouse 26.9 stand-in (installing them if missing;
# idempotent), then formatting, lints (warnings are errors), the whole test suite against
# ClickHouse 18.16, and every ClickHouse-facing test file but one again against 26.9.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

bash scripts/services.sh start-all
cargo fmt --all --check
cargo clippy --workspace --all-targets -- -D warnings

# Release profile on purpose: the end-to-end tests push hundreds of thousands of events,
# and the benchmark uses the same build.
echo "--- tests against ClickHouse 18.16 (Debian) at http://127.0.0.1:${SUBSIDY_CH_HTTP_PORT:-8123}"
SUBSIDY_TEST_CLICKHOUSE_URL="http://127.0.0.1:${SUBSIDY_CH_HTTP_PORT:-8123}" cargo test --release

# Every test file that talks to ClickHouse, but the outage test: it stops and starts a
# private server of its own, which only 18.16 can be here. (Unit tests, the schema and
# oracle self-checks do not touch ClickHouse.)
echo "--- tests against ClickHouse 26.9 (chDB stand-in) at http://127.0.0.1:${SUBSIDY_CH26_HTTP_PORT:-18123}"
SUBSIDY_TEST_CLICKHOUSE_URL="http://127.0.0.1:${SUBSIDY_CH26_HTTP_PORT:-18123}" cargo test --release \
  --test cli_basics --test pipeline_e2e --test replay --test poison --test hostile_input \
  --test fault_injection --test aggregates --test programs --test actions --test full_policy \
  --test dashboard --test validate
