//! Eligibility rules: a decoded [`Event`] plus the [`RefData`] → the [`Unit`] it earns, or
//! the [`Rejection`] of SPEC §5 steps 5–6. Pure: no I/O, no clock, no state; dedup
//! (step 7) and caps are applied later, over the whole ledger.
//!
//! ## Checks, in order (the first failing check wins)
//!
//! 5. `outside_policy_period`: the Asia/Shanghai local date `d` of `occurred_at` is not in
//!    2022-07-01 … 2025-12-31 ([`policy::in_policy_period`]).
//! 6. Program checks:
//!    - `takeout_order`: `unknown_zone`, `zone_inactive` (`active_from <= occurred_at <=
//!      active_to`, comparing instants, both ends inclusive), `courier_not_released`,
//!      `unknown_firm` (the `platform_id` must be a firm), `firm_ineligible` (the platform);
//!    - `import_parcel`: `unknown_firm`, `firm_ineligible` (`firm_id`);
//!    - `rural_delivery`: `unknown_outlet`, `outlet_firm_mismatch` (the event's `firm_id` is
//!      not the outlet's firm), `unknown_firm`, `firm_ineligible`, `outlet_not_enrolled`
//!      ([`outlet_enrolled_on`]).
//!
//! Firm eligibility is Article 18, see [`firm_eligible_on`]. All date windows are on the
//! local date `d`; "one year" and "3 years" are [`policy::PENALTY_MONTHS`] and
//! [`policy::RURAL_ENROLLMENT_MONTHS`] calendar months added with [`policy::add_months`]
//! (a leap day plus a year is the 28th of February).
//!
//! ## The unit
//!
//! | program | `recipient_id` | `district_code` | `amount_fen` |
//! |---|---|---|---|
//! | `takeout_order` | `courier_id` | the zone's | 100 |
//! | `import_parcel` | `firm_id` | the firm's | 100 |
//! | `rural_delivery` | `outlet_id` | the outlet's | 30 |
//!
//! `unit_key` is [`Event::unit_key`] and `local_date` is `d`.

use crate::domain::{Event, EventBody, Reason, Rejection, Unit};
use crate::policy;
use crate::refdata::{Firm, Outlet, RefData};
use chrono::NaiveDate;

/// Applies SPEC §5 steps 5–6 to a decoded event: the unit it earns (before dedup and caps),
/// or the first failing check.
///
/// # Errors
///
/// The [`Rejection`] of the first failing check, with a detail naming the reference record
/// and the condition it fails.
pub fn evaluate<'a>(event: &'a Event<'_>, refdata: &'a RefData) -> Result<Unit<'a>, Rejection> {
    let local_date = policy::local_date(&event.occurred_at);
    if !policy::in_policy_period(local_date) {
        return Err(Rejection::new(
            Reason::OutsidePolicyPeriod,
            format!(
                "occurred_at {} is local date {local_date}, outside the policy period {}..{}",
                event.occurred_at.to_rfc3339(),
                policy::PERIOD_FIRST_DAY,
                policy::PERIOD_LAST_DAY
            ),
        ));
    }

    let (recipient_id, district_code): (&str, &str) = match &event.body {
        EventBody::Takeout {
            platform_id,
            courier_id,
            zone_id,
            courier_released,
            ..
        } => {
            let zone = refdata.zones.get(zone_id.as_ref()).ok_or_else(|| {
                Rejection::new(
                    Reason::UnknownZone,
                    format!("zone \"{zone_id}\" is not in the zones reference data"),
                )
            })?;
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
                    format!("courier \"{courier_id}\" not released (courier_released is false)"),
                ));
            }
            let platform = known_firm(refdata, "platform", platform_id)?;
            check_firm(platform, "platform", local_date)?;
            (courier_id, &zone.district_code)
        }
        EventBody::Import { firm_id, .. } => {
            let firm = known_firm(refdata, "firm", firm_id)?;
            check_firm(firm, "firm", local_date)?;
            (firm_id, &firm.district_code)
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
            let firm = known_firm(refdata, "firm", firm_id)?;
            check_firm(firm, "firm", local_date)?;
            if !outlet_enrolled_on(outlet, local_date) {
                let enrolled_on = outlet.enrolled_on;
                let end = policy::add_months(enrolled_on, policy::RURAL_ENROLLMENT_MONTHS);
                let last = end.pred_opt().unwrap_or(end);
                return Err(Rejection::new(
                    Reason::OutletNotEnrolled,
                    format!(
                        "outlet \"{outlet_id}\" not enrolled on {local_date}: enrolled on {enrolled_on}, eligible {enrolled_on} through {last}"
                    ),
                ));
            }
            (outlet_id, &outlet.district_code)
        }
    };

    let program = event.program();
    Ok(Unit {
        program,
        unit_key: event.unit_key(),
        recipient_id,
        district_code,
        local_date,
        amount_fen: policy::rate_fen(program),
    })
}

