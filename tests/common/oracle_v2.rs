//! The test oracle of the whole policy: SPEC §2 (takeout orders, import parcels, rural
//! deliveries) and §8 (platform months, infections, lockers, ID devices, county centres,
//! village outlets and their anniversaries, closings, idle days, clawback and voids), written
//! from the SPEC text alone.
//!
//! It shares no code with `subsidy_ingester` (no `rules`, `decode`, `policy`, `edition` or
//! `domain`): events are plain Rust values the test renders to JSON ([`Event::to_json`]), and
//! [`expect`] judges them with the SPEC's check order, dedups by unit key, applies voids,
//! infections and closings whatever the arrival order, books anniversaries up to "today",
//! applies caps with SPEC §2's formula, attributes each month's grant to its units earliest
//! booking date first, claws back what revocations cover, and splits the funding with
//! `rust_decimal`'s banker's rounding (via [`super::oracle::district_share_fen`]).
//!
//! Choices the SPEC leaves open, made here and asserted where the feed could hit them:
//! - `revocations.units` counts the non-voided ledger rows a revocation is attributed
//!   (those a cap or an infection left at 0.00 included).
//! - The oracle refuses (panics on) cases it does not model: an anniversary of a firm that is
//!   ineligible on that date, one booking day of one cell with two eligible firms, and a
//!   capped recipient with two districts in one month.
#![allow(dead_code)]

use super::oracle::district_share_fen;
use chrono::{DateTime, Datelike, Duration, FixedOffset, NaiveDate, TimeZone};
use rust_decimal::prelude::ToPrimitive;
use rust_decimal::{Decimal, RoundingStrategy};
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, HashMap, HashSet};

/// First and last local day of the policy period (edition `hangzhou-2022`).
pub const POLICY_FIRST_DAY: (i32, u32, u32) = (2022, 7, 1);
pub const POLICY_LAST_DAY: (i32, u32, u32) = (2025, 12, 31);

/// Rates and amounts in fen (SPEC §2 and §8).
pub const TAKEOUT_ORDER_FEN: i64 = 100;
pub const IMPORT_PARCEL_FEN: i64 = 100;
pub const RURAL_DELIVERY_FEN: i64 = 30;
pub const IMPORT_PARCEL_CAP_FEN: i64 = 20_000_000;
pub const RURAL_DELIVERY_CAP_FEN: i64 = 3_000_000;
pub const PLATFORM_MONTH_FEN: i64 = 10_000_000;
pub const LOCKER_MAX_FEN: i64 = 50_000;
pub const ID_DEVICE_FEN: i64 = 500_000;
pub const COUNTY_CENTER_FEN: i64 = 10_000_000;
pub const VILLAGE_OPENING_FEN: i64 = 5_000_000;
pub const VILLAGE_ANNIVERSARY_FEN: i64 = 2_000_000;

/// The 13 district codes of SPEC §2.
pub const DISTRICTS: [&str; 13] = [
    "330102", "330105", "330106", "330108", "330109", "330110", "330111", "330112", "330113",
    "330114", "330122", "330127", "330182",
];

/// UTC+8, the policy's clock.
pub fn shanghai() -> FixedOffset {
    FixedOffset::east_opt(8 * 3600).unwrap()
}

pub fn policy_first_day() -> NaiveDate {
    let (y, m, d) = POLICY_FIRST_DAY;
    NaiveDate::from_ymd_opt(y, m, d).unwrap()
}

pub fn policy_last_day() -> NaiveDate {
    let (y, m, d) = POLICY_LAST_DAY;
    NaiveDate::from_ymd_opt(y, m, d).unwrap()
}

/// The local (Asia/Shanghai) date of an instant.
pub fn local_date(at: &DateTime<FixedOffset>) -> NaiveDate {
    at.with_timezone(&shanghai()).date_naive()
}

/// First day of the date's month.
pub fn month_of(date: NaiveDate) -> NaiveDate {
    NaiveDate::from_ymd_opt(date.year(), date.month(), 1).unwrap()
}

/// `date` plus `months` calendar months, the day clamped to the target month's last day
/// (SPEC §2: a penalty on 2024-02-29 ends on 2025-02-28).
pub fn add_months(date: NaiveDate, months: u32) -> NaiveDate {
    let index = date.year() * 12 + date.month0() as i32 + months as i32;
    let (year, month) = (index.div_euclid(12), index.rem_euclid(12) as u32 + 1);
    let mut day = date.day();
    loop {
        if let Some(d) = NaiveDate::from_ymd_opt(year, month, day) {
            return d;
        }
        day -= 1;
    }
}

/// Last day of a `"YYYY-MM"` month.
pub fn last_day_of(month: &str) -> NaiveDate {
    let first = NaiveDate::parse_from_str(&format!("{month}-01"), "%Y-%m-%d").unwrap();
    add_months(first, 1) - Duration::days(1)
}

/// A firm of `firms.csv`.
#[derive(Debug, Clone)]
pub struct Firm {
    pub id: String,
    pub district: String,
    pub legal_entity: bool,
    pub licensed: bool,
    pub in_monitoring: bool,
    pub penalty_on: Option<NaiveDate>,
}

