//! Policy editions as data: every number the service pays with — the policy period, rates,
//! caps, awards, the Article 18 penalty window, the Article 20 district list and shares,
//! program switches — read from a versioned TOML file per edition (`editions/*.toml`;
//! `hangzhou-2022` is built in and is the default).
//!
//! An event is judged by the edition in force on its booking date: the one whose
//! `[first_day, last_day]` holds it; editions may not overlap. No edition in force means
//! `outside_policy_period`. A program whose table is missing or says `enabled = false` is
//! `program_not_configured` under that edition.
//!
//! Where two editions meet inside a calendar year, the *later* edition's cap applies to
//! that whole year and every unit of the year counts against it; where they meet inside a
//! month, the later edition's district shares apply to that month. (Rates and amounts are
//! per unit: each unit keeps the edition of its own booking date.)
//!
//! The ClickHouse views get the same numbers from [`Editions::sql_placeholders`], filled in
//! by `migrate`; nothing else holds a copy.
//!
//! A malformed file is refused whole, with its path, the line and the key at fault.

use crate::domain::Program;
use crate::policy;
use crate::refdata::ZoneType;
use chrono::{Datelike, NaiveDate};
use serde::Deserialize;
use std::path::{Path, PathBuf};
use toml::Spanned;

/// The built-in default edition, shipped in `editions/`.
pub const DEFAULT_EDITION_TOML: &str = include_str!("../editions/hangzhou-2022.toml");
/// Where [`DEFAULT_EDITION_TOML`] comes from, as error messages and logs name it.
pub const DEFAULT_EDITION_FILE: &str = "editions/hangzhou-2022.toml (built in)";

/// What a malformed edition file is refused with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EditionError {
    /// The file, or a key in it, is wrong.
    #[error("{file}:{line}: key `{key}`: {message}")]
    Invalid {
        file: String,
        line: usize,
        key: String,
        message: String,
    },
    /// The file or folder cannot be read.
    #[error("{file}: cannot read the edition: {message}")]
    Unreadable { file: String, message: String },
    /// The editions do not fit together.
    #[error("{0}")]
    Conflict(String),
}

/// The Article 20 split of one edition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Funding {
    /// Percentage the districts of `districts_high` pay locally.
    pub percent_high: i64,
    pub districts_high: Vec<String>,
    /// Percentage every other district pays locally.
    pub percent_low: i64,
    pub districts_low: Vec<String>,
}

/// A per-unit program with an optional yearly cap per recipient.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PerUnit {
    pub rate_fen: i64,
    pub cap_fen_per_year: Option<i64>,
}

/// Lockers: a share of the price, at most `max_fen` per locker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LockerTerms {
    pub price_share_percent: i64,
    pub max_fen: i64,
}

/// Village outlets: an opening award, then one per anniversary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VillageOutletTerms {
    pub opening_fen: i64,
    pub anniversary_fen: i64,
    pub anniversaries: u32,
}

/// One edition, validated; money in fen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Edition {
    pub name: String,
    pub title: String,
    /// The file it was read from.
    pub source: String,
    /// First and last local booking date it covers (inclusive).
    pub first_day: NaiveDate,
    pub last_day: NaiveDate,
    /// Article 18: months a major penalty keeps a firm ineligible.
    pub penalty_months: u32,
    pub funding: Funding,
    pub takeout_order: Option<PerUnit>,
    pub import_parcel: Option<PerUnit>,
    pub rural_delivery: Option<PerUnit>,
    /// Rural outlets are paid for this many months after enrollment.
    pub rural_enrollment_months: u32,
    pub platform_month_award_fen: Option<i64>,
    pub locker: Option<LockerTerms>,
    pub id_device_fen: Option<i64>,
    pub county_center_fen: Option<i64>,
    pub village_outlet: Option<VillageOutletTerms>,
    /// Lost-work allowance per day, by zone type (sealed, controlled, prevention); a zone
    /// type without one is `program_not_configured`.
    pub idle_day_fen: [Option<i64>; 3],
}

impl Edition {
    /// Whether `date` is in this edition's range.
    pub fn covers(&self, date: NaiveDate) -> bool {
        (self.first_day..=self.last_day).contains(&date)
    }

    /// The per-unit terms of the three per-unit programs.
    pub fn per_unit(&self, program: Program) -> Option<PerUnit> {
        match program {
            Program::TakeoutOrder => self.takeout_order,
            Program::ImportParcel => self.import_parcel,
            Program::RuralDelivery => self.rural_delivery,
            _ => None,
        }
    }

