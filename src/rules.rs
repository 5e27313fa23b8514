//! Eligibility rules: a decoded [`Event`] plus the [`RefData`] and the [`Editions`] → the
//! [`Unit`] it earns, or the [`Rejection`] of SPEC §5 steps 5–6 (and §8). Pure: no I/O, no
//! clock, no state; dedup (step 7), caps, infections' cancellations and anniversaries are
//! applied later, over the ledger's aggregates.
//!
//! ## Checks, in order (the first failing check wins)
//!
//! 4. (the one step-4 check that needs the editions) `schema_violation`: a
//!    `district_code` that is not one of the editions' districts.
//! 5. `outside_policy_period`: no edition is in force on the booking date `d` (the local
//!    date of `occurred_at`; an attestation's is the last day of its month, an idle day's
//!    its `date`).
//! 6. Program checks, each program's in this order:
//!    - `takeout_order`: `unknown_zone`, `zone_inactive` (`active_from <= occurred_at <=
//!      active_to`, comparing instants, both ends inclusive), `courier_not_released`,
//!      `unknown_firm` (the `platform_id` must be a firm), `firm_ineligible` (the platform);
//!    - `import_parcel`: `unknown_firm`, `firm_ineligible` (`firm_id`);
//!    - `rural_delivery`: `unknown_outlet`, `outlet_firm_mismatch` (the event's `firm_id` is
//!      not the outlet's firm), `unknown_firm`, `firm_ineligible`, `outlet_not_enrolled`
//!      ([`outlet_enrolled_on`]);
//!    - `platform_month_attested`: `unknown_firm`, `firm_ineligible` (the platform, on `d`),
//!      `attestation_incomplete`;
//!    - `courier_infection`, `village_outlet_closed`: `unknown_firm` only;
//!    - `locker_purchased` (the purchaser), `id_device_purchased`, `county_center_opened`,
//!      `village_outlet_opened`: `unknown_firm`, `firm_ineligible`;
//!    - `courier_idle_day`: `unknown_zone`, `zone_inactive` (the zone's interval does not
//!      touch the day `d`), `unknown_firm`, `firm_ineligible` (the platform);
//!
//!    and last, for every paying program, `program_not_configured` when the edition in
//!    force pays nothing for it (for an idle day: nothing for the zone's type).
//!
//! The actions on the ledger skip step 5 (a void or an audit may come after the period):
//! - `unit_voided`: no checks; a record of its own (key `program/key`, see
//!   [`crate::domain::void_key`]) paying nothing, carrying its `void_reason`;
//! - `subsidy_revoked`: `unknown_firm` only; recipient and eligible firm the revoked firm,
//!   its note `revoked_by`, a tab, `reason`.
//!
//! Firm eligibility is Article 18, see [`firm_eligible_on`]. All date windows are on the
//! local date `d`; "one year" and "3 years" are the edition's `penalty_months` and
//! `enrollment_months`, calendar months added with [`policy::add_months`] (a leap day plus
//! a year is the 28th of February).
//!
//! ## The unit
//!
//! | program | `recipient_id` | `district_code` | `amount_fen` |
//! |---|---|---|---|
//! | `takeout_order` | `courier_id` | the zone's | the rate |
//! | `import_parcel` | `firm_id` | the firm's | the rate |
//! | `rural_delivery` | `outlet_id` | the outlet's | the rate |
//! | `platform_month_attested` | `platform_id` | the platform's | the award |
//! | `courier_infection` | `platform_id` | the platform's | 0 |
//! | `locker_purchased` | `purchaser_id` | the purchaser's | min(half-even(price × share), max) |
//! | `id_device_purchased` | `firm_id` | the firm's | the amount |
//! | `county_center_opened` | `firm_id` | the event's | the amount |
//! | `village_outlet_opened` | `firm_id` | the event's | the opening award |
//! | `village_outlet_closed` | `firm_id` | the firm's | 0 |
//! | `courier_idle_day` | `courier_id` | the zone's | the allowance of the zone's type |
//!
//! `unit_key` is [`Event::unit_key`] and `local_date` is `d`.

use crate::domain::{Event, EventBody, Reason, Rejection, Unit};
use crate::edition::{Edition, Editions};
use crate::policy;
use crate::refdata::{Firm, Outlet, RefData, Zone};
use chrono::{Duration, NaiveDate, TimeZone};
use std::borrow::Cow;