impl Firm {
    /// A firm with every Article 18 flag true and no penalty.
    pub fn clean(id: &str, district: &str) -> Firm {
        Firm {
            id: id.into(),
            district: district.into(),
            legal_entity: true,
            licensed: true,
            in_monitoring: true,
            penalty_on: None,
        }
    }

    /// Article 18 on local date `d`.
    pub fn eligible_on(&self, d: NaiveDate) -> bool {
        let penalised = self
            .penalty_on
            .is_some_and(|p| p <= d && d < add_months(p, 12));
        self.legal_entity && self.licensed && self.in_monitoring && !penalised
    }
}

/// A rural outlet of `outlets.csv`.
#[derive(Debug, Clone)]
pub struct Outlet {
    pub id: String,
    pub firm_id: String,
    pub district: String,
    pub village_code: String,
    pub enrolled_on: NaiveDate,
}

/// A takeout zone of `zones.csv`.
#[derive(Debug, Clone)]
pub struct Zone {
    pub id: String,
    pub zone_type: String,
    pub district: String,
    pub active_from: DateTime<FixedOffset>,
    pub active_to: DateTime<FixedOffset>,
}

impl Zone {
    /// SPEC §8: the interval overlaps [00:00, 24:00] of local day `d`, both ends inclusive.
    pub fn touches(&self, d: NaiveDate) -> bool {
        let start = shanghai()
            .from_local_datetime(&d.and_hms_opt(0, 0, 0).unwrap())
            .unwrap();
        let end = start + Duration::days(1);
        self.active_from <= end && self.active_to >= start
    }
}

/// The reference data of a feed.
#[derive(Debug, Clone, Default)]
pub struct RefData {
    pub firms: Vec<Firm>,
    pub outlets: Vec<Outlet>,
    pub zones: Vec<Zone>,
}

impl RefData {
    pub fn firm(&self, id: &str) -> Option<&Firm> {
        self.firms.iter().find(|f| f.id == id)
    }

    pub fn outlet(&self, id: &str) -> Option<&Outlet> {
        self.outlets.iter().find(|o| o.id == id)
    }

    pub fn zone(&self, id: &str) -> Option<&Zone> {
        self.zones.iter().find(|z| z.id == id)
    }

    /// `firms.csv` text (SPEC §4).
    pub fn firms_csv(&self) -> String {
        let mut out = String::from(
            "firm_id,name,credit_code,district_code,legal_entity,licensed,in_monitoring,last_major_penalty_on\n",
        );
        for (n, f) in self.firms.iter().enumerate() {
            out.push_str(&format!(
                "{},{} Ltd,91330100MA2FP{:05},{},{},{},{},{}\n",
                f.id,
                f.id,
                n,
                f.district,
                f.legal_entity,
                f.licensed,
                f.in_monitoring,
                f.penalty_on.map(|p| p.to_string()).unwrap_or_default()
            ));
        }
        out
    }

    /// `outlets.csv` text.
    pub fn outlets_csv(&self) -> String {
        let mut out = String::from("outlet_id,firm_id,district_code,village_code,enrolled_on\n");
        for o in &self.outlets {
            out.push_str(&format!(
                "{},{},{},{},{}\n",
                o.id, o.firm_id, o.district, o.village_code, o.enrolled_on
            ));
        }
        out
    }

    /// `zones.csv` text.
    pub fn zones_csv(&self) -> String {
        let mut out = String::from("zone_id,zone_type,district_code,active_from,active_to\n");
        for z in &self.zones {
            out.push_str(&format!(
                "{},{},{},{},{}\n",
                z.id,
                z.zone_type,
                z.district,
                z.active_from.to_rfc3339(),
                z.active_to.to_rfc3339()
            ));
        }
        out
    }
}

/// One message of the feed: the envelope and the fields of its type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub event_id: String,
    pub occurred_at: DateTime<FixedOffset>,
    pub body: Body,
}

/// The fields of each event type (SPEC §3 and §8).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
    Takeout {
        platform_id: String,
        order_id: String,
        courier_id: String,
        zone_id: String,
        courier_released: bool,
    },
    Import {
        firm_id: String,
        waybill_no: String,
        channel: String,
    },
    Rural {
        firm_id: String,
        outlet_id: String,
        waybill_no: String,
    },
    Attested {
        platform_id: String,
        /// `"YYYY-MM"`.
        month: String,
        prevention_measures: bool,
        couriers_managed: bool,
        sites_disinfected: bool,
    },
    Infection {
        platform_id: String,
        courier_id: String,
    },
    Locker {
        purchaser_id: String,
        locker_serial: String,
        /// Yuan, as sent.
        price: String,
        site_type: String,
    },
    IdDevice {
        firm_id: String,
        device_serial: String,
    },
    CountyCenter {
        firm_id: String,
        center_id: String,
        district_code: String,
    },
    VillageOpened {
        firm_id: String,
        outlet_id: String,
        village_code: String,
        district_code: String,
    },
    VillageClosed {
        firm_id: String,
        outlet_id: String,
    },
    IdleDay {
        platform_id: String,
        courier_id: String,
        zone_id: String,
        date: NaiveDate,
    },
    Revoked {
        firm_id: String,
        period_from: NaiveDate,
        period_to: NaiveDate,
        reason: String,
        revoked_by: String,
    },
    Voided {
        /// The voided unit's program.
        program: String,
        /// That program's unit-key fields, by name.
        key_fields: Vec<(String, String)>,
        void_reason: String,
    },
}

