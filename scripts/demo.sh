#!/usr/bin/env bash
# The main job on sample data, on a fresh machine: installs and starts ClickHouse and the
# Kafka-compatible broker, builds the ingester, generates a realistic feed (duplicates,
# malformed messages, months out of order, one firm past its import cap and one outlet
# past its rural cap), produces it into Kafka, ingests it, and prints the monthly report.
#
# Every run uses a fresh database (`subsidy_demo`, recreated) and fresh topic names, so it
# can be repeated. Override the feed with DEMO_EVENTS and DEMO_SEED.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

events="${DEMO_EVENTS:-350000}"
seed="${DEMO_SEED:-2022}"
run_id="demo$(date +%s)"
data_dir=".demo/${run_id}"

bash scripts/services.sh start
echo "--- building (release)"
cargo build --release --quiet
bin=target/release/subsidy-ingester
# The dev tools (sample feeds, benchmarks) are their own binary, built alongside.
dev=target/release/subsidy-dev

export SUBSIDY_CLICKHOUSE_DATABASE="${SUBSIDY_CLICKHOUSE_DATABASE:-subsidy_demo}"
export SUBSIDY_TOPICS="${run_id}.takeout.orders,${run_id}.import.parcels,${run_id}.rural.deliveries"
export SUBSIDY_DLQ_TOPIC="${run_id}.rejected"
# The units topic belongs to the database: a recreated database gets a fresh one.
export SUBSIDY_UNITS_TOPIC="${run_id}.units"
export SUBSIDY_GROUP_ID="${run_id}-ingester"
export SUBSIDY_LOG="${SUBSIDY_LOG:-warn}"

echo "--- database ${SUBSIDY_CLICKHOUSE_DATABASE} (recreated)"
curl -sf "${SUBSIDY_CLICKHOUSE_URL:-http://127.0.0.1:8123}/" \
  --data-binary "DROP DATABASE IF EXISTS ${SUBSIDY_CLICKHOUSE_DATABASE}" >/dev/null
"$bin" migrate

echo "--- sample feed: ${events} events, seed ${seed}, into ${SUBSIDY_TOPICS}"
"$dev" sample --events "$events" --seed "$seed" --cap-crossing --out-dir "$data_dir" --produce
"$bin" refdata load --firms "$data_dir/firms.csv" --outlets "$data_dir/outlets.csv" --zones "$data_dir/zones.csv"

echo "--- ingesting until caught up"
"$bin" run --until-caught-up

echo "--- monthly report 2023, by program"
"$bin" report monthly --year 2023 --by program
echo "--- the import cap: firm cainiao, 2023 (granted stops at 200000.00; December is cut)"
"$bin" report monthly --year 2023 --by recipient --recipient cainiao
echo "--- the rural cap: outlet RO-330127-002, 2024 (granted stops at 30000.00)"
"$bin" report monthly --year 2024 --by recipient --recipient RO-330127-002
echo "--- funding split, March 2024, by district (Article 20)"
"$bin" report monthly --year 2024 --month 3 --by district
echo "--- conservation: every message is a unit or a rejection, and nothing in Kafka waits"
"$bin" conservation | tail -n 2
echo "--- rejections by reason"
curl -sf "${SUBSIDY_CLICKHOUSE_URL:-http://127.0.0.1:8123}/" --data-binary \
  "SELECT reason, count() AS messages FROM ${SUBSIDY_CLICKHOUSE_DATABASE}.rejected_events GROUP BY reason ORDER BY messages DESC FORMAT PrettyCompactNoEscapes"
