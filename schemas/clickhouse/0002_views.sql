-- Analyst views (SPEC §6). All are plain views computed at query time from `outcomes`,
-- so they are exact whatever order, partitioning, replays or instances wrote the rows.
-- Money is summed as integer fen and cast to Decimal(18,2) only at the end
-- (18.16's arrayCumSum refuses Decimal).
-- `{policy.NAME}` placeholders are the policy's numbers, filled in by `migrate` from
-- src/policy.rs (their one home); `{db}` is the database.

CREATE VIEW IF NOT EXISTS {db}.firms AS
SELECT * FROM {db}.firms_history
WHERE load_id = (SELECT max(load_id) FROM {db}.firms_history);

CREATE VIEW IF NOT EXISTS {db}.outlets AS
SELECT * FROM {db}.outlets_history
WHERE load_id = (SELECT max(load_id) FROM {db}.outlets_history);

CREATE VIEW IF NOT EXISTS {db}.zones AS
SELECT * FROM {db}.zones_history
WHERE load_id = (SELECT max(load_id) FROM {db}.zones_history);

-- One row per paid unit. Should two accepted rows ever share a unit key (two instances
-- racing, or one message stored twice) the one with the smallest (topic, partition, offset)
-- is the unit; `rejected_events` lists the others as duplicates.
CREATE VIEW IF NOT EXISTS {db}.ledger AS
SELECT
    program,
    unit_key,
    fields.1 AS recipient_id,
    fields.2 AS district_code,
    fields.3 AS local_date,
    toStartOfMonth(fields.3) AS month,
    fields.4 AS amount_fen,
    fields.5 AS event_id,
    fields.6 AS occurred_at,
    source.1 AS topic,
    source.2 AS `partition`,
    source.3 AS `offset`
FROM
(
    SELECT
        program,
        unit_key,
        argMin((recipient_id, district_code, local_date, amount_fen, event_id, occurred_at), (topic, `partition`, `offset`)) AS fields,
        min((topic, `partition`, `offset`)) AS source
    FROM {db}.outcomes
    WHERE reason = ''
    GROUP BY program, unit_key
);

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
            count() AS units,
            sum(amount_fen) AS nominal_fen
        FROM {db}.ledger
        GROUP BY program, recipient_id, district_code, month
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
        if(district_code IN ({policy.districts_paying_high_share}), {policy.district_share_percent_high}, {policy.district_share_percent_low}) AS share_percent,
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

-- Every consumed message that is not a unit, once per source message. A message stored
-- twice with different outcomes (two instances briefly sharing a partition, one seeing the
-- unit as new and the other as a duplicate) counts as accepted here; the second part then
-- lists it as a duplicate unless it is the unit. The second part lists accepted rows that
-- lost to an earlier copy of the same unit key; so messages = units + rejected rows holds.
CREATE VIEW IF NOT EXISTS {db}.rejected_events AS
SELECT
    first_received_at AS received_at,
    topic,
    `partition`,
    `offset`,
    first_reason AS reason,
    first_detail AS detail,
    first_payload AS payload,
    first_event_id AS event_id,
    first_program AS program,
    first_unit_key AS unit_key
FROM
(
    SELECT
        topic,
        `partition`,
        `offset`,
        anyIf(received_at, reason != '') AS first_received_at,
        anyIf(reason, reason != '') AS first_reason,
        anyIf(detail, reason != '') AS first_detail,
        anyIf(payload, reason != '') AS first_payload,
        anyIf(event_id, reason != '') AS first_event_id,
        anyIf(program, reason != '') AS first_program,
        anyIf(unit_key, reason != '') AS first_unit_key,
        countIf(reason = '') AS accepted_rows
    FROM {db}.outcomes
    GROUP BY topic, `partition`, `offset`
    HAVING accepted_rows = 0
)
UNION ALL
SELECT
    lost.4 AS received_at,
    lost.1 AS topic,
    lost.2 AS `partition`,
    lost.3 AS `offset`,
    'duplicate' AS reason,
    concat('unit already paid: first recorded at ', winner.1, '/', toString(winner.2), '/', toString(winner.3)) AS detail,
    '' AS payload,
    lost.5 AS event_id,
    program,
    unit_key
FROM
(
    SELECT
        program,
        unit_key,
        arraySort(groupArray((topic, `partition`, `offset`, received_at, event_id))) AS copies,
        copies[1] AS winner
    FROM
    (
        SELECT program, unit_key, topic, `partition`, `offset`, min(received_at) AS received_at, any(event_id) AS event_id
        FROM {db}.outcomes
        WHERE reason = ''
        GROUP BY program, unit_key, topic, `partition`, `offset`
    )
    GROUP BY program, unit_key
    HAVING length(copies) > 1
)
ARRAY JOIN arraySlice(copies, 2) AS lost;

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