impl Event {
    /// The `type` of the message.
    pub fn program(&self) -> &'static str {
        match &self.body {
            Body::Takeout { .. } => "takeout_order",
            Body::Import { .. } => "import_parcel",
            Body::Rural { .. } => "rural_delivery",
            Body::Attested { .. } => "platform_month_attested",
            Body::Infection { .. } => "courier_infection",
            Body::Locker { .. } => "locker_purchased",
            Body::IdDevice { .. } => "id_device_purchased",
            Body::CountyCenter { .. } => "county_center_opened",
            Body::VillageOpened { .. } => "village_outlet_opened",
            Body::VillageClosed { .. } => "village_outlet_closed",
            Body::IdleDay { .. } => "courier_idle_day",
            Body::Revoked { .. } => "subsidy_revoked",
            Body::Voided { .. } => "unit_voided",
        }
    }

    /// The fields that make this event's unit key, by name, in key order (for a void of it).
    pub fn key_fields(&self) -> Vec<(String, String)> {
        let pairs: Vec<(&str, String)> = match &self.body {
            Body::Takeout {
                platform_id,
                order_id,
                ..
            } => vec![
                ("platform_id", platform_id.clone()),
                ("order_id", order_id.clone()),
            ],
            Body::Import { waybill_no, .. } | Body::Rural { waybill_no, .. } => {
                vec![("waybill_no", waybill_no.clone())]
            }
            Body::Attested {
                platform_id, month, ..
            } => vec![
                ("platform_id", platform_id.clone()),
                ("month", month.clone()),
            ],
            Body::Infection {
                platform_id,
                courier_id,
            } => vec![
                ("platform_id", platform_id.clone()),
                ("courier_id", courier_id.clone()),
                ("date", local_date(&self.occurred_at).to_string()),
            ],
            Body::Locker { locker_serial, .. } => vec![("locker_serial", locker_serial.clone())],
            Body::IdDevice { device_serial, .. } => vec![("device_serial", device_serial.clone())],
            Body::CountyCenter { center_id, .. } => vec![("center_id", center_id.clone())],
            Body::VillageOpened { outlet_id, .. } | Body::VillageClosed { outlet_id, .. } => {
                vec![("outlet_id", outlet_id.clone())]
            }
            Body::IdleDay {
                platform_id,
                courier_id,
                date,
                ..
            } => vec![
                ("platform_id", platform_id.clone()),
                ("courier_id", courier_id.clone()),
                ("date", date.to_string()),
            ],
            Body::Revoked {
                firm_id,
                period_from,
                period_to,
                ..
            } => vec![
                ("firm_id", firm_id.clone()),
                ("period_from", period_from.to_string()),
                ("period_to", period_to.to_string()),
            ],
            Body::Voided {
                program,
                key_fields,
                ..
            } => {
                let mut v = vec![("program", program.clone())];
                v.extend(key_fields.iter().map(|(k, f)| (k.as_str(), f.clone())));
                return v.into_iter().map(|(k, f)| (k.to_owned(), f)).collect();
            }
        };
        pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
    }

    /// The unit key as `rejected_events.unit_key` shows it: the key's fields joined by `/`
    /// (a void: `<voided program>/<voided key>`).
    pub fn unit_key(&self) -> String {
        self.key_fields()
            .into_iter()
            .map(|(_, v)| v)
            .collect::<Vec<_>>()
            .join("/")
    }

    /// A void of this event's unit.
    pub fn void(&self, event_id: &str, at: DateTime<FixedOffset>, why: &str) -> Event {
        Event {
            event_id: event_id.into(),
            occurred_at: at,
            body: Body::Voided {
                program: self.program().into(),
                key_fields: self.key_fields(),
                void_reason: why.into(),
            },
        }
    }

    /// The same message under another event id (a producer's resend).
    pub fn resent(&self, event_id: &str) -> Event {
        Event {
            event_id: event_id.into(),
            ..self.clone()
        }
    }

    /// The Kafka message value (one JSON object).
    pub fn to_json(&self) -> String {
        let mut o = Map::new();
        o.insert("type".into(), json!(self.program()));
        o.insert("event_id".into(), json!(self.event_id));
        o.insert("occurred_at".into(), json!(self.occurred_at.to_rfc3339()));
        let mut put = |k: &str, v: Value| {
            o.insert(k.to_owned(), v);
        };
        match &self.body {
            Body::Takeout {
                platform_id,
                order_id,
                courier_id,
                zone_id,
                courier_released,
            } => {
                put("platform_id", json!(platform_id));
                put("order_id", json!(order_id));
                put("courier_id", json!(courier_id));
                put("zone_id", json!(zone_id));
                put("courier_released", json!(courier_released));
            }
            Body::Import {
                firm_id,
                waybill_no,
                channel,
            } => {
                put("firm_id", json!(firm_id));
                put("waybill_no", json!(waybill_no));
                put("channel", json!(channel));
            }
            Body::Rural {
                firm_id,
                outlet_id,
                waybill_no,
            } => {
                put("firm_id", json!(firm_id));
                put("outlet_id", json!(outlet_id));
                put("waybill_no", json!(waybill_no));
            }
            Body::Attested {
                platform_id,
                month,
                prevention_measures,
                couriers_managed,
                sites_disinfected,
            } => {
                put("platform_id", json!(platform_id));
                put("month", json!(month));
                put("prevention_measures", json!(prevention_measures));
                put("couriers_managed", json!(couriers_managed));
                put("sites_disinfected", json!(sites_disinfected));
            }
            Body::Infection {
                platform_id,
                courier_id,
            } => {
                put("platform_id", json!(platform_id));
                put("courier_id", json!(courier_id));
            }
            Body::Locker {
                purchaser_id,
                locker_serial,
                price,
                site_type,
            } => {
                put("purchaser_id", json!(purchaser_id));
                put("locker_serial", json!(locker_serial));
                put("price", json!(price));
                put("site_type", json!(site_type));
            }
            Body::IdDevice {
                firm_id,
                device_serial,
            } => {
                put("firm_id", json!(firm_id));
                put("device_serial", json!(device_serial));
            }
            Body::CountyCenter {
                firm_id,
                center_id,
                district_code,
            } => {
                put("firm_id", json!(firm_id));
                put("center_id", json!(center_id));
                put("district_code", json!(district_code));
            }
            Body::VillageOpened {
                firm_id,
                outlet_id,
                village_code,
                district_code,
            } => {
                put("firm_id", json!(firm_id));
                put("outlet_id", json!(outlet_id));
                put("village_code", json!(village_code));
                put("district_code", json!(district_code));
            }
            Body::VillageClosed { firm_id, outlet_id } => {
                put("firm_id", json!(firm_id));
                put("outlet_id", json!(outlet_id));
            }
            Body::IdleDay {
                platform_id,
                courier_id,
                zone_id,
                date,
            } => {
                put("platform_id", json!(platform_id));
                put("courier_id", json!(courier_id));
                put("zone_id", json!(zone_id));
                put("date", json!(date.to_string()));
            }
            Body::Revoked {
                firm_id,
                period_from,
                period_to,
                reason,
                revoked_by,
            } => {
                put("firm_id", json!(firm_id));
                put("period_from", json!(period_from.to_string()));
                put("period_to", json!(period_to.to_string()));
                put("reason", json!(reason));
                put("revoked_by", json!(revoked_by));
            }
            Body::Voided {
                program,
                key_fields,
                void_reason,
            } => {
                put("program", json!(program));
                for (k, v) in key_fields {
                    put(k, json!(v));
                }
                put("void_reason", json!(void_reason));
            }
        }
        Value::Object(o).to_string()
    }
}