/// Article 18: whether `firm` may receive (or, as a platform, carry) subsidies on local date
/// `date`: it is an independent legal entity, licensed and in the monitoring platform, and
/// has no major penalty `p` with `p <= date < p + 1 year`.
#[must_use]
pub fn firm_eligible_on(firm: &Firm, date: NaiveDate) -> bool {
    firm.legal_entity
        && firm.licensed
        && firm.in_monitoring
        && penalty_in_force(firm, date).is_none()
}

/// Whether a rural `outlet` may be paid for a delivery on local date `date`:
/// `enrolled_on <= date < enrolled_on + 3 years`.
#[must_use]
pub fn outlet_enrolled_on(outlet: &Outlet, date: NaiveDate) -> bool {
    let end = policy::add_months(outlet.enrolled_on, policy::RURAL_ENROLLMENT_MONTHS);
    outlet.enrolled_on <= date && date < end
}

/// The firm's last major penalty `p` and the first day it is eligible again,
/// `p + 1 year`, if `p <= date < p + 1 year`.
fn penalty_in_force(firm: &Firm, date: NaiveDate) -> Option<(NaiveDate, NaiveDate)> {
    let penalty = firm.last_major_penalty_on?;
    let until = policy::add_months(penalty, policy::PENALTY_MONTHS);
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
fn check_firm(firm: &Firm, role: &str, date: NaiveDate) -> Result<(), Rejection> {
    if firm_eligible_on(firm, date) {
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
    if let Some((penalty, until)) = penalty_in_force(firm, date) {
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
        evaluate(event, &refdata()).err().map(|r| r.reason)
    }

    fn detail(event: &Event) -> String {
        evaluate(event, &refdata()).unwrap_err().detail
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
                },
            ),
        ];
        for (event, unit) in cases {
            assert_eq!(evaluate(&event, &refdata), Ok(unit));
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
        let unit = evaluate(&event, &refdata).unwrap();
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
            let rejection = evaluate(&event, &refdata()).unwrap_err();
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
            evaluate(&import(at, "F404"), &refdata()),
            Err(Rejection::new(
                Reason::UnknownFirm,
                "firm \"F404\" is not in the firms reference data"
            ))
        );
        assert_eq!(
            evaluate(&import(at, "FX"), &refdata()),
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
                evaluate(&event, &refdata()),
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
            outlet_enrolled_on(&outlet("O", "F", "330127", enrolled_on), d(date))
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
        assert!(firm_eligible_on(&eligible, date));

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
            assert!(!firm_eligible_on(firm, date), "{condition}");
            assert_eq!(
                check_firm(firm, "firm", date),
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
            assert_eq!(firm_eligible_on(&f, date), bits == 7, "{f:?}");
            assert_eq!(check_firm(&f, "firm", date).is_ok(), bits == 7, "{f:?}");
        }

        // All failing conditions are listed.
        let mut everything = eligible.clone();
        everything.legal_entity = false;
        everything.in_monitoring = false;
        everything.last_major_penalty_on = Some(d("2023-06-01"));
        assert_eq!(
            check_firm(&everything, "firm", date).unwrap_err().detail,
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
                firm_eligible_on(&f, d(date)),
                expected,
                "penalty {penalty}, date {date}"
            );
        }
        let f = firm("F", "330106", None);
        assert!(firm_eligible_on(&f, d("2022-07-01")));
        assert!(firm_eligible_on(&f, d("2025-12-31")));
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
        let first = evaluate(&a, &refdata);
        assert_eq!(evaluate(&a, &refdata), first);
        let mut b = a.clone();
        b.event_id = "another".into();
        assert_eq!(evaluate(&b, &refdata), first);
    }
}
