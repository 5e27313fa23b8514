-- The actions on the ledger (SPEC §8: voids, revocations) and what clawback needs.
-- `{db}` is replaced by the configured database. Every statement is idempotent; an
-- `ADD COLUMN IF NOT EXISTS` is applied only when the catalogue lacks the column (18.16
-- does not know the clause; `migrate` asks `system.columns`). SQL runs on 18.16 and 24.x+.

-- Per record: the firm Article 18 judged and Article 21 revokes (the platform for takeout
-- orders and idle days, the outlet's firm for rural deliveries, the recipient firm
-- otherwise; the revoked firm for a revocation); free text (a void's reason, a
-- revocation's issuer, a tab, its reason); and how a void and its record met:
-- `voided = 1` on a record whose void was decided first, `voids_position` = 1 + the
-- ledger position of the record a void names when the record was decided first (the
-- record's row is then found by primary key: same ledger partition, position split into
-- offset and index). Rows written before this migration read the defaults.
ALTER TABLE {db}.unit_decisions ADD COLUMN IF NOT EXISTS eligible_firm String DEFAULT '';
ALTER TABLE {db}.unit_decisions ADD COLUMN IF NOT EXISTS note String DEFAULT '';
ALTER TABLE {db}.unit_decisions ADD COLUMN IF NOT EXISTS voided UInt8 DEFAULT 0;
ALTER TABLE {db}.unit_decisions ADD COLUMN IF NOT EXISTS voids_position UInt64 DEFAULT 0;

-- The few ledger rows the views look at one by one: infections, village openings and
-- closings (order-independent awards and anniversaries), accepted voids and revocations,
-- and every record voided on arrival. A few per firm, not per parcel, so reading them all
-- costs little whatever the history; ordered by key for the lookups by program and key.
CREATE TABLE IF NOT EXISTS {db}.ledger_records
(
    program String,
    unit_key String,
    recipient_id String,
    district_code String,
    eligible_firm String,
    local_date Date,
    occurred_at DateTime,
    event_id String,
    note String,
    amount_fen Int64,
    voided UInt8,
    voids_position UInt64,
    ledger_partition UInt32,
    ledger_offset UInt64,
    ledger_index UInt32
)
ENGINE = MergeTree
ORDER BY (program, unit_key);

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.ledger_records_feed TO {db}.ledger_records AS
SELECT
    program, unit_key, recipient_id, district_code, eligible_firm, local_date, occurred_at,
    event_id, note, amount_fen, voided, voids_position, ledger_partition, ledger_offset,
    ledger_index
FROM {db}.unit_decisions
WHERE reason = ''
  AND (program IN ('courier_infection', 'village_outlet_opened', 'village_outlet_closed', 'unit_voided', 'subsidy_revoked')
       OR voided = 1);

-- Nominal totals per eligible firm and booking day, kept incrementally like
-- `monthly_nominal` (voided records included; the views take them out). Clawback reads
-- only the revoked firms' days (the leading key column), to attribute a month's grant to
-- its units in booking-date order.
CREATE TABLE IF NOT EXISTS {db}.daily_nominal
(
    eligible_firm String,
    program String,
    recipient_id String,
    district_code String,
    local_date Date,
    units Int64,
    nominal_fen Int64
)
ENGINE = SummingMergeTree((units, nominal_fen))
PARTITION BY toYear(local_date)
ORDER BY (eligible_firm, program, recipient_id, district_code, local_date);

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.daily_nominal_feed TO {db}.daily_nominal AS
SELECT
    eligible_firm,
    program,
    recipient_id,
    district_code,
    local_date,
    toInt64(count()) AS units,
    sum(amount_fen) AS nominal_fen
FROM {db}.unit_decisions
WHERE reason = ''
  AND program NOT IN ('courier_infection', 'village_outlet_closed', 'unit_voided', 'subsidy_revoked')
GROUP BY eligible_firm, program, recipient_id, district_code, local_date;