/// One row of `subsidy_monthly_fen`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct MonthlyRow {
    pub month: NaiveDate,
    pub program: String,
    pub recipient_id: String,
    pub district_code: String,
    pub units: u64,
    pub voided_units: u64,
    pub nominal_fen: i64,
    pub granted_fen: i64,
    pub clawed_back_fen: i64,
    pub net_fen: i64,
}

impl MonthlyRow {
    /// The row as the test's query prints it.
    pub fn cells(&self) -> Vec<String> {
        vec![
            self.month.to_string(),
            self.program.clone(),
            self.recipient_id.clone(),
            self.district_code.clone(),
            self.units.to_string(),
            self.voided_units.to_string(),
            self.nominal_fen.to_string(),
            self.granted_fen.to_string(),
            self.clawed_back_fen.to_string(),
            self.net_fen.to_string(),
        ]
    }
}

/// One row of `subsidy_funding_monthly_fen`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct FundingRow {
    pub month: NaiveDate,
    pub district_code: String,
    pub program: String,
    pub granted_fen: i64,
    pub district_share_fen: i64,
    pub city_share_fen: i64,
    pub clawed_back_fen: i64,
    pub net_fen: i64,
    pub district_share_net_fen: i64,
    pub city_share_net_fen: i64,
}

impl FundingRow {
    pub fn cells(&self) -> Vec<String> {
        vec![
            self.month.to_string(),
            self.district_code.clone(),
            self.program.clone(),
            self.granted_fen.to_string(),
            self.district_share_fen.to_string(),
            self.city_share_fen.to_string(),
            self.clawed_back_fen.to_string(),
            self.net_fen.to_string(),
            self.district_share_net_fen.to_string(),
            self.city_share_net_fen.to_string(),
        ]
    }
}

/// One row of `revocations`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct RevocationRow {
    pub event_id: String,
    pub firm_id: String,
    pub period_from: NaiveDate,
    pub period_to: NaiveDate,
    pub revoked_on: NaiveDate,
    pub reason: String,
    pub revoked_by: String,
    pub units: u64,
    pub clawed_back_fen: i64,
}

