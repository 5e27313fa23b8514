-- Analyst views (SPEC §6). Plain views over the stages' tables: `outcomes` (one row per
-- consumed message, written by the admit stage), `unit_decisions` (the ledger stage's
-- decision per routed unit) and the `monthly_nominal` aggregates.
-- Money is summed as integer fen and cast to Decimal(18,2) only at the end
-- (18.16's arrayCumSum refuses Decimal).
-- `{policy.NAME}` placeholders are the policy's numbers, filled in by `migrate` from
-- the editions (editions/*.toml, their one home; src/edition.rs); `{db}` is the database.

CREATE VIEW IF NOT EXISTS {db}.firms AS
SELECT * FROM {db}.firms_history
WHERE load_id = (SELECT max(load_id) FROM {db}.firms_history);

CREATE VIEW IF NOT EXISTS {db}.outlets AS
SELECT * FROM {db}.outlets_history
WHERE load_id = (SELECT max(load_id) FROM {db}.outlets_history);

CREATE VIEW IF NOT EXISTS {db}.zones AS
SELECT * FROM {db}.zones_history
WHERE load_id = (SELECT max(load_id) FROM {db}.zones_history);

-- One row per paid unit: the ledger stage's units (each key has one owner, so one row).
CREATE VIEW IF NOT EXISTS {db}.ledger AS
SELECT
    program,
    unit_key,
    recipient_id,
    district_code,
    local_date,
    toStartOfMonth(local_date) AS month,
    amount_fen,
    event_id,
    occurred_at,
    topic,
    `partition`,
    `offset`
FROM {db}.unit_decisions
WHERE reason = '';

-- Caps consumed in event-time order within a calendar year (SPEC §2), in fen:
-- granted(m) = min(max(cap - sum(N(k), k < m), 0), N(m)) per recipient and year.
-- Months of one recipient are sorted, their nominal amounts summed cumulatively.
CREATE VIEW IF NOT EXISTS {db}.subsidy_monthly_fen AS
SELECT
    cell.1 AS month,
    program,
    recipient_id,
    cell.2 AS district_code,
    cell.3 AS units,
    cell.4 AS nominal_fen,
    granted_fen
FROM
(
    SELECT
        program,
        recipient_id,
        year,
        {policy.cap_fen} AS cap_fen,
        arraySort(groupArray((month, district_code, units, nominal_fen))) AS cells,
        arrayCumSum(arrayMap(c -> c.4, cells)) AS nominal_upto_fen,
        arrayMap((c, upto) -> if(cap_fen < 0, c.4, least(greatest(cap_fen - (upto - c.4), 0), c.4)), cells, nominal_upto_fen) AS granted_cells_fen
    FROM
    (
        SELECT
            program,
            recipient_id,
            district_code,
            month,
            toYear(month) AS year,
            toUInt64(sum(cell_units)) AS units,
            sum(cell_nominal_fen) AS nominal_fen
        FROM
        (
            -- Zero-pay records (infections, closings) have no cells of their own; a
            -- platform month with an infection record of its platform in that month is
            -- paid 0 (a unit still), whichever arrived first.
            SELECT program, recipient_id, district_code, month, units AS cell_units,
                if(program = 'platform_month_attested' AND (recipient_id, month) IN
                    (SELECT recipient_id, month FROM {db}.monthly_nominal WHERE program = 'courier_infection' GROUP BY recipient_id, month HAVING sum(units) > 0),
                    0, nominal_fen) AS cell_nominal_fen
            FROM {db}.monthly_nominal
            WHERE program NOT IN ('courier_infection', 'village_outlet_closed')
        )
        GROUP BY program, recipient_id, district_code, month
        HAVING sum(cell_units) != 0 OR sum(cell_nominal_fen) != 0
    )
    GROUP BY program, recipient_id, year
)
ARRAY JOIN cells AS cell, granted_cells_fen AS granted_fen;

CREATE VIEW IF NOT EXISTS {db}.subsidy_monthly AS
SELECT
    month,
    program,
    recipient_id,
    district_code,
    toUInt64(units) AS units,
    CAST(nominal_fen AS Decimal(18, 2)) / 100 AS nominal,
    CAST(granted_fen AS Decimal(18, 2)) / 100 AS granted
FROM {db}.subsidy_monthly_fen;

-- Article 20: the districts of the policy's list (萧山 余杭 临安 桐庐 淳安 建德) pay the high
-- share (75 %), the others the low one (50 %), rounded half-even to the fen; the city pays
-- the rest.
CREATE VIEW IF NOT EXISTS {db}.subsidy_funding_monthly_fen AS
SELECT
    month,
    district_code,
    program,
    granted_fen,
    share_floor_fen + if(share_rest > 50 OR (share_rest = 50 AND share_floor_fen % 2 = 1), 1, 0) AS district_share_fen,
    granted_fen - district_share_fen AS city_share_fen
FROM
(
    SELECT
        month,
        district_code,
        program,
        granted_fen,
        {policy.district_share_percent} AS share_percent,
        intDiv(granted_fen * share_percent, 100) AS share_floor_fen,
        (granted_fen * share_percent) % 100 AS share_rest
    FROM
    (
        SELECT month, district_code, program, sum(granted_fen) AS granted_fen
        FROM {db}.subsidy_monthly_fen
        GROUP BY month, district_code, program
    )
);

CREATE VIEW IF NOT EXISTS {db}.subsidy_funding_monthly AS
SELECT
    month,
    district_code,
    program,
    CAST(granted_fen AS Decimal(18, 2)) / 100 AS granted,
    CAST(district_share_fen AS Decimal(18, 2)) / 100 AS district_share,
    CAST(city_share_fen AS Decimal(18, 2)) / 100 AS city_share
FROM {db}.subsidy_funding_monthly_fen;

-- Every consumed message that is not a unit: the admit stage's rejections (SPEC §5 steps
-- 1–6, payload kept byte for byte) and the ledger stage's (`duplicate`, step 7, and
-- `storage_refused`; their payload stays in the source topic at the coordinates given).
-- Each source is written once by its stage, so nothing is grouped here.
CREATE VIEW IF NOT EXISTS {db}.rejected_events AS
SELECT received_at, topic, `partition`, `offset`, reason, detail, payload, event_id, program, unit_key
FROM {db}.outcomes
WHERE reason != ''
UNION ALL
SELECT received_at, topic, `partition`, `offset`, reason, detail, '' AS payload, event_id, program, unit_key
FROM {db}.unit_decisions
WHERE reason != '';

-- Conservation, per topic and partition: consumed messages = ledgered units + rejected rows,
-- and the consumed offsets form one run without gaps (`gaps` = offsets missing between the
-- first and the last consumed one).
CREATE VIEW IF NOT EXISTS {db}.conservation AS
SELECT
    topic,
    `partition`,
    messages,
    min_offset,
    max_offset,
    units,
    rejected,
    (max_offset - min_offset + 1) - messages AS gaps,
    messages = units + rejected AND gaps = 0 AS balanced
FROM
(
    SELECT *
    FROM
    (
        SELECT topic, `partition`, count() AS messages, min(`offset`) AS min_offset, max(`offset`) AS max_offset
        FROM (SELECT DISTINCT topic, `partition`, `offset` FROM {db}.outcomes)
        GROUP BY topic, `partition`
    ) AS consumed
    ANY LEFT JOIN
    (
        SELECT topic, `partition`, count() AS units FROM {db}.ledger GROUP BY topic, `partition`
    ) AS ledgered USING (topic, `partition`)
) AS consumed_ledgered
ANY LEFT JOIN
(
    SELECT topic, `partition`, count() AS rejected FROM {db}.rejected_events GROUP BY topic, `partition`
) AS rejections USING (topic, `partition`);
