-- The ledger stage (history scale). `{db}` is replaced by the configured database.
-- Every statement is idempotent (IF NOT EXISTS). SQL here runs on 18.16 and on 24.x+.

-- One row per unit record the ledger stage decided: a unit (`reason = ''`), a `duplicate`
-- or `storage_refused`. Each unit key has one owner (its units-topic partition), so a key
-- is decided once: no view has to deduplicate. The units-topic coordinates
-- (ledger_partition, ledger_offset, ledger_index: a message carries a set of records) are
-- the stage's checkpoint, as (topic, partition,
-- offset) of `outcomes` are the admit stage's; rows of a partition are inserted in offset
-- order, so a partition resumes after its largest stored offset. Partitioned by year, not
-- month: a batch of a feed that spans many months would otherwise write one part (~40
-- files) per month it touches, and creating those files cost ClickHouse more than the
-- rows did; a month's ledger or rejections still read only its year.
CREATE TABLE IF NOT EXISTS {db}.unit_decisions
(
    ledger_partition UInt32,
    ledger_offset UInt64,
    ledger_index UInt32,
    topic String,
    `partition` UInt32,
    `offset` UInt64,
    received_at DateTime,
    decided_at DateTime,
    event_id String,
    reason String,
    detail String,
    program String,
    unit_key String,
    recipient_id String,
    district_code String,
    occurred_at DateTime,
    local_date Date,
    amount_fen Int64
)
ENGINE = MergeTree
PARTITION BY toYear(local_date)
ORDER BY (ledger_partition, ledger_offset, ledger_index);

-- Nominal totals per (month, program, recipient, district), kept incrementally: the
-- materialized view below adds each inserted unit. Caps and the Article 20 split are
-- computed over these cells only (at most 12 per recipient and year), so the analyst
-- views cost the same whatever the history. Rows are summed when parts merge; readers
-- always `sum()` (a cell may still be in several rows, and `repair aggregates` inserts
-- corrections as signed deltas).
CREATE TABLE IF NOT EXISTS {db}.monthly_nominal
(
    month Date,
    program String,
    recipient_id String,
    district_code String,
    units Int64,
    nominal_fen Int64
)
ENGINE = SummingMergeTree((units, nominal_fen))
PARTITION BY toYear(month)
ORDER BY (program, recipient_id, month, district_code);

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.monthly_nominal_feed TO {db}.monthly_nominal AS
SELECT
    toStartOfMonth(local_date) AS month,
    program,
    recipient_id,
    district_code,
    toInt64(count()) AS units,
    sum(amount_fen) AS nominal_fen
FROM {db}.unit_decisions
WHERE reason = ''
GROUP BY month, program, recipient_id, district_code;