impl RevocationRow {
    pub fn cells(&self) -> Vec<String> {
        vec![
            self.event_id.clone(),
            self.firm_id.clone(),
            self.period_from.to_string(),
            self.period_to.to_string(),
            self.revoked_on.to_string(),
            self.reason.clone(),
            self.revoked_by.clone(),
            self.units.to_string(),
            self.clawed_back_fen.to_string(),
        ]
    }
}

/// Everything the ingester must make of a feed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expectation {
    /// Sorted by (month, program, recipient, district).
    pub monthly: Vec<MonthlyRow>,
    /// Sorted by (month, district, program).
    pub funding: Vec<FundingRow>,
    /// Sorted by event id.
    pub revocations: Vec<RevocationRow>,
    /// `(reason, program, unit_key)` of every rejected message, sorted.
    pub rejected: Vec<(String, String, String)>,
    /// First messages per key of the ledger programs (units and zero-pay records).
    pub ledger_records: u64,
    pub accepted_voids: u64,
    pub accepted_revocations: u64,
    pub messages: u64,
}

impl Expectation {
    pub fn rejected_by_reason(&self) -> BTreeMap<String, u64> {
        let mut out = BTreeMap::new();
        for (reason, _, _) in &self.rejected {
            *out.entry(reason.clone()).or_insert(0) += 1;
        }
        out
    }

    /// The monthly row of a cell, if any.
    pub fn monthly_row(&self, month: &str, program: &str, recipient: &str) -> Option<&MonthlyRow> {
        let month: NaiveDate = format!("{month}-01").parse().unwrap();
        self.monthly
            .iter()
            .find(|r| r.month == month && r.program == program && r.recipient_id == recipient)
    }

    /// `(units, voided_units, nominal, granted, clawed_back, net)` summed over a program and
    /// recipient (every month).
    pub fn totals(&self, program: &str, recipient: &str) -> (u64, u64, i64, i64, i64, i64) {
        self.monthly
            .iter()
            .filter(|r| r.program == program && r.recipient_id == recipient)
            .fold((0, 0, 0, 0, 0, 0), |t, r| {
                (
                    t.0 + r.units,
                    t.1 + r.voided_units,
                    t.2 + r.nominal_fen,
                    t.3 + r.granted_fen,
                    t.4 + r.clawed_back_fen,
                    t.5 + r.net_fen,
                )
            })
    }
}

/// `min(round_half_even(price × 30 %, 0.01), 500.00)` in fen.
pub fn locker_fen(price: &str) -> i64 {
    let price: Decimal = price.parse().expect("a locker price");
    let share = (price * Decimal::new(30, 2))
        .round_dp_with_strategy(2, RoundingStrategy::MidpointNearestEven);
    let fen = (share * Decimal::ONE_HUNDRED).to_i64().unwrap();
    fen.min(LOCKER_MAX_FEN)
}

/// A paying ledger unit before caps (an anniversary too).
#[derive(Debug, Clone)]
struct Payment {
    program: &'static str,
    key: String,
    recipient: String,
    district: String,
    booked: NaiveDate,
    nominal_fen: i64,
    eligible_firm: String,
}

/// What an accepted message is.
enum Record {
    Payment(Payment),
    Infection { platform: String, month: NaiveDate },
    Closing { outlet: String, date: NaiveDate },
    Void { program: String, key: String },
    Revocation(Revocation),
}

#[derive(Debug, Clone)]
struct Revocation {
    event_id: String,
    key: String,
    firm_id: String,
    from: NaiveDate,
    to: NaiveDate,
    occurred_at: DateTime<FixedOffset>,
    revoked_on: NaiveDate,
    reason: String,
    revoked_by: String,
}

impl Revocation {
    fn covers(&self, firm: &str, d: NaiveDate) -> bool {
        self.firm_id == firm && ((self.from <= d && d <= self.to) || d >= self.revoked_on)
    }
}

fn in_period(d: NaiveDate) -> bool {
    policy_first_day() <= d && d <= policy_last_day()
}

