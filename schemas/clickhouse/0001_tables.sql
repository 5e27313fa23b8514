-- Tables of the subsidy ingester. `{db}` is replaced by the configured database.
-- Every statement is idempotent (IF NOT EXISTS): a second `migrate` changes nothing.
-- SQL here must run on ClickHouse 18.16 (Debian) and on current releases (24.x+).

-- One row per consumed Kafka message: its source coordinates AND its outcome.
-- The row is at once the result and the checkpoint: a partition resumes after the highest
-- offset stored here, so offsets live with the data and a batch insert that lands only in
-- part still leaves a gap-free prefix per partition (rows are written in offset order).
-- `reason = ''` marks an accepted unit; anything else is a rejection (SPEC §5).
-- A plain MergeTree on purpose: a message written twice (two instances briefly sharing a
-- partition) may carry two different outcomes, and a ReplacingMergeTree would keep
-- whichever was inserted last, possibly erasing the unit. The views read each source once
-- and prefer an accepted row, so repeated rows never change a total.
CREATE TABLE IF NOT EXISTS {db}.outcomes
(
    topic String,
    `partition` UInt32,
    `offset` UInt64,
    received_at DateTime,
    event_id String,
    reason String,
    detail String,
    payload String,
    program String,
    unit_key String,
    recipient_id String,
    district_code String,
    occurred_at DateTime,
    local_date Date,
    amount_fen Int64
)
ENGINE = MergeTree
ORDER BY (topic, `partition`, `offset`);

-- Reference data. Every `refdata load` appends a complete snapshot under a new `load_id`
-- (milliseconds since the epoch); the current data is the snapshot with the largest load_id.
-- Old snapshots stay for audit.
CREATE TABLE IF NOT EXISTS {db}.firms_history
(
    load_id UInt64,
    source_file String,
    firm_id String,
    name String,
    credit_code String,
    district_code String,
    legal_entity UInt8,
    licensed UInt8,
    in_monitoring UInt8,
    last_major_penalty_on Nullable(Date)
)
ENGINE = MergeTree
ORDER BY (load_id, firm_id);

CREATE TABLE IF NOT EXISTS {db}.outlets_history
(
    load_id UInt64,
    source_file String,
    outlet_id String,
    firm_id String,
    district_code String,
    village_code String,
    enrolled_on Date
)
ENGINE = MergeTree
ORDER BY (load_id, outlet_id);

-- `active_from`/`active_to` keep the RFC 3339 text exactly as loaded (sub-second precision
-- and offset included); the DateTime columns are for analysts' convenience.
CREATE TABLE IF NOT EXISTS {db}.zones_history
(
    load_id UInt64,
    source_file String,
    zone_id String,
    zone_type String,
    district_code String,
    active_from String,
    active_to String,
    active_from_utc DateTime,
    active_to_utc DateTime
)
ENGINE = MergeTree
ORDER BY (load_id, zone_id);