/// Applies SPEC §5 steps 5–6 to a decoded event: the unit it earns (before dedup and caps),
/// or the first failing check.
///
/// # Errors
///
/// The [`Rejection`] of the first failing check, with a detail naming the reference record
/// and the condition it fails.
pub fn evaluate<'a>(
    event: &'a Event<'_>,
    refdata: &'a RefData,
    editions: &Editions,
) -> Result<Unit<'a>, Rejection> {
    let local_date = event.booking_date();
    // The actions on the ledger come first: no policy period (a void or an audit may come
    // after it) and no program checks but a revoked firm's existence.
    match &event.body {
        EventBody::Void { void_reason, .. } => {
            return Ok(Unit {
                program: event.program(),
                unit_key: event.unit_key(),
                recipient_id: "",
                district_code: "",
                local_date,
                amount_fen: 0,
                eligible_firm: "",
                note: Cow::Borrowed(void_reason.as_ref()),
            })
        }
        EventBody::Revoke {
            firm_id,
            reason,
            revoked_by,
            ..
        } => {
            let firm = known_firm(refdata, "firm", firm_id)?;
            return Ok(Unit {
                program: event.program(),
                unit_key: event.unit_key(),
                recipient_id: firm_id,
                district_code: &firm.district_code,
                local_date,
                amount_fen: 0,
                eligible_firm: firm_id,
                note: Cow::Owned(format!("{revoked_by}\t{reason}")),
            });
        }
        _ => {}
    }
    check_district(event, editions)?;
    let Some(edition) = editions.in_force(local_date) else {
        return Err(Rejection::new(
            Reason::OutsidePolicyPeriod,
            match &event.body {
                EventBody::PlatformMonth { month, .. } => format!(
                    "month {} is booked on {local_date}, outside the policy period {}",
                    month.format("%Y-%m"),
                    editions.period_description()
                ),
                EventBody::IdleDay { .. } => format!(
                    "date {local_date} is outside the policy period {}",
                    editions.period_description()
                ),
                _ => format!(
                    "occurred_at {} is local date {local_date}, outside the policy period {}",
                    event.occurred_at.to_rfc3339(),
                    editions.period_description()
                ),
            },
        ));
    };
    let program = event.program();
    let not_configured = || {
        Rejection::new(
            Reason::ProgramNotConfigured,
            format!(
                "edition `{}` ({}) pays nothing for {program} on {local_date}",
                edition.name, edition.source
            ),
        )
    };
    let rate = || {
        edition
            .per_unit(program)
            .map(|terms| terms.rate_fen)
            .ok_or_else(not_configured)
    };
    let firm_on = |role: &str, firm_id: &str| -> Result<&'a Firm, Rejection> {
        let firm = known_firm(refdata, role, firm_id)?;
        check_firm(firm, role, local_date, edition)?;
        Ok(firm)
    };

    let (recipient_id, district_code, amount_fen, eligible_firm): (&str, &str, i64, &str) =
        match &event.body {
            EventBody::Takeout {
                platform_id,
                courier_id,
                zone_id,
                courier_released,
                ..
            } => {
                let zone = known_zone(refdata, zone_id)?;
                if !(zone.active_from <= event.occurred_at && event.occurred_at <= zone.active_to) {
                    return Err(Rejection::new(
                        Reason::ZoneInactive,
                        format!(
                            "zone \"{zone_id}\" active {}..{}, event at {}",
                            zone.active_from.to_rfc3339(),
                            zone.active_to.to_rfc3339(),
                            event.occurred_at.to_rfc3339()
                        ),
                    ));
                }
                if !courier_released {
                    return Err(Rejection::new(
                        Reason::CourierNotReleased,
                        format!(
                            "courier \"{courier_id}\" not released (courier_released is false)"
                        ),
                    ));
                }
                firm_on("platform", platform_id)?;
                (courier_id, &zone.district_code, rate()?, platform_id)
            }
            EventBody::Import { firm_id, .. } => {
                let firm = firm_on("firm", firm_id)?;
                (firm_id, &firm.district_code, rate()?, firm_id)
            }
            EventBody::Rural {
                firm_id, outlet_id, ..
            } => {
                let outlet = refdata.outlets.get(outlet_id.as_ref()).ok_or_else(|| {
                    Rejection::new(
                        Reason::UnknownOutlet,
                        format!("outlet \"{outlet_id}\" is not in the outlets reference data"),
                    )
                })?;
                if outlet.firm_id != *firm_id {
                    return Err(Rejection::new(
                    Reason::OutletFirmMismatch,
                    format!(
                        "outlet \"{outlet_id}\" belongs to firm \"{}\", not to the event's firm \"{firm_id}\"",
                        outlet.firm_id
                    ),
                ));
                }
                firm_on("firm", firm_id)?;
                if !outlet_enrolled_on(outlet, local_date, edition) {
                    let enrolled_on = outlet.enrolled_on;
                    let end = policy::add_months(enrolled_on, edition.rural_enrollment_months);
                    let last = end.pred_opt().unwrap_or(end);
                    return Err(Rejection::new(
                    Reason::OutletNotEnrolled,
                    format!(
                        "outlet \"{outlet_id}\" not enrolled on {local_date}: enrolled on {enrolled_on}, eligible {enrolled_on} through {last}"
                    ),
                ));
                }
                (outlet_id, &outlet.district_code, rate()?, firm_id)
            }
            EventBody::PlatformMonth {
                platform_id,
                month,
                prevention_measures,
                couriers_managed,
                sites_disinfected,
            } => {
                let platform = firm_on("platform", platform_id)?;
                let missing: Vec<&str> = [
                    ("prevention_measures", prevention_measures),
                    ("couriers_managed", couriers_managed),
                    ("sites_disinfected", sites_disinfected),
                ]
                .into_iter()
                .filter(|(_, attested)| !**attested)
                .map(|(name, _)| name)
                .collect();
                if !missing.is_empty() {
                    return Err(Rejection::new(
                        Reason::AttestationIncomplete,
                        format!(
                        "platform \"{platform_id}\" attests {} without {} (all three must be true)",
                        month.format("%Y-%m"),
                        missing.join(", ")
                    ),
                    ));
                }
                let award = edition
                    .platform_month_award_fen
                    .ok_or_else(not_configured)?;
                (platform_id, &platform.district_code, award, platform_id)
            }
            EventBody::Infection { platform_id, .. } => {
                let platform = known_firm(refdata, "platform", platform_id)?;
                (platform_id, &platform.district_code, 0, platform_id)
            }
            EventBody::Locker {
                purchaser_id,
                price_fen,
                ..
            } => {
                let purchaser = firm_on("purchaser", purchaser_id)?;
                let terms = edition.locker.ok_or_else(not_configured)?;
                let share = policy::percent_half_even_fen(*price_fen, terms.price_share_percent);
                (
                    purchaser_id,
                    &purchaser.district_code,
                    share.min(terms.max_fen),
                    purchaser_id,
                )
            }
            EventBody::IdDevice { firm_id, .. } => {
                let firm = firm_on("firm", firm_id)?;
                let amount = edition.id_device_fen.ok_or_else(not_configured)?;
                (firm_id, &firm.district_code, amount, firm_id)
            }
            EventBody::CountyCenter {
                firm_id,
                district_code,
                ..
            } => {
                firm_on("firm", firm_id)?;
                let amount = edition.county_center_fen.ok_or_else(not_configured)?;
                (firm_id, district_code, amount, firm_id)
            }
            EventBody::VillageOpened {
                firm_id,
                district_code,
                ..
            } => {
                firm_on("firm", firm_id)?;
                let terms = edition.village_outlet.ok_or_else(not_configured)?;
                (firm_id, district_code, terms.opening_fen, firm_id)
            }
            EventBody::VillageClosed { firm_id, .. } => {
                let firm = known_firm(refdata, "firm", firm_id)?;
                (firm_id, &firm.district_code, 0, firm_id)
            }
            EventBody::IdleDay {
                platform_id,
                courier_id,
                zone_id,
                date,
            } => {
                let zone = known_zone(refdata, zone_id)?;
                if !zone_touches_day(zone, *date) {
                    return Err(Rejection::new(
                        Reason::ZoneInactive,
                        format!(
                            "zone \"{zone_id}\" active {}..{}, which does not touch {date}",
                            zone.active_from.to_rfc3339(),
                            zone.active_to.to_rfc3339(),
                        ),
                    ));
                }
                firm_on("platform", platform_id)?;
                let allowance = edition.idle_day_fen(zone.zone_type).ok_or_else(|| {
                    Rejection::new(
                        Reason::ProgramNotConfigured,
                        format!(
                            "edition `{}` ({}) sets no lost-work allowance for a {} zone on {date}",
                            edition.name,
                            edition.source,
                            zone.zone_type.as_str()
                        ),
                    )
                })?;
                (courier_id, &zone.district_code, allowance, platform_id)
            }
            EventBody::Void { .. } | EventBody::Revoke { .. } => {
                unreachable!("the actions on the ledger returned above")
            }
        };
    assert!(amount_fen >= 0, "a unit never pays a negative amount");
    Ok(Unit {
        program,
        unit_key: event.unit_key(),
        recipient_id,
        district_code,
        local_date,
        amount_fen,
        eligible_firm,
        note: Cow::Borrowed(""),
    })
}