/// SPEC §5 steps 5–6 and §8's program checks for one well-formed message.
fn judge(refdata: &RefData, event: &Event) -> Result<Record, &'static str> {
    let d = local_date(&event.occurred_at);
    let period = |day: NaiveDate| {
        if in_period(day) {
            Ok(())
        } else {
            Err("outside_policy_period")
        }
    };
    let firm = |id: &str| refdata.firm(id).ok_or("unknown_firm");
    let eligible = |id: &str, day: NaiveDate| -> Result<(), &'static str> {
        if firm(id)?.eligible_on(day) {
            Ok(())
        } else {
            Err("firm_ineligible")
        }
    };
    let key = event.unit_key();
    let payment = |program: &'static str,
                   recipient: &str,
                   district: &str,
                   booked: NaiveDate,
                   nominal_fen: i64,
                   eligible_firm: &str| {
        Record::Payment(Payment {
            program,
            key: key.clone(),
            recipient: recipient.into(),
            district: district.into(),
            booked,
            nominal_fen,
            eligible_firm: eligible_firm.into(),
        })
    };
    Ok(match &event.body {
        Body::Takeout {
            platform_id,
            courier_id,
            zone_id,
            courier_released,
            ..
        } => {
            period(d)?;
            let zone = refdata.zone(zone_id).ok_or("unknown_zone")?;
            if !(zone.active_from <= event.occurred_at && event.occurred_at <= zone.active_to) {
                return Err("zone_inactive");
            }
            if !courier_released {
                return Err("courier_not_released");
            }
            eligible(platform_id, d)?;
            payment(
                "takeout_order",
                courier_id,
                &zone.district,
                d,
                TAKEOUT_ORDER_FEN,
                platform_id,
            )
        }
        Body::Import { firm_id, .. } => {
            period(d)?;
            eligible(firm_id, d)?;
            let district = &firm(firm_id)?.district;
            payment(
                "import_parcel",
                firm_id,
                district,
                d,
                IMPORT_PARCEL_FEN,
                firm_id,
            )
        }
        Body::Rural {
            firm_id, outlet_id, ..
        } => {
            period(d)?;
            let outlet = refdata.outlet(outlet_id).ok_or("unknown_outlet")?;
            if &outlet.firm_id != firm_id {
                return Err("outlet_firm_mismatch");
            }
            eligible(firm_id, d)?;
            if !(outlet.enrolled_on <= d && d < add_months(outlet.enrolled_on, 36)) {
                return Err("outlet_not_enrolled");
            }
            payment(
                "rural_delivery",
                outlet_id,
                &outlet.district,
                d,
                RURAL_DELIVERY_FEN,
                firm_id,
            )
        }
        Body::Attested {
            platform_id,
            month,
            prevention_measures,
            couriers_managed,
            sites_disinfected,
        } => {
            let booked = last_day_of(month);
            period(booked)?;
            eligible(platform_id, booked)?;
            if !(*prevention_measures && *couriers_managed && *sites_disinfected) {
                return Err("attestation_incomplete");
            }
            let district = &firm(platform_id)?.district;
            // The amount is settled once every infection is known (see `expect`).
            payment(
                "platform_month_attested",
                platform_id,
                district,
                booked,
                PLATFORM_MONTH_FEN,
                platform_id,
            )
        }
        Body::Infection { platform_id, .. } => {
            period(d)?;
            firm(platform_id)?;
            Record::Infection {
                platform: platform_id.clone(),
                month: month_of(d),
            }
        }
        Body::Locker {
            purchaser_id,
            price,
            ..
        } => {
            period(d)?;
            eligible(purchaser_id, d)?;
            let district = &firm(purchaser_id)?.district;
            payment(
                "locker_purchased",
                purchaser_id,
                district,
                d,
                locker_fen(price),
                purchaser_id,
            )
        }
        Body::IdDevice { firm_id, .. } => {
            period(d)?;
            eligible(firm_id, d)?;
            let district = &firm(firm_id)?.district;
            payment(
                "id_device_purchased",
                firm_id,
                district,
                d,
                ID_DEVICE_FEN,
                firm_id,
            )
        }
        Body::CountyCenter {
            firm_id,
            district_code,
            ..
        } => {
            assert!(DISTRICTS.contains(&district_code.as_str()));
            period(d)?;
            eligible(firm_id, d)?;
            payment(
                "county_center_opened",
                firm_id,
                district_code,
                d,
                COUNTY_CENTER_FEN,
                firm_id,
            )
        }
        Body::VillageOpened {
            firm_id,
            district_code,
            ..
        } => {
            assert!(DISTRICTS.contains(&district_code.as_str()));
            period(d)?;
            eligible(firm_id, d)?;
            payment(
                "village_outlet_opened",
                firm_id,
                district_code,
                d,
                VILLAGE_OPENING_FEN,
                firm_id,
            )
        }
        Body::VillageClosed { firm_id, outlet_id } => {
            period(d)?;
            firm(firm_id)?;
            Record::Closing {
                outlet: outlet_id.clone(),
                date: d,
            }
        }
        Body::IdleDay {
            platform_id,
            zone_id,
            date,
            ..
        } => {
            period(*date)?;
            let zone = refdata.zone(zone_id).ok_or("unknown_zone")?;
            if !zone.touches(*date) {
                return Err("zone_inactive");
            }
            eligible(platform_id, *date)?;
            // hangzhou-2022 names no lost-work allowance.
            return Err("program_not_configured");
        }
        Body::Revoked {
            firm_id,
            period_from,
            period_to,
            reason,
            revoked_by,
        } => {
            assert!(
                period_from <= period_to,
                "the feed sends well-formed periods"
            );
            firm(firm_id)?;
            Record::Revocation(Revocation {
                event_id: event.event_id.clone(),
                key: key.clone(),
                firm_id: firm_id.clone(),
                from: *period_from,
                to: *period_to,
                occurred_at: event.occurred_at,
                revoked_on: d,
                reason: reason.clone(),
                revoked_by: revoked_by.clone(),
            })
        }
        Body::Voided { program, .. } => {
            let full = event.unit_key();
            let voided_key = full[program.len() + 1..].to_owned();
            Record::Void {
                program: program.clone(),
                key: voided_key,
            }
        }
    })
}

