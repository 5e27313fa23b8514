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

-- One row per ledger record: the ledger stage's units (each key has one owner, so one
-- row), voids and revocations included (they pay nothing). `voided` marks a record whose
-- void came first; one voided later is listed in `voided_records`.
CREATE VIEW IF NOT EXISTS {db}.ledger AS
SELECT
    program,
    unit_key,
    recipient_id,
    district_code,
    eligible_firm,
    local_date,
    toStartOfMonth(local_date) AS month,
    amount_fen,
    voided,
    event_id,
    occurred_at,
    topic,
    `partition`,
    `offset`
FROM {db}.unit_decisions
WHERE reason = '';

-- Every voided ledger record, once, with its cell: a record whose void came first is
-- marked on arrival (and kept in `ledger_records`); a void of a record decided before it
-- names the record's row, read by primary key (same ledger partition, position =
-- offset * 65536 + index). Voids are few, so this reads a few granules.
CREATE VIEW IF NOT EXISTS {db}.voided_records AS
SELECT program, unit_key, recipient_id, district_code, eligible_firm, local_date, amount_fen
FROM {db}.ledger_records
WHERE voided = 1 AND program != 'unit_voided'
UNION ALL
SELECT program, unit_key, recipient_id, district_code, eligible_firm, local_date, amount_fen
FROM {db}.unit_decisions
WHERE (ledger_partition, ledger_offset, ledger_index) IN
    (SELECT ledger_partition, toUInt64(intDiv(voids_position - 1, 65536)), toUInt32((voids_position - 1) % 65536)
     FROM {db}.ledger_records WHERE program = 'unit_voided' AND voids_position > 0)
  AND reason = '';

-- Infection records and village closings that stand (not voided).
CREATE VIEW IF NOT EXISTS {db}.standing_records AS
SELECT program, unit_key, recipient_id, district_code, local_date
FROM {db}.ledger_records
WHERE program IN ('courier_infection', 'village_outlet_closed')
  AND (program, unit_key) NOT IN (SELECT program, unit_key FROM {db}.voided_records);

-- Village outlets' anniversaries (SPEC §8), computed when queried ("today" is the local
-- date now): the k-th anniversary of an opening (12·k months on, leap days clamped), for
-- k up to the count of the edition in force on the opening date, when an edition in force
-- on that date pays one, it is not after today, it comes before the outlet's earliest
-- standing closing, and the firm passes Article 18 on that date (reference data as loaded
-- now). Those of a voided opening are listed with `voided = 1` and pay nothing.
CREATE VIEW IF NOT EXISTS {db}.village_anniversaries AS
SELECT
    firm_id,
    outlet_id,
    district_code,
    opened_on,
    k AS anniversary_number,
    anniversary,
    voided,
    if(voided = 1, 0, {policy.anniversary_fen}) AS amount_fen
FROM
(
    SELECT
        firm_id, outlet_id, district_code, opened_on, voided, closed_on,
        arrayJoin(arrayMap(i -> i + 1, range(toUInt64({policy.anniversaries})))) AS k,
        addMonths(opened_on, toInt32(12 * k)) AS anniversary
    FROM
    (
        SELECT
            recipient_id AS firm_id,
            unit_key AS outlet_id,
            district_code,
            local_date AS opened_on,
            toUInt8((program, unit_key) IN (SELECT program, unit_key FROM {db}.voided_records)) AS voided
        FROM {db}.ledger_records
        WHERE program = 'village_outlet_opened'
    ) AS openings
    ANY LEFT JOIN
    (
        SELECT unit_key AS outlet_id, min(local_date) AS closed_on, 1 AS closed
        FROM {db}.standing_records
        WHERE program = 'village_outlet_closed'
        GROUP BY unit_key
    ) AS closings USING (outlet_id)
    WHERE closed = 0 OR anniversary < closed_on
) AS due
-- ALL: on 24.x+ an ANY INNER JOIN keeps one row per key of the left side too.
ALL INNER JOIN
(
    SELECT firm_id, legal_entity, licensed, in_monitoring, last_major_penalty_on
    FROM {db}.firms
) AS firms USING (firm_id)
WHERE {policy.anniversary_fen} > 0
  AND anniversary <= toDate(now(), 'Asia/Shanghai')
  AND legal_entity = 1 AND licensed = 1 AND in_monitoring = 1
  AND NOT (isNotNull(last_major_penalty_on)
           AND assumeNotNull(last_major_penalty_on) <= anniversary
           AND anniversary < addMonths(assumeNotNull(last_major_penalty_on), toInt32({policy.penalty_months})));