/// The one step-4 (`schema_violation`) check that needs the editions, not the reference
/// data: an event's own `district_code` (county centres, village outlets) must be one of
/// the editions' districts. Part of [`evaluate`]; also called alone by `validate` when it
/// is given no reference data, so its "schema ok" covers every step-4 check.
///
/// # Errors
///
/// `schema_violation` naming the field and the code.
pub fn check_district(event: &Event<'_>, editions: &Editions) -> Result<(), Rejection> {
    if let EventBody::CountyCenter { district_code, .. }
    | EventBody::VillageOpened { district_code, .. } = &event.body
    {
        if !editions.knows_district(district_code) {
            return Err(Rejection::new(
                Reason::SchemaViolation,
                format!("field \"district_code\": \"{district_code}\" is not one of Hangzhou's district codes"),
            ));
        }
    }
    Ok(())
}

/// Whether the zone's active interval overlaps local day `date` — [00:00, 24:00] with both
/// ends inclusive, so an interval ending exactly at 00:00 touches that day (SPEC §8).
pub fn zone_touches_day(zone: &Zone, date: NaiveDate) -> bool {
    let start = policy::shanghai()
        .from_local_datetime(&date.and_hms_opt(0, 0, 0).expect("midnight exists"))
        .single()
        .expect("a fixed offset has one local time");
    let end = start + Duration::days(1);
    zone.active_from <= end && zone.active_to >= start
}

fn known_zone<'r>(refdata: &'r RefData, zone_id: &str) -> Result<&'r Zone, Rejection> {
    refdata.zones.get(zone_id).ok_or_else(|| {
        Rejection::new(
            Reason::UnknownZone,
            format!("zone \"{zone_id}\" is not in the zones reference data"),
        )
    })
}

/// Article 18: whether `firm` may receive (or, as a platform, carry) subsidies on local date
/// `date`: it is an independent legal entity, licensed and in the monitoring platform, and
/// has no major penalty `p` with `p <= date < p + 1 year`.
#[must_use]
pub fn firm_eligible_on(firm: &Firm, date: NaiveDate, edition: &Edition) -> bool {
    firm.legal_entity
        && firm.licensed
        && firm.in_monitoring
        && penalty_in_force(firm, date, edition).is_none()
}

/// Whether a rural `outlet` may be paid for a delivery on local date `date`:
/// `enrolled_on <= date < enrolled_on + 3 years`.
#[must_use]
pub fn outlet_enrolled_on(outlet: &Outlet, date: NaiveDate, edition: &Edition) -> bool {
    let end = policy::add_months(outlet.enrolled_on, edition.rural_enrollment_months);
    outlet.enrolled_on <= date && date < end
}

/// The firm's last major penalty `p` and the first day it is eligible again,
/// `p + 1 year`, if `p <= date < p + 1 year`.
fn penalty_in_force(
    firm: &Firm,
    date: NaiveDate,
    edition: &Edition,
) -> Option<(NaiveDate, NaiveDate)> {
    let penalty = firm.last_major_penalty_on?;
    let until = policy::add_months(penalty, edition.penalty_months);
    (penalty <= date && date < until).then_some((penalty, until))
}

/// The firm with id `firm_id`, or `unknown_firm`. `role` names it in the detail
/// (`platform` for takeout orders, `firm` otherwise).
fn known_firm<'r>(refdata: &'r RefData, role: &str, firm_id: &str) -> Result<&'r Firm, Rejection> {
    refdata.firms.get(firm_id).ok_or_else(|| {
        Rejection::new(
            Reason::UnknownFirm,
            format!("{role} \"{firm_id}\" is not in the firms reference data"),
        )
    })
}

/// `firm_ineligible` if `firm` fails Article 18 on `date`, listing every condition it fails
/// (joined with `; `). `role` names it in the detail, as in [`known_firm`].
fn check_firm(
    firm: &Firm,
    role: &str,
    date: NaiveDate,
    edition: &Edition,
) -> Result<(), Rejection> {
    if firm_eligible_on(firm, date, edition) {
        return Ok(());
    }
    let mut failures: Vec<String> = Vec::new();
    if !firm.legal_entity {
        failures.push("not an independent legal entity (legal_entity is false)".to_owned());
    }
    if !firm.licensed {
        failures.push("not licensed (licensed is false)".to_owned());
    }
    if !firm.in_monitoring {
        failures.push("not in the monitoring platform (in_monitoring is false)".to_owned());
    }
    if let Some((penalty, until)) = penalty_in_force(firm, date, edition) {
        failures.push(format!(
            "major penalty on {penalty} (ineligible until {until})"
        ));
    }
    Err(Rejection::new(
        Reason::FirmIneligible,
        format!(
            "{role} \"{}\" ineligible on {date}: {}",
            firm.firm_id,
            failures.join("; ")
        ),
    ))
}

#[cfg(test)]
mod tests {
    //! Table tests with the policy's own numbers and edges.
    use super::*;
    use crate::domain::{Channel, Program};
    use crate::refdata::{Zone, ZoneType};
    use chrono::{DateTime, FixedOffset};

    fn hz() -> Edition {
        Editions::builtin().all()[0].clone()
    }