/// One ledger row after voids, infections and closings are known.
struct Row {
    payment: Payment,
    voided: bool,
}

/// The views and counts `events` must produce, whatever order they arrive in; `today` is
/// the local date the views are queried on (village anniversaries up to it are due).
pub fn expect(refdata: &RefData, events: &[Event], today: NaiveDate) -> Expectation {
    let mut seen: HashSet<(&'static str, String)> = HashSet::new();
    let mut rejected = Vec::new();
    let mut payments = Vec::new();
    let mut infected: Vec<(String, NaiveDate, String)> = Vec::new();
    let mut closings: Vec<(String, NaiveDate)> = Vec::new();
    let mut voids: HashSet<(String, String)> = HashSet::new();
    let mut revocations: Vec<Revocation> = Vec::new();
    let (mut ledger_records, mut accepted_voids) = (0u64, 0u64);
    for event in events {
        let program = event.program();
        let key = event.unit_key();
        let record = match judge(refdata, event) {
            Ok(record) => record,
            Err(reason) => {
                rejected.push((reason.to_owned(), program.to_owned(), key));
                continue;
            }
        };
        if !seen.insert((program, key.clone())) {
            rejected.push(("duplicate".to_owned(), program.to_owned(), key));
            continue;
        }
        match record {
            Record::Payment(p) => {
                ledger_records += 1;
                payments.push(p);
            }
            Record::Infection { platform, month } => {
                ledger_records += 1;
                infected.push((platform, month, key));
            }
            Record::Closing { outlet, date } => {
                ledger_records += 1;
                closings.push((outlet, date));
            }
            Record::Void { program, key } => {
                accepted_voids += 1;
                voids.insert((program, key));
            }
            Record::Revocation(r) => revocations.push(r),
        }
    }
    let is_voided =
        |program: &str, key: &str| voids.contains(&(program.to_owned(), key.to_owned()));
    // Infections and closings count unless voided, whatever the arrival order.
    let infected_months: HashSet<(String, NaiveDate)> = infected
        .into_iter()
        .filter(|(_, _, key)| !is_voided("courier_infection", key))
        .map(|(platform, month, _)| (platform, month))
        .collect();
    let closed_on: HashMap<String, NaiveDate> = closings
        .into_iter()
        .filter(|(outlet, _)| !is_voided("village_outlet_closed", outlet))
        .collect();

    let mut rows = Vec::new();
    for mut p in payments {
        let voided = is_voided(p.program, &p.key);
        if p.program == "platform_month_attested"
            && infected_months.contains(&(p.recipient.clone(), month_of(p.booked)))
        {
            p.nominal_fen = 0;
        }
        if p.program == "village_outlet_opened" {
            for years in 1..=3 {
                let anniversary = add_months(p.booked, 12 * years);
                let due = in_period(anniversary)
                    && anniversary <= today
                    && closed_on.get(&p.key).is_none_or(|c| anniversary < *c);
                if !due {
                    continue;
                }
                let firm = refdata.firm(&p.eligible_firm).unwrap();
                assert!(
                    firm.eligible_on(anniversary),
                    "the oracle does not model an anniversary of an ineligible firm: {p:?} {anniversary}"
                );
                rows.push(Row {
                    payment: Payment {
                        booked: anniversary,
                        nominal_fen: VILLAGE_ANNIVERSARY_FEN,
                        ..p.clone()
                    },
                    voided,
                });
            }
        }
        rows.push(Row { payment: p, voided });
    }

    // Cells: (month, program, recipient, district).
    type CellKey = (NaiveDate, &'static str, String, String);
    let mut cells: BTreeMap<CellKey, Vec<&Row>> = BTreeMap::new();
    for row in &rows {
        let p = &row.payment;
        cells
            .entry((
                month_of(p.booked),
                p.program,
                p.recipient.clone(),
                p.district.clone(),
            ))
            .or_default()
            .push(row);
    }
    // Caps (SPEC §2) over the non-voided units, months in order within a year.
    let mut earlier_fen: HashMap<(&str, String, i32), i64> = HashMap::new();
    let mut capped_districts: HashMap<(&str, String, NaiveDate), String> = HashMap::new();
    let mut monthly = Vec::new();
    let mut clawed_by_revocation: HashMap<String, (u64, i64)> = HashMap::new();
    for ((month, program, recipient, district), cell_rows) in &cells {
        let units = cell_rows.len() as u64;
        let voided_units = cell_rows.iter().filter(|r| r.voided).count() as u64;
        let nominal_fen: i64 = cell_rows
            .iter()
            .filter(|r| !r.voided)
            .map(|r| r.payment.nominal_fen)
            .sum();
        let cap = match *program {
            "import_parcel" => Some(IMPORT_PARCEL_CAP_FEN),
            "rural_delivery" => Some(RURAL_DELIVERY_CAP_FEN),
            _ => None,
        };
        let granted_fen = match cap {
            None => nominal_fen,
            Some(cap) => {
                let other = capped_districts
                    .insert((*program, recipient.clone(), *month), district.clone());
                assert!(
                    other.is_none(),
                    "the oracle does not model a capped recipient with two districts in a month"
                );
                let earlier = earlier_fen
                    .entry((*program, recipient.clone(), month.year()))
                    .or_insert(0);
                let granted = (cap - *earlier).max(0).min(nominal_fen);
                *earlier += nominal_fen;
                granted
            }
        };
        // Attribute the grant to booking days, earliest first; claw back covered days.
        let mut days: BTreeMap<NaiveDate, (u64, i64, &str)> = BTreeMap::new();
        for row in cell_rows.iter().filter(|r| !r.voided) {
            let p = &row.payment;
            let day = days
                .entry(p.booked)
                .or_insert((0, 0, p.eligible_firm.as_str()));
            assert_eq!(
                day.2, p.eligible_firm,
                "the oracle does not model one cell day with two eligible firms"
            );
            day.0 += 1;
            day.1 += p.nominal_fen;
        }
        let mut remaining = granted_fen;
        let mut clawed_back_fen = 0;
        for (day, (day_units, day_nominal, firm)) in days {
            let attributed = remaining.min(day_nominal);
            remaining -= attributed;
            let covering = revocations
                .iter()
                .filter(|r| r.covers(firm, day))
                .min_by(|a, b| (a.occurred_at, &a.key).cmp(&(b.occurred_at, &b.key)));
            if let Some(revocation) = covering {
                clawed_back_fen += attributed;
                let entry = clawed_by_revocation
                    .entry(revocation.key.clone())
                    .or_insert((0, 0));
                entry.0 += day_units;
                entry.1 += attributed;
            }
        }
        assert_eq!(remaining, 0, "a grant never exceeds its nominal amount");
        monthly.push(MonthlyRow {
            month: *month,
            program: (*program).to_owned(),
            recipient_id: recipient.clone(),
            district_code: district.clone(),
            units,
            voided_units,
            nominal_fen,
            granted_fen,
            clawed_back_fen,
            net_fen: granted_fen - clawed_back_fen,
        });
    }

    // Article 20 per (month, district, program), of granted and of net.
    let mut sums: BTreeMap<(NaiveDate, String, String), (i64, i64, i64)> = BTreeMap::new();
    for r in &monthly {
        let s = sums
            .entry((r.month, r.district_code.clone(), r.program.clone()))
            .or_insert((0, 0, 0));
        s.0 += r.granted_fen;
        s.1 += r.clawed_back_fen;
        s.2 += r.net_fen;
    }
    let funding = sums
        .into_iter()
        .map(
            |((month, district_code, program), (granted, clawed, net))| {
                let share = district_share_fen(granted, &district_code);
                let share_net = district_share_fen(net, &district_code);
                FundingRow {
                    month,
                    district_code,
                    program,
                    granted_fen: granted,
                    district_share_fen: share,
                    city_share_fen: granted - share,
                    clawed_back_fen: clawed,
                    net_fen: net,
                    district_share_net_fen: share_net,
                    city_share_net_fen: net - share_net,
                }
            },
        )
        .collect();

    let accepted_revocations = revocations.len() as u64;
    let mut revocation_rows: Vec<RevocationRow> = revocations
        .iter()
        .map(|r| {
            let (units, clawed) = clawed_by_revocation.get(&r.key).copied().unwrap_or((0, 0));
            RevocationRow {
                event_id: r.event_id.clone(),
                firm_id: r.firm_id.clone(),
                period_from: r.from,
                period_to: r.to,
                revoked_on: r.revoked_on,
                reason: r.reason.clone(),
                revoked_by: r.revoked_by.clone(),
                units,
                clawed_back_fen: clawed,
            }
        })
        .collect();
    revocation_rows.sort();
    rejected.sort();
    let expectation = Expectation {
        monthly,
        funding,
        revocations: revocation_rows,
        rejected,
        ledger_records,
        accepted_voids,
        accepted_revocations,
        messages: events.len() as u64,
    };
    check_invariants(&expectation);
    expectation
}

/// What must hold of any expectation.
fn check_invariants(e: &Expectation) {
    for r in &e.monthly {
        assert!(r.units > 0 && r.voided_units <= r.units, "{r:?}");
        assert!((0..=r.nominal_fen).contains(&r.granted_fen), "{r:?}");
        assert!((0..=r.granted_fen).contains(&r.clawed_back_fen), "{r:?}");
    }
    let clawed: i64 = e.monthly.iter().map(|r| r.clawed_back_fen).sum();
    let attributed: i64 = e.revocations.iter().map(|r| r.clawed_back_fen).sum();
    assert_eq!(
        clawed, attributed,
        "every clawback belongs to one revocation"
    );
    assert_eq!(
        e.ledger_records + e.accepted_voids + e.accepted_revocations + e.rejected.len() as u64,
        e.messages,
        "conservation"
    );
}