-- The cells before caps: the aggregates of every paying program, less the voided
-- records (still counted in `units`, also in `voided_units`), plus the anniversaries.
-- Zero-pay records (infections, closings) and the actions (voids, revocations) have no
-- cells; a platform month with a standing infection record of its platform in that month
-- is paid 0 (a unit still), whichever arrived first.
CREATE VIEW IF NOT EXISTS {db}.subsidy_cells_fen AS
SELECT
    month,
    program,
    recipient_id,
    district_code,
    toUInt64(sum(cell_units)) AS units,
    toUInt64(sum(cell_voided_units)) AS voided_units,
    if(program = 'platform_month_attested' AND (recipient_id, month) IN
        (SELECT recipient_id, toStartOfMonth(local_date) FROM {db}.standing_records WHERE program = 'courier_infection'),
        0, sum(cell_nominal_fen)) AS nominal_fen
FROM
(
    SELECT month, program, recipient_id, district_code, units AS cell_units, toInt64(0) AS cell_voided_units, nominal_fen AS cell_nominal_fen
    FROM {db}.monthly_nominal
    WHERE program NOT IN ('courier_infection', 'village_outlet_closed', 'unit_voided', 'subsidy_revoked')
    UNION ALL
    SELECT toStartOfMonth(local_date) AS month, program, recipient_id, district_code, toInt64(0) AS cell_units, toInt64(1) AS cell_voided_units, -amount_fen AS cell_nominal_fen
    FROM {db}.voided_records
    WHERE program NOT IN ('courier_infection', 'village_outlet_closed')
    UNION ALL
    SELECT toStartOfMonth(anniversary) AS month, 'village_outlet_opened' AS program, firm_id AS recipient_id, district_code, toInt64(1) AS cell_units, toInt64(voided) AS cell_voided_units, amount_fen AS cell_nominal_fen
    FROM {db}.village_anniversaries
)
GROUP BY month, program, recipient_id, district_code
HAVING units != 0 OR nominal_fen != 0;

-- Caps consumed in event-time order within a calendar year (SPEC §2), in fen:
-- granted(m) = min(max(cap - sum(N(k), k < m), 0), N(m)) per recipient and year.
-- Months of one recipient are sorted, their nominal amounts summed cumulatively.
CREATE VIEW IF NOT EXISTS {db}.subsidy_granted_fen AS
SELECT
    cell.1 AS month,
    program,
    recipient_id,
    cell.2 AS district_code,
    cell.3 AS units,
    cell.4 AS voided_units,
    cell.5 AS nominal_fen,
    granted_fen
FROM
(
    SELECT
        program,
        recipient_id,
        year,
        {policy.cap_fen} AS cap_fen,
        arraySort(groupArray((month, district_code, units, voided_units, nominal_fen))) AS cells,
        arrayCumSum(arrayMap(c -> c.5, cells)) AS nominal_upto_fen,
        arrayMap((c, upto) -> if(cap_fen < 0, c.5, least(greatest(cap_fen - (upto - c.5), 0), c.5)), cells, nominal_upto_fen) AS granted_cells_fen
    FROM
    (
        SELECT month, program, recipient_id, district_code, toYear(month) AS year, units, voided_units, nominal_fen
        FROM {db}.subsidy_cells_fen
    )
    GROUP BY program, recipient_id, year
)
ARRAY JOIN cells AS cell, granted_cells_fen AS granted_fen;

-- Accepted revocations (Article 21), their unit key `firm/period_from/period_to` and note
-- `revoked_by<TAB>reason` taken apart.
CREATE VIEW IF NOT EXISTS {db}.revocation_records AS
SELECT
    unit_key AS revocation_key,
    event_id,
    eligible_firm AS firm_id,
    toDate(splitByChar('/', unit_key)[2]) AS period_from,
    toDate(splitByChar('/', unit_key)[3]) AS period_to,
    local_date AS revoked_on,
    occurred_at,
    substring(note, position(note, '\t') + 1) AS reason,
    substring(note, 1, position(note, '\t') - 1) AS revoked_by