    /// Yearly cap per recipient, in fen, where the program has one.
    pub fn cap_fen_per_year(&self, program: Program) -> Option<i64> {
        self.per_unit(program)
            .and_then(|terms| terms.cap_fen_per_year)
    }

    /// The idle-day allowance for a zone type.
    pub fn idle_day_fen(&self, zone_type: ZoneType) -> Option<i64> {
        self.idle_day_fen[zone_type_index(zone_type)]
    }

    /// Percentage of a granted total `district_code` pays locally (Article 20).
    pub fn district_share_percent(&self, district_code: &str) -> i64 {
        if self
            .funding
            .districts_high
            .iter()
            .any(|d| d == district_code)
        {
            self.funding.percent_high
        } else {
            self.funding.percent_low
        }
    }

    /// Whether the district is one of the edition's (either list).
    pub fn knows_district(&self, district_code: &str) -> bool {
        self.funding
            .districts_high
            .iter()
            .chain(&self.funding.districts_low)
            .any(|d| d == district_code)
    }
}

fn zone_type_index(zone_type: ZoneType) -> usize {
    match zone_type {
        ZoneType::Sealed => 0,
        ZoneType::Controlled => 1,
        ZoneType::Prevention => 2,
    }
}

/// Every edition the service judges by, sorted by date, none overlapping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Editions {
    editions: Vec<Edition>,
}

impl Default for Editions {
    /// The built-in `hangzhou-2022`.
    fn default() -> Editions {
        Editions::builtin()
    }
}

impl Editions {
    /// The built-in `hangzhou-2022`.
    pub fn builtin() -> Editions {
        let edition = parse_edition(DEFAULT_EDITION_TOML, DEFAULT_EDITION_FILE)
            .expect("the built-in edition parses (tested)");
        Editions::new(vec![edition]).expect("one edition cannot conflict")
    }

