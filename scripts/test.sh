#!/usr/bin/env bash
# Sets up everything the tests need and runs every check CI runs: starts ClickHouse 18.16,
# the Kafka-compatible broker and the ClickHouse 26.9 stand-in (installing them if missing;
# idempotent), then formatting, lints (warnings are errors), the whole test suite against
# ClickHouse 18.16, and the suite's ClickHouse-facing tests again against 26.9.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

bash scripts/services.sh start-all
cargo fmt --check
cargo clippy --all-targets -- -D warnings

# Release profile on purpose: the end-to-end tests push hundreds of thousands of events,
# and the benchmark uses the same build.
echo "--- tests against ClickHouse 18.16 (Debian) at http://127.0.0.1:${SUBSIDY_CH_HTTP_PORT:-8123}"
SUBSIDY_TEST_CLICKHOUSE_URL="http://127.0.0.1:${SUBSIDY_CH_HTTP_PORT:-8123}" cargo test --release

# The stand-in serves one request at a time, so the heaviest files stay on 18.16: the
# fault-injection soak (15 crashes of a 400k-event feed; its SQL is the same views the e2e
# test reads) and the outage test (it stops and starts a private 18.16 server).
echo "--- tests against ClickHouse 26.9 (chDB stand-in) at http://127.0.0.1:${SUBSIDY_CH26_HTTP_PORT:-18123}"
SUBSIDY_TEST_CLICKHOUSE_URL="http://127.0.0.1:${SUBSIDY_CH26_HTTP_PORT:-18123}" cargo test --release \
  --test cli_basics --test pipeline_e2e --test replay --test poison --test hostile_input