FROM {db}.ledger_records
WHERE program = 'subsidy_revoked';

-- Clawback per booking day of a revoked firm's payments: each month's grant of a cell is
-- attributed to the cell's days in date order, earliest first (a cap cuts the latest);
-- a day is clawed back in full of what it was attributed when a revocation of its firm
-- covers it ([period_from, period_to], or on or after the revocation's own date), and
-- is attributed to the covering revocation earliest by occurred_at, then by key.
CREATE VIEW IF NOT EXISTS {db}.clawback_days_fen AS
SELECT
    firm_id,
    program,
    recipient_id,
    district_code,
    month,
    day,
    units,
    attributed_fen,
    argMin(revocation_key, (rev_occurred_at, revocation_key)) AS revocation_key
FROM
(
    SELECT firm_id, program, recipient_id, district_code, month, day_entry.1 AS day, day_entry.2 AS units, attributed_fen
    FROM
    (
        SELECT
            firm_id, program, recipient_id, district_code, month, days,
            arrayMap((d, upto, granted) -> least(greatest(granted - (upto - d.3), 0), d.3), days, upto_fen, replicate(granted_cell_fen, days)) AS attributed_days_fen
        FROM
        (
        SELECT
            firm_id, program, recipient_id, district_code, month,
            arraySort(groupArray((local_date, day_units, day_nominal_fen))) AS days,
            arrayCumSum(arrayMap(d -> d.3, days)) AS upto_fen,
            any(cell_granted_fen) AS granted_cell_fen
        FROM
        (
        SELECT firm_id, program, recipient_id, district_code, month, local_date, day_units, day_nominal_fen, cell_granted_fen
        FROM
        (
            SELECT firm_id, program, recipient_id, district_code, toStartOfMonth(local_date) AS month, local_date,
                sum(units) AS day_units, sum(nominal_fen) AS day_nominal_fen
            FROM
            (
                SELECT eligible_firm AS firm_id, program, recipient_id, district_code, local_date, units, nominal_fen
                FROM {db}.daily_nominal
                WHERE eligible_firm IN (SELECT firm_id FROM {db}.revocation_records)
                UNION ALL
                SELECT eligible_firm AS firm_id, program, recipient_id, district_code, local_date, toInt64(-1) AS units, -amount_fen AS nominal_fen
                FROM {db}.voided_records
                WHERE eligible_firm IN (SELECT firm_id FROM {db}.revocation_records)
                  AND program NOT IN ('courier_infection', 'village_outlet_closed')
                UNION ALL
                SELECT firm_id, 'village_outlet_opened' AS program, firm_id AS recipient_id, district_code, anniversary AS local_date, toInt64(1) AS units, amount_fen AS nominal_fen
                FROM {db}.village_anniversaries
                WHERE voided = 0 AND firm_id IN (SELECT firm_id FROM {db}.revocation_records)
            )
            GROUP BY firm_id, program, recipient_id, district_code, local_date
        ) AS paid_days
        ANY LEFT JOIN
        (
            SELECT program, recipient_id, district_code, month, granted_fen AS cell_granted_fen
            FROM {db}.subsidy_granted_fen
            WHERE recipient_id IN (SELECT recipient_id FROM {db}.daily_nominal WHERE eligible_firm IN (SELECT firm_id FROM {db}.revocation_records))
               OR recipient_id IN (SELECT firm_id FROM {db}.revocation_records)
        ) AS granted USING (program, recipient_id, district_code, month)
        )
        GROUP BY firm_id, program, recipient_id, district_code, month
        )
    )
    ARRAY JOIN days AS day_entry, attributed_days_fen AS attributed_fen
) AS payment_days
ALL INNER JOIN
(
    SELECT firm_id, revocation_key, occurred_at AS rev_occurred_at, period_from, period_to, revoked_on
    FROM {db}.revocation_records
) AS revocations USING (firm_id)
WHERE (day >= period_from AND day <= period_to) OR day >= revoked_on
GROUP BY firm_id, program, recipient_id, district_code, month, day, units, attributed_fen;

-- Every cell with its cap applied and Article 21's clawback: net = granted - clawed_back.
CREATE VIEW IF NOT EXISTS {db}.subsidy_monthly_fen AS
SELECT
    month,
    program,
    recipient_id,
    district_code,
    units,
    voided_units,
    nominal_fen,
    granted_fen,
    clawed_back_fen,
    granted_fen - clawed_back_fen AS net_fen
FROM {db}.subsidy_granted_fen
ANY LEFT JOIN
(
    SELECT month, program, recipient_id, district_code, sum(attributed_fen) AS clawed_back_fen
    FROM {db}.clawback_days_fen
    GROUP BY month, program, recipient_id, district_code
) AS clawed USING (month, program, recipient_id, district_code);

CREATE VIEW IF NOT EXISTS {db}.subsidy_monthly AS
SELECT
    month,
    program,
    recipient_id,
    district_code,
    toUInt64(units) AS units,
    toUInt64(voided_units) AS voided_units,
    CAST(nominal_fen AS Decimal(18, 2)) / 100 AS nominal,
    CAST(granted_fen AS Decimal(18, 2)) / 100 AS granted,
    CAST(clawed_back_fen AS Decimal(18, 2)) / 100 AS clawed_back,
    CAST(net_fen AS Decimal(18, 2)) / 100 AS net
FROM {db}.subsidy_monthly_fen;

-- The audit of Article 21: each accepted revocation, who and when, the period, why, and
-- what it clawed back (payments several revocations cover count for the earliest).
CREATE VIEW IF NOT EXISTS {db}.revocations_fen AS
SELECT
    event_id,
    firm_id,
    period_from,
    period_to,
    revoked_on,
    occurred_at,
    reason,
    revoked_by,
    revocation_key,
    toUInt64(clawed_units) AS units,
    toInt64(clawed_fen) AS clawed_back_fen
FROM {db}.revocation_records
ANY LEFT JOIN
(
    SELECT revocation_key, sum(units) AS clawed_units, sum(attributed_fen) AS clawed_fen
    FROM {db}.clawback_days_fen
    GROUP BY revocation_key
) AS clawed USING (revocation_key);

CREATE VIEW IF NOT EXISTS {db}.revocations AS
SELECT
    event_id, firm_id, period_from, period_to, revoked_on, occurred_at, reason, revoked_by,
    units,
    clawed_back_fen,
    CAST(clawed_back_fen AS Decimal(18, 2)) / 100 AS clawed_back
FROM {db}.revocations_fen;

-- Article 20: the districts of the policy's list (萧山 余杭 临安 桐庐 淳安 建德) pay the high
-- share (75 %), the others the low one (50 %), rounded half-even to the fen; the city pays
-- the rest. The same split of `net` gives the shares after clawback.
CREATE VIEW IF NOT EXISTS {db}.subsidy_funding_monthly_fen AS
SELECT
    month,
    district_code,
    program,
    granted_fen,
    share_floor_fen + if(share_rest > 50 OR (share_rest = 50 AND share_floor_fen % 2 = 1), 1, 0) AS district_share_fen,
    granted_fen - district_share_fen AS city_share_fen,
    clawed_back_fen,
    net_fen,
    net_floor_fen + if(net_rest > 50 OR (net_rest = 50 AND net_floor_fen % 2 = 1), 1, 0) AS district_share_net_fen,
    net_fen - district_share_net_fen AS city_share_net_fen
FROM
(
    SELECT
        month,
        district_code,
        program,
        granted_fen,
        clawed_back_fen,
        net_fen,
        {policy.district_share_percent} AS share_percent,
        intDiv(granted_fen * share_percent, 100) AS share_floor_fen,
        (granted_fen * share_percent) % 100 AS share_rest,
        intDiv(net_fen * share_percent, 100) AS net_floor_fen,
        (net_fen * share_percent) % 100 AS net_rest
    FROM
    (
        SELECT month, district_code, program, sum(granted_fen) AS granted_fen,
            sum(clawed_back_fen) AS clawed_back_fen, sum(net_fen) AS net_fen
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
    CAST(city_share_fen AS Decimal(18, 2)) / 100 AS city_share,
    CAST(clawed_back_fen AS Decimal(18, 2)) / 100 AS clawed_back,
    CAST(net_fen AS Decimal(18, 2)) / 100 AS net,
    CAST(district_share_net_fen AS Decimal(18, 2)) / 100 AS district_share_net,
    CAST(city_share_net_fen AS Decimal(18, 2)) / 100 AS city_share_net
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