    /// Editions from a file, or from every `*.toml` file of a folder.
    ///
    /// # Errors
    ///
    /// The first file that cannot be read or is malformed, or editions that overlap or
    /// share a name.
    pub fn load(path: &Path) -> Result<Editions, EditionError> {
        let unreadable = |file: &Path, err: std::io::Error| EditionError::Unreadable {
            file: file.display().to_string(),
            message: err.to_string(),
        };
        let files: Vec<PathBuf> = if path.is_dir() {
            let mut files: Vec<PathBuf> = std::fs::read_dir(path)
                .map_err(|err| unreadable(path, err))?
                .filter_map(|entry| entry.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|ext| ext == "toml"))
                .collect();
            files.sort();
            if files.is_empty() {
                return Err(EditionError::Unreadable {
                    file: path.display().to_string(),
                    message: "the folder holds no *.toml edition".into(),
                });
            }
            files
        } else {
            vec![path.to_path_buf()]
        };
        let mut editions = Vec::with_capacity(files.len());
        for file in files {
            let text = std::fs::read_to_string(&file).map_err(|err| unreadable(&file, err))?;
            editions.push(parse_edition(&text, &file.display().to_string())?);
        }
        Editions::new(editions)
    }

    /// Checks that editions have distinct names and disjoint date ranges.
    ///
    /// # Errors
    ///
    /// [`EditionError::Conflict`] naming both editions.
    pub fn new(mut editions: Vec<Edition>) -> Result<Editions, EditionError> {
        assert!(!editions.is_empty(), "at least one edition");
        editions.sort_by_key(|e| e.first_day);
        for pair in editions.windows(2) {
            let (a, b) = (&pair[0], &pair[1]);
            if b.first_day <= a.last_day {
                return Err(EditionError::Conflict(format!(
                    "editions `{}` ({}, {}..{}) and `{}` ({}, {}..{}) overlap: an event must be judged by exactly one edition; end the first before the second begins",
                    a.name, a.source, a.first_day, a.last_day, b.name, b.source, b.first_day, b.last_day
                )));
            }
        }
        for (i, a) in editions.iter().enumerate() {
            if let Some(b) = editions[i + 1..].iter().find(|b| b.name == a.name) {
                return Err(EditionError::Conflict(format!(
                    "two editions are named `{}` ({} and {}): give each its own name",
                    a.name, a.source, b.source
                )));
            }
        }
        Ok(Editions { editions })
    }

    /// The edition in force on local booking date `date`, if any.
    pub fn in_force(&self, date: NaiveDate) -> Option<&Edition> {
        self.editions.iter().find(|e| e.covers(date))
    }

    /// The editions, earliest first.
    pub fn all(&self) -> &[Edition] {
        &self.editions
    }

    /// The editions' names, earliest first, comma-separated (the build-info metric).
    pub fn names_joined(&self) -> String {
        self.editions
            .iter()
            .map(|e| e.name.as_str())
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The covered ranges, for details: `2022-07-01..2025-12-31[, …]`.
    pub fn period_description(&self) -> String {
        self.editions
            .iter()
            .map(|e| format!("{}..{}", e.first_day, e.last_day))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Whether any edition lists the district.
    pub fn knows_district(&self, district_code: &str) -> bool {
        self.editions
            .iter()
            .any(|e| e.knows_district(district_code))
    }

    /// The SQL fragments for the views' `{policy.NAME}` placeholders:
    /// - `{policy.cap_fen}`: the yearly cap in fen of the row's `program` in its `year`, `-1`
    ///   for none (the later edition wins a year two editions share);
    /// - `{policy.district_share_percent}`: the local share of the row's `district_code` in
    ///   its `month` (the later edition wins a month two editions share);
    /// - `{policy.anniversaries}`: how many anniversaries a village outlet opened on
    ///   `opened_on` earns (0 when the edition in force that day sets no outlet terms);
    /// - `{policy.anniversary_fen}`: what an anniversary on the date `anniversary` pays
    ///   (0 outside every edition, or where the edition in force pays none);
    /// - `{policy.penalty_months}`: Article 18's penalty window in months of the edition in
    ///   force on `anniversary` (the day a firm's eligibility is judged).
    pub fn sql_placeholders(&self) -> [(&'static str, String); 5] {
        let on = |column: &str, value: &dyn Fn(&Edition) -> i64| -> String {
            let arms: Vec<String> = self
                .editions
                .iter()
                .map(|e| {
                    format!(
                        "{column} >= toDate('{}') AND {column} <= toDate('{}'), {}",
                        e.first_day,
                        e.last_day,
                        value(e)
                    )
                })
                .collect();
            format!("multiIf({}, 0)", arms.join(", "))
        };
        let anniversaries = on("opened_on", &|e| {
            e.village_outlet.map_or(0, |v| i64::from(v.anniversaries))
        });
        let anniversary_fen = on("anniversary", &|e| {
            e.village_outlet.map_or(0, |v| v.anniversary_fen)
        });
        let penalty_months = on("anniversary", &|e| i64::from(e.penalty_months));
        let mut caps: Vec<String> = Vec::new();
        let mut shares: Vec<String> = Vec::new();
        for edition in self.editions.iter().rev() {
            let years = format!(
                "year >= {} AND year <= {}",
                edition.first_day.year(),
                edition.last_day.year()
            );
            for program in Program::ALL {
                if let Some(cap) = edition.cap_fen_per_year(program) {
                    caps.push(format!(
                        "program = '{}' AND {years}, {cap}",
                        program.as_str()
                    ));
                }
            }
            caps.push(format!("{years}, -1"));
            let first_month = edition.first_day.with_day(1).expect("day 1 exists");
            let quoted: Vec<String> = edition
                .funding
                .districts_high
                .iter()
                .map(|d| format!("'{d}'"))
                .collect();
            shares.push(format!(
                "month >= toDate('{first_month}') AND month <= toDate('{}'), if(district_code IN ({}), {}, {})",
                edition.last_day,
                quoted.join(", "),
                edition.funding.percent_high,
                edition.funding.percent_low
            ));
        }
        // A month no edition covers has no granted money; the latest low share keeps the
        // expression total without a number of its own.
        let low = self
            .editions
            .last()
            .expect("at least one edition")
            .funding
            .percent_low;
        [
            (
                "{policy.cap_fen}",
                format!("multiIf({}, -1)", caps.join(", ")),
            ),
            (
                "{policy.district_share_percent}",
                format!("multiIf({}, {low})", shares.join(", ")),
            ),
            ("{policy.anniversaries}", anniversaries),
            ("{policy.anniversary_fen}", anniversary_fen),
            ("{policy.penalty_months}", penalty_months),
        ]
    }
}

// ---------------------------------------------------------------------------------------
// The file as written: every value spanned, so an error names its line.

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEdition {
    name: Spanned<String>,
    #[serde(default)]
    title: String,
    first_day: Spanned<toml::value::Datetime>,
    last_day: Spanned<toml::value::Datetime>,
    eligibility: RawEligibility,
    funding: RawFunding,
    takeout_order: Option<RawPerUnit>,
    import_parcel: Option<RawPerUnit>,
    rural_delivery: Option<RawRural>,
    platform_month_attested: Option<RawAward>,
    locker_purchased: Option<RawLocker>,
    id_device_purchased: Option<RawAmount>,
    county_center_opened: Option<RawAmount>,
    village_outlet_opened: Option<RawVillage>,
    courier_idle_day: Option<RawIdle>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEligibility {
    penalty_months: Spanned<i64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFunding {
    district_share_percent_high: Spanned<i64>,
    districts_paying_high_share: Spanned<Vec<String>>,
    district_share_percent_low: Spanned<i64>,
    districts_paying_low_share: Spanned<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPerUnit {
    #[serde(default = "yes")]
    enabled: bool,
    rate: Spanned<String>,
    cap_per_year: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRural {
    #[serde(default = "yes")]
    enabled: bool,
    rate: Spanned<String>,
    cap_per_year: Option<Spanned<String>>,
    enrollment_months: Spanned<i64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAward {
    #[serde(default = "yes")]
    enabled: bool,
    award: Spanned<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAmount {
    #[serde(default = "yes")]
    enabled: bool,
    amount: Spanned<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLocker {
    #[serde(default = "yes")]
    enabled: bool,
    price_share_percent: Spanned<i64>,
    max: Spanned<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawVillage {
    #[serde(default = "yes")]
    enabled: bool,
    opening: Spanned<String>,
    anniversary: Spanned<String>,
    anniversaries: Spanned<i64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawIdle {
    #[serde(default = "yes")]
    enabled: bool,
    sealed: Option<Spanned<String>>,
    controlled: Option<Spanned<String>>,
    prevention: Option<Spanned<String>>,
}

fn yes() -> bool {
    true
}

/// Reads one edition file's text; `file` names it in errors.
///
/// # Errors
///
/// [`EditionError::Invalid`] with the line and key of the first fault.
pub fn parse_edition(text: &str, file: &str) -> Result<Edition, EditionError> {
    let line_of = |offset: usize| text[..offset.min(text.len())].matches('\n').count() + 1;
    let invalid =
        |span: std::ops::Range<usize>, key: &str, message: String| EditionError::Invalid {
            file: file.to_string(),
            line: line_of(span.start),
            key: key.to_string(),
            message,
        };
    let raw: RawEdition = toml::from_str(text).map_err(|err| {
        let line = err.span().map_or(1, |span| line_of(span.start));
        let message = err.message().to_string();
        let key = message
            .split('`')
            .nth(1)
            .filter(|_| message.contains("field"))
            .unwrap_or("(file)")
            .to_string();
        EditionError::Invalid {
            file: file.to_string(),
            line,
            key,
            message,
        }
    })?;

    let money = |value: &Spanned<String>, key: &str| -> Result<i64, EditionError> {
        policy::parse_yuan_fen(value.get_ref()).ok_or_else(|| {
            invalid(
                value.span(),
                key,
                format!(
                    "{:?} is not an amount: write yuan as a string of digits with at most two decimals, e.g. \"0.30\"",
                    value.get_ref()
                ),
            )
        })
    };
    let whole = |value: &Spanned<i64>, key: &str, range: std::ops::RangeInclusive<i64>| {
        if range.contains(value.get_ref()) {
            Ok(*value.get_ref())
        } else {
            Err(invalid(
                value.span(),
                key,
                format!(
                    "{} is out of range: expected {}..={}",
                    value.get_ref(),
                    range.start(),
                    range.end()
                ),
            ))
        }
    };
    let date =
        |value: &Spanned<toml::value::Datetime>, key: &str| -> Result<NaiveDate, EditionError> {
            let datetime = value.get_ref();
            match (datetime.date, datetime.time, datetime.offset) {
                (Some(d), None, None) => {
                    NaiveDate::from_ymd_opt(i32::from(d.year), u32::from(d.month), u32::from(d.day))
                }
                _ => None,
            }
            .ok_or_else(|| {
                invalid(
                    value.span(),
                    key,
                    format!("{datetime} is not a local date: write it as YYYY-MM-DD, unquoted"),
                )
            })
        };

    let name = raw.name.get_ref().clone();
    if !crate::decode::is_identifier(&name) {
        return Err(invalid(
            raw.name.span(),
            "name",
            format!("{name:?} is not a name: 1-64 characters of A-Z a-z 0-9 . _ : -"),
        ));
    }
    let first_day = date(&raw.first_day, "first_day")?;
    let last_day = date(&raw.last_day, "last_day")?;
    if last_day < first_day {
        return Err(invalid(
            raw.last_day.span(),
            "last_day",
            format!("{last_day} is before first_day {first_day}"),
        ));
    }

    let f = &raw.funding;
    let percent_high = whole(
        &f.district_share_percent_high,
        "funding.district_share_percent_high",
        0..=100,
    )?;
    let percent_low = whole(
        &f.district_share_percent_low,
        "funding.district_share_percent_low",
        0..=100,
    )?;
    let mut seen: Vec<&String> = Vec::new();
    for (list, key) in [
        (
            &f.districts_paying_high_share,
            "funding.districts_paying_high_share",
        ),
        (
            &f.districts_paying_low_share,
            "funding.districts_paying_low_share",
        ),
    ] {
        for code in list.get_ref() {
            if code.len() != 6 || !code.bytes().all(|b| b.is_ascii_digit()) {
                return Err(invalid(
                    list.span(),
                    key,
                    format!("{code:?} is not a 6-digit district code"),
                ));
            }
            if seen.contains(&code) {
                return Err(invalid(
                    list.span(),
                    key,
                    format!("district {code} is listed twice"),
                ));
            }
            seen.push(code);
        }
    }

    let per_unit = |enabled: bool,
                    rate: &Spanned<String>,
                    cap: &Option<Spanned<String>>,
                    table: &str|
     -> Result<Option<PerUnit>, EditionError> {
        if !enabled {
            return Ok(None);
        }
        Ok(Some(PerUnit {
            rate_fen: money(rate, &format!("{table}.rate"))?,
            cap_fen_per_year: cap
                .as_ref()
                .map(|cap| money(cap, &format!("{table}.cap_per_year")))
                .transpose()?,
        }))
    };
    let takeout_order = match &raw.takeout_order {
        Some(r) => per_unit(r.enabled, &r.rate, &r.cap_per_year, "takeout_order")?,
        None => None,
    };
    let import_parcel = match &raw.import_parcel {
        Some(r) => per_unit(r.enabled, &r.rate, &r.cap_per_year, "import_parcel")?,
        None => None,
    };
    let (rural_delivery, rural_enrollment_months) = match &raw.rural_delivery {
        Some(r) => {
            let months = whole(
                &r.enrollment_months,
                "rural_delivery.enrollment_months",
                1..=1200,
            )?;
            let terms = per_unit(r.enabled, &r.rate, &r.cap_per_year, "rural_delivery")?;
            (terms, months as u32)
        }
        None => (None, 0),
    };
    let platform_month_award_fen = match &raw.platform_month_attested {
        Some(r) if r.enabled => Some(money(&r.award, "platform_month_attested.award")?),
        _ => None,
    };
    let locker = match &raw.locker_purchased {
        Some(r) if r.enabled => Some(LockerTerms {
            price_share_percent: whole(
                &r.price_share_percent,
                "locker_purchased.price_share_percent",
                0..=100,
            )?,
            max_fen: money(&r.max, "locker_purchased.max")?,
        }),
        _ => None,
    };
    let amount = |r: &Option<RawAmount>, table: &str| -> Result<Option<i64>, EditionError> {
        match r {
            Some(r) if r.enabled => Ok(Some(money(&r.amount, &format!("{table}.amount"))?)),
            _ => Ok(None),
        }
    };
    let id_device_fen = amount(&raw.id_device_purchased, "id_device_purchased")?;
    let county_center_fen = amount(&raw.county_center_opened, "county_center_opened")?;
    let village_outlet = match &raw.village_outlet_opened {
        Some(r) if r.enabled => Some(VillageOutletTerms {
            opening_fen: money(&r.opening, "village_outlet_opened.opening")?,
            anniversary_fen: money(&r.anniversary, "village_outlet_opened.anniversary")?,
            anniversaries: whole(
                &r.anniversaries,
                "village_outlet_opened.anniversaries",
                0..=100,
            )? as u32,
        }),
        _ => None,
    };
    let mut idle_day_fen = [None; 3];
    if let Some(r) = raw.courier_idle_day.as_ref().filter(|r| r.enabled) {
        for (slot, value, key) in [
            (0, &r.sealed, "courier_idle_day.sealed"),
            (1, &r.controlled, "courier_idle_day.controlled"),
            (2, &r.prevention, "courier_idle_day.prevention"),
        ] {
            idle_day_fen[slot] = value.as_ref().map(|v| money(v, key)).transpose()?;
        }
    }

    Ok(Edition {
        name,
        title: raw.title,
        source: file.to_string(),
        first_day,
        last_day,
        penalty_months: whole(
            &raw.eligibility.penalty_months,
            "eligibility.penalty_months",
            0..=1200,
        )? as u32,
        funding: Funding {
            percent_high,
            districts_high: f.districts_paying_high_share.get_ref().clone(),
            percent_low,
            districts_low: f.districts_paying_low_share.get_ref().clone(),
        },
        takeout_order,
        import_parcel,
        rural_delivery,
        rural_enrollment_months,
        platform_month_award_fen,
        locker,
        id_device_fen,
        county_center_fen,
        village_outlet,
        idle_day_fen,
    })
}

#[cfg(test)]
mod tests {
    //! The built-in edition holds the policy's numbers; malformed files name file, line, key.
    use super::*;

    fn d(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    #[test]
    fn builtin_edition_has_the_policy_numbers() {
        let editions = Editions::builtin();
        let e = editions.in_force(d("2024-03-01")).unwrap();
        assert_eq!(e.name, "hangzhou-2022");
        assert_eq!(
            (e.first_day, e.last_day),
            (d("2022-07-01"), d("2025-12-31"))
        );
        assert!(editions.in_force(d("2022-06-30")).is_none());
        assert!(editions.in_force(d("2026-01-01")).is_none());
        assert_eq!(
            e.per_unit(Program::TakeoutOrder),
            Some(PerUnit {
                rate_fen: 100,
                cap_fen_per_year: None
            })
        );
        assert_eq!(
            e.per_unit(Program::ImportParcel),
            Some(PerUnit {
                rate_fen: 100,
                cap_fen_per_year: Some(20_000_000)
            })
        );
        assert_eq!(
            e.per_unit(Program::RuralDelivery),
            Some(PerUnit {
                rate_fen: 30,
                cap_fen_per_year: Some(3_000_000)
            })
        );
        assert_eq!(e.rural_enrollment_months, 36);
        assert_eq!(e.penalty_months, 12);
        assert_eq!(e.platform_month_award_fen, Some(10_000_000));
        assert_eq!(
            e.locker,
            Some(LockerTerms {
                price_share_percent: 30,
                max_fen: 50_000
            })
        );
        assert_eq!(e.id_device_fen, Some(500_000));
        assert_eq!(e.county_center_fen, Some(10_000_000));
        assert_eq!(
            e.village_outlet,
            Some(VillageOutletTerms {
                opening_fen: 5_000_000,
                anniversary_fen: 2_000_000,
                anniversaries: 3
            })
        );
        assert_eq!(e.idle_day_fen, [None; 3]);
        for code in ["330109", "330110", "330112", "330122", "330127", "330182"] {
            assert_eq!(e.district_share_percent(code), 75, "{code}");
        }
        for code in [
            "330102", "330105", "330106", "330108", "330111", "330113", "330114", "999999",
        ] {
            assert_eq!(e.district_share_percent(code), 50, "{code}");
        }
        assert_eq!(
            e.funding.districts_high.len() + e.funding.districts_low.len(),
            13
        );
    }

    fn with(replace: &str, by: &str) -> String {
        assert!(DEFAULT_EDITION_TOML.contains(replace), "{replace}");
        DEFAULT_EDITION_TOML.replacen(replace, by, 1)
    }

    #[test]
    fn malformed_editions_name_file_line_and_key() {
        let line_of =
            |text: &str, needle: &str| text[..text.find(needle).unwrap()].matches('\n').count() + 1;
        let cases = [
            (
                with("rate = \"0.30\"", "rate = \"0.305\""),
                "rate = \"0.305\"",
                "rural_delivery.rate",
                "not an amount",
            ),
            (
                with("rate = \"0.30\"", "rate = 0.30"),
                "rate = 0.30",
                "(file)",
                "string",
            ),
            (
                with("penalty_months = 12", "penalty_months = -1"),
                "penalty_months = -1",
                "eligibility.penalty_months",
                "out of range",
            ),
            (
                with("last_day = 2025-12-31", "last_day = 2021-12-31"),
                "last_day = 2021-12-31",
                "last_day",
                "before first_day",
            ),
            (
                with("first_day = 2022-07-01", "first_day = \"2022-07-01\""),
                "first_day = \"2022-07-01\"",
                "(file)",
                "datetime",
            ),
            (
                with("award = ", "awrd = "),
                "awrd = ",
                "awrd",
                "unknown field",
            ),
            (
                with("\"330114\"]", "\"33011\"]"),
                "districts_paying_low_share",
                "funding.districts_paying_low_share",
                "6-digit",
            ),
            (
                with("\"330114\"]", "\"330109\"]"),
                "districts_paying_low_share",
                "funding.districts_paying_low_share",
                "twice",
            ),
        ];
        for (text, at, key, message) in cases {
            let err = parse_edition(&text, "editions/test.toml").unwrap_err();
            let EditionError::Invalid {
                file,
                line,
                key: got_key,
                message: got,
            } = &err
            else {
                panic!("{err}");
            };
            assert_eq!(file, "editions/test.toml");
            assert_eq!(*line, line_of(&text, at), "{err}");
            assert_eq!(got_key, key, "{err}");
            assert!(got.contains(message), "{err}");
        }
        let missing = parse_edition(
            &with("[eligibility]\n", "[eligibility]\npenalty_month = 1\n")
                .replace("penalty_months = 12\n", ""),
            "e.toml",
        )
        .unwrap_err();
        assert!(missing.to_string().contains("penalty_month"), "{missing}");
    }

    #[test]
    fn a_program_switched_off_or_left_out_is_not_configured() {
        let off = parse_edition(
            &with(
                "[id_device_purchased]\n",
                "[id_device_purchased]\nenabled = false\n",
            ),
            "e.toml",
        )
        .unwrap();
        assert_eq!(off.id_device_fen, None);
        let idle = parse_edition(
            &with("#   sealed = \"100.00\"", "sealed = \"100.00\""),
            "e.toml",
        )
        .unwrap();
        assert_eq!(idle.idle_day_fen(ZoneType::Sealed), Some(10_000));
        assert_eq!(idle.idle_day_fen(ZoneType::Controlled), None);
    }

    fn second(first: &str, last: &str) -> Edition {
        let text = with("name = \"hangzhou-2022\"", "name = \"second\"")
            .replace("first_day = 2022-07-01", &format!("first_day = {first}"))
            .replace("last_day = 2025-12-31", &format!("last_day = {last}"))
            .replace(
                "cap_per_year = \"200000.00\"",
                "cap_per_year = \"100000.00\"",
            );
        parse_edition(&text, "second.toml").unwrap()
    }

    #[test]
    fn editions_may_not_overlap_and_the_later_one_wins_a_shared_year_in_sql() {
        let first = Editions::builtin().all()[0].clone();
        let overlap =
            Editions::new(vec![first.clone(), second("2025-12-31", "2026-12-31")]).unwrap_err();
        assert!(overlap.to_string().contains("overlap"), "{overlap}");
        let both = Editions::new(vec![second("2026-01-01", "2026-12-31"), first.clone()]).unwrap();
        assert_eq!(both.in_force(d("2026-05-01")).unwrap().name, "second");
        assert_eq!(
            both.in_force(d("2025-05-01")).unwrap().name,
            "hangzhou-2022"
        );
        let [(_, caps), (_, shares), ..] = both.sql_placeholders();
        assert!(
            caps.starts_with(
                "multiIf(program = 'import_parcel' AND year >= 2026 AND year <= 2026, 10000000"
            ),
            "{caps}"
        );
        assert!(
            caps.contains("program = 'import_parcel' AND year >= 2022 AND year <= 2025, 20000000"),
            "{caps}"
        );
        assert!(shares.starts_with("multiIf(month >= toDate('2026-01-01') AND month <= toDate('2026-12-31'), if(district_code IN ('330109'"), "{shares}");
    }
}