    fn d(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    fn ts(s: &str) -> DateTime<FixedOffset> {
        DateTime::parse_from_rfc3339(s).unwrap()
    }

    fn firm(id: &str, district: &str, penalty: Option<&str>) -> Firm {
        Firm {
            firm_id: id.into(),
            name: format!("{id} Co., Ltd."),
            credit_code: "91330100000000000X".into(),
            district_code: district.into(),
            legal_entity: true,
            licensed: true,
            in_monitoring: true,
            last_major_penalty_on: penalty.map(d),
        }
    }

    fn outlet(id: &str, firm_id: &str, district: &str, enrolled_on: &str) -> Outlet {
        Outlet {
            outlet_id: id.into(),
            firm_id: firm_id.into(),
            district_code: district.into(),
            village_code: "330127100200".into(),
            enrolled_on: d(enrolled_on),
        }
    }

    fn zone(id: &str, district: &str, from: &str, to: &str) -> Zone {
        Zone {
            zone_id: id.into(),
            zone_type: ZoneType::Sealed,
            district_code: district.into(),
            active_from: ts(from),
            active_to: ts(to),
        }
    }

    /// Platforms P1 (eligible) and P2 (penalised 2023-06-01); firms F1, F2 (eligible) and
    /// FX (unlicensed); outlets O1 (F1, enrolled on the first day of the policy), O2 (F2),
    /// OL (F1, enrolled on a leap day), OX (FX), OU (of a firm not in the firms data);
    /// zones Z1 (one week in September 2022) and ZALL (the whole period and more).
    fn refdata() -> RefData {
        let mut fx = firm("FX", "330102", None);
        fx.licensed = false;
        let firms = [
            firm("P1", "330106", None),
            firm("P2", "330108", Some("2023-06-01")),
            firm("F1", "330110", None),
            firm("F2", "330105", None),
            fx,
        ];
        let outlets = [
            outlet("O1", "F1", "330127", "2022-07-01"),
            outlet("O2", "F2", "330122", "2023-03-15"),
            outlet("OL", "F1", "330182", "2020-02-29"),
            outlet("OX", "FX", "330112", "2024-01-01"),
            outlet("OU", "F404", "330111", "2022-07-01"),
        ];
        let zones = [
            zone(
                "Z1",
                "330109",
                "2022-09-01T00:00:00+08:00",
                "2022-09-07T23:59:59+08:00",
            ),
            zone(
                "ZALL",
                "330113",
                "2022-01-01T00:00:00+08:00",
                "2026-12-31T23:59:59+08:00",
            ),
        ];
        RefData {
            firms: firms.into_iter().map(|f| (f.firm_id.clone(), f)).collect(),
            outlets: outlets
                .into_iter()
                .map(|o| (o.outlet_id.clone(), o))
                .collect(),
            zones: zones.into_iter().map(|z| (z.zone_id.clone(), z)).collect(),
        }
    }

    fn takeout<'a>(at: &str, platform: &'a str, zone: &'a str, released: bool) -> Event<'a> {
        Event {
            event_id: "evt-t".into(),
            occurred_at: ts(at),
            body: EventBody::Takeout {
                platform_id: platform.into(),
                order_id: "ORD-1".into(),
                courier_id: "C1".into(),
                zone_id: zone.into(),
                courier_released: released,
            },
        }
    }

    fn import<'a>(at: &str, firm: &'a str) -> Event<'a> {
        Event {
            event_id: "evt-i".into(),
            occurred_at: ts(at),
            body: EventBody::Import {
                firm_id: firm.into(),
                waybill_no: "WB-1".into(),
                channel: Channel::Express,
            },
        }
    }

    fn rural<'a>(at: &str, firm: &'a str, outlet: &'a str) -> Event<'a> {
        Event {
            event_id: "evt-r".into(),
            occurred_at: ts(at),
            body: EventBody::Rural {
                firm_id: firm.into(),
                outlet_id: outlet.into(),
                waybill_no: "RW-1".into(),
            },
        }
    }

    /// The reason an event is rejected with, or `None` if it earns a unit.
    fn outcome(event: &Event) -> Option<Reason> {
        evaluate(event, &refdata(), &Editions::builtin())
            .err()
            .map(|r| r.reason)
    }

    fn detail(event: &Event) -> String {
        evaluate(event, &refdata(), &Editions::builtin())
            .unwrap_err()
            .detail
    }

    #[test]
    fn each_program_books_its_recipient_district_and_rate() {
        let refdata = refdata();
        let cases = [
            (
                takeout("2022-09-03T10:00:00+08:00", "P1", "Z1", true),
                Unit {
                    program: Program::TakeoutOrder,
                    unit_key: "P1/ORD-1".into(),
                    recipient_id: "C1",
                    district_code: "330109", // the zone's, not the platform's 330106
                    local_date: d("2022-09-03"),
                    amount_fen: 100,
                    eligible_firm: "P1", // the platform
                    note: "".into(),
                },
            ),
            (
                import("2023-12-31T16:30:00Z", "F1"),
                Unit {
                    program: Program::ImportParcel,
                    unit_key: "WB-1".into(),
                    recipient_id: "F1",
                    district_code: "330110", // the firm's
                    local_date: d("2024-01-01"),
                    amount_fen: 100,
                    eligible_firm: "F1",
                    note: "".into(),
                },
            ),
            (
                rural("2024-05-05T05:05:05-05:00", "F1", "O1"),
                Unit {
                    program: Program::RuralDelivery,
                    unit_key: "RW-1".into(),
                    recipient_id: "O1",
                    district_code: "330127", // the outlet's, not the firm's 330110
                    local_date: d("2024-05-05"),
                    amount_fen: 30,
                    eligible_firm: "F1", // the outlet's firm
                    note: "".into(),
                },
            ),
        ];
        for (event, unit) in cases {
            assert_eq!(evaluate(&event, &refdata, &Editions::builtin()), Ok(unit));
        }
    }

    #[test]
    fn policy_period_uses_the_shanghai_local_date_inclusive() {
        // (occurred_at, inside the period?)
        let cases = [
            ("2022-06-30T15:59:59Z", false),
            ("2022-06-30T16:00:00Z", true),
            ("2022-06-30T23:59:59+08:00", false),
            ("2022-07-01T00:00:00+08:00", true),
            ("2022-06-30T12:00:00-04:00", true), // 2022-07-01 00:00 local
            ("2022-06-30T11:59:59.999-04:00", false),
            ("2023-12-31T16:30:00Z", true), // SPEC's New Year example
            ("2025-12-31T15:59:59Z", true),
            ("2025-12-31T23:59:59.999999999+08:00", true),
            ("2025-12-31T16:00:00Z", false),
            ("2026-01-01T00:00:00+08:00", false),
            ("2025-12-31T10:00:00-06:00", false), // 2026-01-01 00:00 local
            ("2021-07-01T00:00:00+08:00", false),
            ("2030-01-01T00:00:00Z", false),
        ];
        for (at, inside) in cases {
            let expected = if inside {
                None
            } else {
                Some(Reason::OutsidePolicyPeriod)
            };
            assert_eq!(outcome(&import(at, "F1")), expected, "import {at}");
            assert_eq!(
                outcome(&takeout(at, "P1", "ZALL", true)),
                expected,
                "takeout {at}"
            );
        }
        let (event, refdata) = (import("2022-06-30T16:00:00Z", "F1"), refdata());
        let unit = evaluate(&event, &refdata, &Editions::builtin()).unwrap();
        assert_eq!(unit.local_date, d("2022-07-01"));
        assert_eq!(
            detail(&import("2025-12-31T16:00:00Z", "F1")),
            "occurred_at 2025-12-31T16:00:00+00:00 is local date 2026-01-01, \
             outside the policy period 2022-07-01..2025-12-31"
        );
    }

    #[test]
    fn zone_is_active_between_its_instants_inclusive() {
        // Z1: 2022-09-01T00:00:00+08:00 ..= 2022-09-07T23:59:59+08:00.
        let cases = [
            ("2022-08-31T23:59:59+08:00", false),
            ("2022-08-31T15:59:59Z", false),
            ("2022-08-31T15:59:59.999Z", false),
            ("2022-09-01T00:00:00+08:00", true),
            ("2022-08-31T16:00:00Z", true), // the same instant in UTC
            ("2022-08-31T11:00:00-05:00", true),
            ("2022-09-04T12:00:00+08:00", true),
            ("2022-09-07T23:59:59+08:00", true),
            ("2022-09-07T15:59:59Z", true),
            ("2022-09-07T23:59:59.001+08:00", false),
            ("2022-09-08T00:00:00+08:00", false),
            ("2022-09-07T16:00:00Z", false),
        ];
        for (at, active) in cases {
            let expected = if active {
                None
            } else {
                Some(Reason::ZoneInactive)
            };
            assert_eq!(outcome(&takeout(at, "P1", "Z1", true)), expected, "{at}");
        }
        assert_eq!(
            detail(&takeout("2022-09-08T00:00:00+08:00", "P1", "Z1", true)),
            "zone \"Z1\" active 2022-09-01T00:00:00+08:00..2022-09-07T23:59:59+08:00, \
             event at 2022-09-08T00:00:00+08:00"
        );
    }

    #[test]
    fn takeout_checks_and_their_details() {
        let at = "2022-09-03T10:00:00+08:00";
        let cases = [
            (
                takeout(at, "P1", "Z9", true),
                Reason::UnknownZone,
                "zone \"Z9\" is not in the zones reference data",
            ),
            (
                takeout(at, "P1", "Z1", false),
                Reason::CourierNotReleased,
                "courier \"C1\" not released (courier_released is false)",
            ),
            (
                takeout(at, "P404", "Z1", true),
                Reason::UnknownFirm,
                "platform \"P404\" is not in the firms reference data",
            ),
            // The platform itself must pass Article 18 on the local date.
            (
                takeout("2023-06-01T00:00:00+08:00", "P2", "ZALL", true),
                Reason::FirmIneligible,
                "platform \"P2\" ineligible on 2023-06-01: major penalty on 2023-06-01 \
                 (ineligible until 2024-06-01)",
            ),
        ];
        for (event, reason, expected) in cases {
            let rejection = evaluate(&event, &refdata(), &Editions::builtin()).unwrap_err();
            assert_eq!(rejection, Rejection::new(reason, expected));
        }
        // The platform's penalty year, on local dates.
        let penalty_cases = [
            ("2023-05-31T15:59:59Z", None), // 2023-05-31 local: the day before
            ("2023-05-31T16:00:00Z", Some(Reason::FirmIneligible)), // 2023-06-01 local
            ("2024-05-31T23:59:59+08:00", Some(Reason::FirmIneligible)),
            ("2024-05-31T16:00:00Z", None), // 2024-06-01 local: p + 1 year
        ];
        for (at, expected) in penalty_cases {
            assert_eq!(outcome(&takeout(at, "P2", "ZALL", true)), expected, "{at}");
        }
    }

    #[test]
    fn import_checks_and_their_details() {
        let at = "2024-03-01T09:00:00+08:00";
        assert_eq!(
            evaluate(&import(at, "F404"), &refdata(), &Editions::builtin()),
            Err(Rejection::new(
                Reason::UnknownFirm,
                "firm \"F404\" is not in the firms reference data"
            ))
        );
        assert_eq!(
            evaluate(&import(at, "FX"), &refdata(), &Editions::builtin()),
            Err(Rejection::new(
                Reason::FirmIneligible,
                "firm \"FX\" ineligible on 2024-03-01: not licensed (licensed is false)"
            ))
        );
        // A platform is a firm too and may import parcels; its own penalty applies.
        assert_eq!(outcome(&import(at, "P1")), None);
        assert_eq!(outcome(&import(at, "P2")), Some(Reason::FirmIneligible));
    }

    #[test]
    fn rural_checks_and_their_details() {
        let at = "2024-03-01T09:00:00+08:00";
        let cases = [
            (
                rural(at, "F1", "O404"),
                Reason::UnknownOutlet,
                "outlet \"O404\" is not in the outlets reference data".to_owned(),
            ),
            (
                rural(at, "F2", "O1"),
                Reason::OutletFirmMismatch,
                "outlet \"O1\" belongs to firm \"F1\", not to the event's firm \"F2\"".to_owned(),
            ),
            (
                rural(at, "F404", "OU"),
                Reason::UnknownFirm,
                "firm \"F404\" is not in the firms reference data".to_owned(),
            ),
            (
                rural(at, "FX", "OX"),
                Reason::FirmIneligible,
                "firm \"FX\" ineligible on 2024-03-01: not licensed (licensed is false)".to_owned(),
            ),
            (
                rural("2025-07-01T00:00:00+08:00", "F1", "O1"),
                Reason::OutletNotEnrolled,
                "outlet \"O1\" not enrolled on 2025-07-01: enrolled on 2022-07-01, \
                 eligible 2022-07-01 through 2025-06-30"
                    .to_owned(),
            ),
        ];
        for (event, reason, expected) in cases {
            assert_eq!(
                evaluate(&event, &refdata(), &Editions::builtin()),
                Err(Rejection::new(reason, expected))
            );
        }
        // Identifiers are compared exactly.
        assert_eq!(
            outcome(&rural(at, "f1", "O1")),
            Some(Reason::OutletFirmMismatch)
        );
    }

    #[test]
    fn outlet_enrollment_lasts_three_years() {
        // (outlet, local date of the delivery, enrolled?)
        let cases = [
            // O1 enrolled 2022-07-01: 2022-07-01 ..= 2025-06-30.
            ("O1", "2022-06-30T16:00:00Z", true),
            ("O1", "2025-06-30T23:59:59+08:00", true),
            ("O1", "2025-06-30T16:00:00Z", false), // 2025-07-01 local
            ("O1", "2025-12-31T12:00:00+08:00", false),
            // O2 enrolled 2023-03-15: not before it.
            ("O2", "2023-03-14T23:59:59+08:00", false),
            ("O2", "2023-03-14T16:00:00Z", true), // 2023-03-15 local
            ("O2", "2025-12-31T23:59:59+08:00", true),
            // OL enrolled on the leap day 2020-02-29: 3 years end on 2023-02-28.
            ("OL", "2022-07-01T00:00:00+08:00", true),
            ("OL", "2023-02-27T23:59:59+08:00", true),
            ("OL", "2023-02-28T00:00:00+08:00", false),
        ];
        for (outlet_id, at, enrolled) in cases {
            let firm_id = refdata().outlets[outlet_id].firm_id.clone();
            let expected = if enrolled {
                None
            } else {
                Some(Reason::OutletNotEnrolled)
            };
            assert_eq!(
                outcome(&rural(at, &firm_id, outlet_id)),
                expected,
                "{outlet_id} {at}"
            );
        }

        let window = |enrolled_on: &str, date: &str| {
            outlet_enrolled_on(&outlet("O", "F", "330127", enrolled_on), d(date), &hz())
        };
        let direct = [
            ("2022-07-15", "2022-07-14", false),
            ("2022-07-15", "2022-07-15", true),
            ("2022-07-15", "2025-07-14", true),
            ("2022-07-15", "2025-07-15", false),
            ("2024-02-29", "2027-02-27", true),
            ("2024-02-29", "2027-02-28", false),
            ("2023-08-31", "2026-08-30", true),
            ("2023-08-31", "2026-08-31", false),
        ];
        for (enrolled_on, date, expected) in direct {
            assert_eq!(window(enrolled_on, date), expected, "{enrolled_on} {date}");
        }
    }

    #[test]
    fn article_18_conditions() {
        let date = d("2024-03-01");
        let eligible = firm("F", "330106", None);
        assert!(firm_eligible_on(&eligible, date, &hz()));

        let mut no_entity = eligible.clone();
        no_entity.legal_entity = false;
        let mut unlicensed = eligible.clone();
        unlicensed.licensed = false;
        let mut unmonitored = eligible.clone();
        unmonitored.in_monitoring = false;
        for (firm, condition) in [
            (
                &no_entity,
                "not an independent legal entity (legal_entity is false)",
            ),
            (&unlicensed, "not licensed (licensed is false)"),
            (
                &unmonitored,
                "not in the monitoring platform (in_monitoring is false)",
            ),
        ] {
            assert!(!firm_eligible_on(firm, date, &hz()), "{condition}");
            assert_eq!(
                check_firm(firm, "firm", date, &hz()),
                Err(Rejection::new(
                    Reason::FirmIneligible,
                    format!("firm \"F\" ineligible on 2024-03-01: {condition}")
                ))
            );
        }

        // Every combination of the three booleans: eligible only if all are true.
        for bits in 0..8u8 {
            let mut f = eligible.clone();
            f.legal_entity = bits & 1 != 0;
            f.licensed = bits & 2 != 0;
            f.in_monitoring = bits & 4 != 0;
            assert_eq!(firm_eligible_on(&f, date, &hz()), bits == 7, "{f:?}");
            assert_eq!(
                check_firm(&f, "firm", date, &hz()).is_ok(),
                bits == 7,
                "{f:?}"
            );
        }

        // All failing conditions are listed.
        let mut everything = eligible.clone();
        everything.legal_entity = false;
        everything.in_monitoring = false;
        everything.last_major_penalty_on = Some(d("2023-06-01"));
        assert_eq!(
            check_firm(&everything, "firm", date, &hz())
                .unwrap_err()
                .detail,
            "firm \"F\" ineligible on 2024-03-01: \
             not an independent legal entity (legal_entity is false); \
             not in the monitoring platform (in_monitoring is false); \
             major penalty on 2023-06-01 (ineligible until 2024-06-01)"
        );
    }

    #[test]
    fn a_major_penalty_bars_a_firm_for_one_year() {
        // (penalty date, local date, eligible?)
        let cases = [
            ("2023-06-01", "2023-05-31", true),  // the day before
            ("2023-06-01", "2023-06-01", false), // the penalty day
            ("2023-06-01", "2024-03-01", false),
            ("2023-06-01", "2024-05-31", false), // p + 1 year - 1 day
            ("2023-06-01", "2024-06-01", true),  // p + 1 year
            ("2023-06-01", "2025-06-01", true),
            ("2024-02-29", "2024-02-28", true),
            ("2024-02-29", "2024-02-29", false),
            ("2024-02-29", "2025-02-27", false),
            ("2024-02-29", "2025-02-28", true), // a leap-day penalty ends on Feb 28
            ("2022-12-31", "2023-12-30", false),
            ("2022-12-31", "2023-12-31", true),
            ("2021-01-01", "2022-07-01", true), // long before the period
        ];
        for (penalty, date, expected) in cases {
            let f = firm("F", "330106", Some(penalty));
            assert_eq!(
                firm_eligible_on(&f, d(date), &hz()),
                expected,
                "penalty {penalty}, date {date}"
            );
        }
        let f = firm("F", "330106", None);
        assert!(firm_eligible_on(&f, d("2022-07-01"), &hz()));
        assert!(firm_eligible_on(&f, d("2025-12-31"), &hz()));
    }

    #[test]
    fn the_first_failing_check_wins() {
        // (event, reason; each case also fails every later check listed in its comment)
        let cases = [
            // Outside the period beats everything of step 6.
            (
                takeout("2022-06-30T15:59:59Z", "P404", "Z9", false),
                Reason::OutsidePolicyPeriod,
            ),
            (
                import("2026-01-01T00:00:00+08:00", "F404"),
                Reason::OutsidePolicyPeriod,
            ),
            (
                rural("2022-06-30T00:00:00+08:00", "F404", "O404"),
                Reason::OutsidePolicyPeriod,
            ),
            // Takeout: unknown zone beats not released and unknown platform.
            (
                takeout("2022-09-03T10:00:00+08:00", "P404", "Z9", false),
                Reason::UnknownZone,
            ),
            // Inactive zone beats not released and unknown platform.
            (
                takeout("2022-09-08T10:00:00+08:00", "P404", "Z1", false),
                Reason::ZoneInactive,
            ),
            // Not released beats unknown or ineligible platform.
            (
                takeout("2022-09-03T10:00:00+08:00", "P404", "Z1", false),
                Reason::CourierNotReleased,
            ),
            (
                takeout("2023-07-01T10:00:00+08:00", "P2", "ZALL", false),
                Reason::CourierNotReleased,
            ),
            // Rural: unknown outlet beats unknown firm.
            (
                rural("2024-03-01T09:00:00+08:00", "F404", "O404"),
                Reason::UnknownOutlet,
            ),
            // Mismatch beats unknown firm and ineligible firm.
            (
                rural("2024-03-01T09:00:00+08:00", "F404", "O1"),
                Reason::OutletFirmMismatch,
            ),
            (
                rural("2024-03-01T09:00:00+08:00", "FX", "O1"),
                Reason::OutletFirmMismatch,
            ),
            // Unknown firm beats not enrolled (OU is enrolled 2022-07-01).
            (
                rural("2025-07-01T09:00:00+08:00", "F404", "OU"),
                Reason::UnknownFirm,
            ),
            // Ineligible firm beats not enrolled (OX is enrolled from 2024-01-01).
            (
                rural("2023-12-31T09:00:00+08:00", "FX", "OX"),
                Reason::FirmIneligible,
            ),
        ];
        for (event, reason) in cases {
            assert_eq!(outcome(&event), Some(reason), "{event:?}");
        }
    }

    #[test]
    fn every_reason_of_steps_5_and_6_is_reachable() {
        let events = [
            import("2022-06-30T00:00:00+08:00", "F1"),
            takeout("2022-09-03T10:00:00+08:00", "P1", "Z9", true),
            takeout("2022-09-08T10:00:00+08:00", "P1", "Z1", true),
            takeout("2022-09-03T10:00:00+08:00", "P1", "Z1", false),
            import("2024-03-01T09:00:00+08:00", "F404"),
            import("2024-03-01T09:00:00+08:00", "FX"),
            rural("2024-03-01T09:00:00+08:00", "F1", "O404"),
            rural("2024-03-01T09:00:00+08:00", "F2", "O1"),
            rural("2025-07-01T09:00:00+08:00", "F1", "O1"),
            attested("P1", "2022-09", [true, false, true]),
            idle("P1", "ZALL", "2023-05-04"),
        ];
        let mut reasons: Vec<Reason> = events.iter().filter_map(outcome).collect();
        reasons.sort();
        let expected: Vec<Reason> = Reason::SPEC
            .into_iter()
            .filter(|r| {
                !matches!(
                    r,
                    Reason::MalformedJson
                        | Reason::SchemaViolation
                        | Reason::UnknownType
                        | Reason::Duplicate
                )
            })
            .collect();
        assert_eq!(reasons, expected);
    }

    #[test]
    fn evaluation_is_pure_and_ignores_event_id() {
        let refdata = refdata();
        let a = rural("2024-03-01T09:00:00+08:00", "F1", "O1");
        let first = evaluate(&a, &refdata, &Editions::builtin());
        assert_eq!(evaluate(&a, &refdata, &Editions::builtin()), first);
        let mut b = a.clone();
        b.event_id = "another".into();
        assert_eq!(evaluate(&b, &refdata, &Editions::builtin()), first);
    }

    fn event<'a>(at: &str, body: EventBody<'a>) -> Event<'a> {
        Event {
            event_id: "evt-v2".into(),
            occurred_at: ts(at),
            body,
        }
    }

    fn attested<'a>(platform: &'a str, month: &str, measures: [bool; 3]) -> Event<'a> {
        event(
            "2022-10-03T10:00:00+08:00",
            EventBody::PlatformMonth {
                platform_id: platform.into(),
                month: d(&format!("{month}-01")),
                prevention_measures: measures[0],
                couriers_managed: measures[1],
                sites_disinfected: measures[2],
            },
        )
    }

    fn idle<'a>(platform: &'a str, zone: &'a str, date: &str) -> Event<'a> {
        event(
            "2023-06-01T10:00:00+08:00",
            EventBody::IdleDay {
                platform_id: platform.into(),
                courier_id: "C7".into(),
                zone_id: zone.into(),
                date: d(date),
            },
        )
    }

    fn locker<'a>(purchaser: &'a str, price_fen: i64) -> Event<'a> {
        event(
            "2023-04-01T10:00:00+08:00",
            EventBody::Locker {
                purchaser_id: purchaser.into(),
                locker_serial: "LK-1".into(),
                price_fen,
                site_type: crate::domain::SiteType::OfficeBuilding,
            },
        )
    }

    fn pays(event: &Event<'_>) -> (Program, String, String, String, i64) {
        let refdata = refdata();
        let unit = evaluate(event, &refdata, &Editions::builtin()).unwrap();
        (
            unit.program,
            unit.unit_key.to_string(),
            unit.recipient_id.to_string(),
            format!("{}@{}", unit.district_code, unit.local_date),
            unit.amount_fen,
        )
    }

    #[test]
    fn lockers_pay_thirty_percent_half_even_up_to_500_yuan() {
        // SPEC §8's examples: 2,000.00 -> 500.00; 1,200.00 -> 360.00; 1,666.65 -> 500.00
        // (499.995 rounds half-even up); 1,666.60 -> 499.98; 0.01 -> 0.00.
        for (price_fen, pays_fen) in [
            (200_000, 50_000),
            (120_000, 36_000),
            (166_665, 50_000),
            (166_660, 49_998),
            (1, 0),
        ] {
            let (program, key, recipient, place, amount) = pays(&locker("F1", price_fen));
            assert_eq!(program, Program::LockerPurchased);
            assert_eq!((key.as_str(), recipient.as_str()), ("LK-1", "F1"));
            assert_eq!(place, "330110@2023-04-01");
            assert_eq!(amount, pays_fen, "price {price_fen} fen");
        }
        assert_eq!(outcome(&locker("F404", 100)), Some(Reason::UnknownFirm));
        assert_eq!(outcome(&locker("FX", 100)), Some(Reason::FirmIneligible));
    }

    #[test]
    fn fixed_awards_take_the_edition_amounts_and_districts() {
        let device = event(
            "2024-01-05T10:00:00+08:00",
            EventBody::IdDevice {
                firm_id: "F2".into(),
                device_serial: "DEV-9".into(),
            },
        );
        assert_eq!(
            pays(&device),
            (
                Program::IdDevicePurchased,
                "DEV-9".into(),
                "F2".into(),
                "330105@2024-01-05".into(),
                500_000
            )
        );
        let center = |district: &'static str| {
            event(
                "2023-11-30T23:30:00+08:00",
                EventBody::CountyCenter {
                    firm_id: "F1".into(),
                    center_id: "CC-1".into(),
                    district_code: district.into(),
                },
            )
        };
        // The event's district, not the firm's (330110).
        assert_eq!(
            pays(&center("330127")),
            (
                Program::CountyCenterOpened,
                "CC-1".into(),
                "F1".into(),
                "330127@2023-11-30".into(),
                10_000_000
            )
        );
        assert_eq!(outcome(&center("330199")), Some(Reason::SchemaViolation));
        let opened = event(
            "2023-03-10T09:00:00+08:00",
            EventBody::VillageOpened {
                firm_id: "F1".into(),
                outlet_id: "VO-1".into(),
                village_code: "330127100200".into(),
                district_code: "330127".into(),
            },
        );
        assert_eq!(
            pays(&opened),
            (
                Program::VillageOutletOpened,
                "VO-1".into(),
                "F1".into(),
                "330127@2023-03-10".into(),
                5_000_000
            )
        );
        // A village outlet opened before the policy period earns nothing.
        let early = event(
            "2022-06-30T09:00:00+08:00",
            EventBody::VillageOpened {
                firm_id: "F1".into(),
                outlet_id: "VO-0".into(),
                village_code: "V0".into(),
                district_code: "330127".into(),
            },
        );
        assert_eq!(outcome(&early), Some(Reason::OutsidePolicyPeriod));
    }

    #[test]
    fn platform_months_are_booked_on_their_last_day() {
        assert_eq!(
            pays(&attested("P1", "2022-09", [true; 3])),
            (
                Program::PlatformMonthAttested,
                "P1/2022-09".into(),
                "P1".into(),
                "330106@2022-09-30".into(),
                10_000_000
            )
        );
        // Judged on the month's last day: P2's penalty of 2023-06-01 covers 2023-06-30 …
        assert_eq!(
            outcome(&attested("P2", "2023-06", [true; 3])),
            Some(Reason::FirmIneligible)
        );
        // … but not 2023-05-31, whatever the attestation's own timestamp.
        assert_eq!(outcome(&attested("P2", "2023-05", [true; 3])), None);
        // Eligibility comes before completeness; a month outside the period is rejected.
        assert_eq!(
            outcome(&attested("P2", "2023-06", [false; 3])),
            Some(Reason::FirmIneligible)
        );
        assert_eq!(
            outcome(&attested("P1", "2022-06", [true; 3])),
            Some(Reason::OutsidePolicyPeriod)
        );
        assert!(detail(&attested("P1", "2022-09", [false, true, false]))
            .contains("prevention_measures, sites_disinfected"));
        // An infection pays nothing and needs only a known platform (P2 is penalised).
        let infection = event(
            "2022-09-20T08:00:00+08:00",
            EventBody::Infection {
                platform_id: "P2".into(),
                courier_id: "C1".into(),
            },
        );
        assert_eq!(
            pays(&infection),
            (
                Program::CourierInfection,
                "P2/C1/2022-09-20".into(),
                "P2".into(),
                "330108@2022-09-20".into(),
                0
            )
        );
    }

    #[test]
    fn idle_days_need_a_zone_touching_the_day_and_an_edition_amount() {
        // hangzhou-2022 sets no allowance: the last check fails.
        assert_eq!(
            outcome(&idle("P1", "Z1", "2022-09-03")),
            Some(Reason::ProgramNotConfigured)
        );
        assert_eq!(
            outcome(&idle("P1", "Z9", "2022-09-03")),
            Some(Reason::UnknownZone)
        );
        // Z1 is active 2022-09-01 00:00 … 2022-09-07 23:59:59 local.
        // Z1 starts at 2022-08-31 24:00, so it touches 2022-08-31 but not 2022-08-30.
        assert_eq!(
            outcome(&idle("P1", "Z1", "2022-08-30")),
            Some(Reason::ZoneInactive)
        );
        assert_eq!(
            outcome(&idle("P1", "Z1", "2022-08-31")),
            Some(Reason::ProgramNotConfigured)
        );
        assert_eq!(
            outcome(&idle("P1", "Z1", "2022-09-08")),
            Some(Reason::ZoneInactive)
        );
        assert_eq!(
            outcome(&idle("P404", "Z1", "2022-09-07")),
            Some(Reason::UnknownFirm)
        );
        assert_eq!(
            outcome(&idle("P1", "ZALL", "2026-01-01")),
            Some(Reason::OutsidePolicyPeriod)
        );
        // An interval ending exactly at 00:00 touches that day.
        let mut z = zone(
            "ZE",
            "330109",
            "2022-09-01T00:00:00+08:00",
            "2022-09-05T00:00:00+08:00",
        );
        assert!(zone_touches_day(&z, d("2022-09-05")));
        assert!(!zone_touches_day(&z, d("2022-09-06")));
        z.active_from = ts("2022-09-06T00:00:00+08:00");
        z.active_to = ts("2022-09-07T00:00:00+08:00");
        assert!(
            zone_touches_day(&z, d("2022-09-05")),
            "starts at the day's 24:00"
        );
    }

    #[test]
    fn a_second_edition_changes_only_its_own_dates() {
        // A second edition, 2026, with another rate and an idle allowance, added as data.
        let text = crate::edition::DEFAULT_EDITION_TOML
            .replace("name = \"hangzhou-2022\"", "name = \"hangzhou-2026\"")
            .replace("first_day = 2022-07-01", "first_day = 2026-01-01")
            .replace("last_day = 2025-12-31", "last_day = 2026-12-31")
            .replacen("rate = \"1.00\"", "rate = \"1.50\"", 1)
            .replace("#   sealed = \"100.00\"", "sealed = \"100.00\"");
        let second = crate::edition::parse_edition(&text, "hangzhou-2026.toml").unwrap();
        let editions = Editions::new(vec![hz(), second]).unwrap();
        let refdata = refdata();
        let paid = |event: &Event<'_>| evaluate(event, &refdata, &editions).map(|u| u.amount_fen);
        assert_eq!(
            paid(&takeout("2025-12-31T23:00:00+08:00", "P1", "ZALL", true)),
            Ok(100)
        );
        assert_eq!(
            paid(&takeout("2026-01-01T00:00:00+08:00", "P1", "ZALL", true)),
            Ok(150)
        );
        assert_eq!(paid(&idle("P1", "ZALL", "2026-03-01")), Ok(10_000));
        assert_eq!(
            paid(&idle("P1", "ZALL", "2025-03-01")).unwrap_err().reason,
            Reason::ProgramNotConfigured
        );
        assert_eq!(paid(&import("2026-06-01T09:00:00+08:00", "F1")), Ok(100));
    }

    #[test]
    fn voids_and_revocations_skip_the_policy_period_and_revocations_need_a_known_firm() {
        // Proves: a void after the period is accepted with no checks, paying nothing and
        // keeping its reason; a revocation is checked for its firm only and notes its
        // issuer and reason.
        let refdata = refdata();
        let at = "2027-03-01T10:00:00+08:00";
        let void = format!(
            r#"{{"type":"unit_voided","event_id":"v","occurred_at":"{at}","program":"import_parcel","waybill_no":"W1","void_reason":"sent twice"}}"#
        );
        let event = crate::decode::decode(void.as_bytes()).unwrap();
        let unit = evaluate(&event, &refdata, &Editions::builtin()).unwrap();
        assert_eq!(
            (unit.amount_fen, unit.unit_key.as_ref(), unit.note.as_ref()),
            (0, "import_parcel/W1", "sent twice")
        );
        let revoke = |firm: &str| {
            format!(
                r#"{{"type":"subsidy_revoked","event_id":"r","occurred_at":"{at}","firm_id":"{firm}","period_from":"2023-01-01","period_to":"2023-01-31","reason":"audit","revoked_by":"bureau"}}"#
            )
        };
        let known = revoke("F1");
        let event = crate::decode::decode(known.as_bytes()).unwrap();
        let unit = evaluate(&event, &refdata, &Editions::builtin()).unwrap();
        assert_eq!(
            (unit.eligible_firm, unit.note.as_ref(), unit.amount_fen),
            ("F1", "bureau\taudit", 0)
        );
        let unknown = revoke("NOPE");
        let event = crate::decode::decode(unknown.as_bytes()).unwrap();
        assert_eq!(
            evaluate(&event, &refdata, &Editions::builtin())
                .unwrap_err()
                .reason,
            Reason::UnknownFirm
        );
    }
}
