//! Message decoding: the bytes of one Kafka message value → a typed [`Event`], or the
//! [`Rejection`] of SPEC §5 steps 1–4. Pure: no I/O, no reference data, no clock.
//!
//! ## Checks, in order (the first failing check wins)
//!
//! 1. `malformed_json`: the payload is empty, is not UTF-8, starts with a byte order mark,
//!    or is not one syntactically valid JSON text (trailing garbage after the value
//!    included). A string of a *known* field whose `\u` escapes do not form valid Unicode
//!    (a lone surrogate) is malformed too. An error inside the value of a top-level field
//!    names that field and the line and column in the whole payload. (A Kafka tombstone,
//!    a message with no value at all, never reaches this function: `run` rejects it as
//!    `malformed_json` itself.)
//! 2. `schema_violation`: the value is not a JSON object, or `type` is missing or not a string.
//! 3. `unknown_type`: a string `type` other than those of SPEC §3 and §8 (the thirteen
//!    [`Program`]s' names).
//! 4. `schema_violation`: a field of that type is missing, `null`, of the wrong JSON kind, or
//!    has a bad value. Fields are checked one at a time, each completely (presence, kind,
//!    then value), in this fixed order, and the first bad field is reported:
//!    - common fields: `event_id`, `occurred_at`;
//!    - `takeout_order`: `platform_id`, `order_id`, `courier_id`, `zone_id`, `courier_released`;
//!    - `import_parcel`: `firm_id`, `waybill_no`, `channel`;
//!    - `rural_delivery`: `firm_id`, `outlet_id`, `waybill_no`;
//!    - `platform_month_attested`: `platform_id`, `month` (`YYYY-MM`), then the booleans
//!      `prevention_measures`, `couriers_managed`, `sites_disinfected`;
//!    - `courier_infection`: `platform_id`, `courier_id`;
//!    - `locker_purchased`: `purchaser_id`, `locker_serial`, `price` (a string of yuan,
//!      plain digits with at most two decimals, above zero), `site_type`
//!      (`office_building`, `residential_compound`, `other`);
//!    - `id_device_purchased`: `firm_id`, `device_serial`;
//!    - `county_center_opened`: `firm_id`, `center_id`, `district_code` (an identifier
//!      here; the rules check it is one of the editions' districts);
//!    - `village_outlet_opened`: `firm_id`, `outlet_id`, `village_code`, `district_code`;
//!    - `village_outlet_closed`: `firm_id`, `outlet_id`;
//!    - `courier_idle_day`: `platform_id`, `courier_id`, `zone_id`, `date` (`YYYY-MM-DD`);
//!    - `unit_voided`: `program` (a ledger program: not a void or a revocation), then the
//!      fields of that program's unit key in the order above (an infection's and an idle
//!      day's: `platform_id`, `courier_id`, `date`), then `void_reason`;
//!    - `subsidy_revoked`: `firm_id`, `period_from`, `period_to` (dates, `period_from` not
//!      after `period_to`), `reason`, `revoked_by`.
//!
//!    Free text (`void_reason`, `reason`) is 1–500 code points, none a control character.
//!
//!    So a bad `occurred_at` wins over a missing `platform_id`, but a missing `event_id`
//!    wins over a bad `occurred_at`.
//!
//! ## Field rules
//!
//! - Identifiers ([`is_identifier`]): 1–64 characters of `[A-Za-z0-9._:-]`. These fields are
//!   identifiers: `event_id`, `platform_id`, `order_id`, `courier_id`, `zone_id`, `firm_id`,
//!   `outlet_id`, `waybill_no`. `event_id` is only kept for tracing, but it is validated like
//!   the others so that it can be logged and stored safely.
//! - `occurred_at`: an RFC 3339 timestamp with an explicit offset or `Z`, as accepted by
//!   [`chrono::DateTime::parse_from_rfc3339`] (fractional seconds allowed; `t`/`z` in either
//!   case and a space instead of `T` are accepted, as RFC 3339 §5.6 allows). A date alone or
//!   a date-time without offset is rejected. The original offset is kept in the [`Event`].
//! - `courier_released`: a JSON boolean (`"true"` or `1` are rejected).
//! - `channel`: exactly `"mail"` or `"express"`.
//! - Unknown extra fields are ignored, whatever they hold. If a key appears twice, the last
//!   value wins.
//!
//! ## Implementation
//!
//! Payloads producers send (a flat object, strings without escapes) are read by a
//! hand-written scan (`scan.rs`) that gives up on anything else; then, and only then, the
//! payload is parsed in one pass with `serde_json` into a private struct that borrows
//! from the input: the value of each known key is captured as a borrowed raw JSON value
//! and classified by its first byte (string, boolean, or another JSON kind); unknown keys
//! are skipped with [`serde::de::IgnoredAny`]. No `serde_json::Value` tree is built; on either
//! path the [`Event`] borrows its strings from the payload, and only strings with escapes
//! are copied. Numbers in known
//! fields are never converted, so `1e400` is reported as "got number", not as bad JSON, and
//! nested values are skipped without a depth limit. The only grammatically valid JSON texts
//! rejected as `malformed_json` are a top-level number outside the `f64` range and a lone
//! surrogate escape (`"\ud800"`) in a known field; both are beyond any producer's needs.

use crate::domain::{Channel, Event, EventBody, Program, Reason, Rejection, SiteType};
use chrono::{DateTime, FixedOffset, NaiveDate, NaiveDateTime};
use serde::de::{
    self, Deserialize, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor,
};
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::fmt;

mod scan;

/// Longest identifier, in characters (all identifier characters are ASCII).
const IDENTIFIER_MAX_LEN: usize = 64;

/// The event types, as the `unknown_type` detail lists them.
const KNOWN_TYPES: &str = "takeout_order, import_parcel, rural_delivery, platform_month_attested, courier_infection, locker_purchased, id_device_purchased, county_center_opened, village_outlet_opened, village_outlet_closed, courier_idle_day, unit_voided, subsidy_revoked";

/// Longest prefix of a producer's value echoed back in a rejection detail, in characters.
const ECHO_MAX_CHARS: usize = 80;

/// Decodes one message value into an [`Event`], or rejects it with `malformed_json`,
/// `schema_violation` or `unknown_type` (SPEC §5 steps 1–4, see the module docs for the
/// exact order of checks).
///
/// # Errors
///
/// The [`Rejection`] of the first failing check, with a detail naming the field and what
/// is wrong with it.
pub fn decode(payload: &[u8]) -> Result<Event<'_>, Rejection> {
    let mut fields = match scan::flat_object(payload) {
        Some(fields) => fields,
        None => parse_checked(payload)?,
    };
    let type_name = match fields.type_.as_ref() {
        None => return Err(field_error("type", "missing")),
        Some(Scalar::Str(name)) => name,
        Some(other) => {
            return Err(field_error(
                "type",
                format!("expected a string, got {}", other.kind()),
            ))
        }
    };
    let program = Program::from_type(type_name).ok_or_else(|| {
        Rejection::new(
            Reason::UnknownType,
            format!(
                "unknown type {} (expected one of {})",
                echo(type_name),
                KNOWN_TYPES
            ),
        )
    })?;

    let event_id = identifier(fields.event_id.take(), "event_id")?;
    let occurred_at = timestamp(fields.occurred_at.as_ref(), "occurred_at")?;
    let body = match program {
        Program::TakeoutOrder => EventBody::Takeout {
            platform_id: identifier(fields.platform_id.take(), "platform_id")?,
            order_id: identifier(fields.order_id.take(), "order_id")?,
            courier_id: identifier(fields.courier_id.take(), "courier_id")?,
            zone_id: identifier(fields.zone_id.take(), "zone_id")?,
            courier_released: boolean(fields.courier_released.as_ref(), "courier_released")?,
        },
        Program::ImportParcel => EventBody::Import {
            firm_id: identifier(fields.firm_id.take(), "firm_id")?,
            waybill_no: identifier(fields.waybill_no.take(), "waybill_no")?,
            channel: channel(fields.channel.as_ref(), "channel")?,
        },
        Program::RuralDelivery => EventBody::Rural {
            firm_id: identifier(fields.firm_id.take(), "firm_id")?,
            outlet_id: identifier(fields.outlet_id.take(), "outlet_id")?,
            waybill_no: identifier(fields.waybill_no.take(), "waybill_no")?,
        },
        Program::PlatformMonthAttested => EventBody::PlatformMonth {
            platform_id: identifier(fields.platform_id.take(), "platform_id")?,
            month: month(fields.month.as_ref(), "month")?,
            prevention_measures: boolean(
                fields.prevention_measures.as_ref(),
                "prevention_measures",
            )?,
            couriers_managed: boolean(fields.couriers_managed.as_ref(), "couriers_managed")?,
            sites_disinfected: boolean(fields.sites_disinfected.as_ref(), "sites_disinfected")?,
        },
        Program::CourierInfection => EventBody::Infection {
            platform_id: identifier(fields.platform_id.take(), "platform_id")?,
            courier_id: identifier(fields.courier_id.take(), "courier_id")?,
        },
        Program::LockerPurchased => EventBody::Locker {
            purchaser_id: identifier(fields.purchaser_id.take(), "purchaser_id")?,
            locker_serial: identifier(fields.locker_serial.take(), "locker_serial")?,
            price_fen: price(fields.price.as_ref(), "price")?,
            site_type: site_type(fields.site_type.as_ref(), "site_type")?,
        },
        Program::IdDevicePurchased => EventBody::IdDevice {
            firm_id: identifier(fields.firm_id.take(), "firm_id")?,
            device_serial: identifier(fields.device_serial.take(), "device_serial")?,
        },
        Program::CountyCenterOpened => EventBody::CountyCenter {
            firm_id: identifier(fields.firm_id.take(), "firm_id")?,
            center_id: identifier(fields.center_id.take(), "center_id")?,
            district_code: identifier(fields.district_code.take(), "district_code")?,
        },
        Program::VillageOutletOpened => EventBody::VillageOpened {
            firm_id: identifier(fields.firm_id.take(), "firm_id")?,
            outlet_id: identifier(fields.outlet_id.take(), "outlet_id")?,
            village_code: identifier(fields.village_code.take(), "village_code")?,
            district_code: identifier(fields.district_code.take(), "district_code")?,
        },
        Program::VillageOutletClosed => EventBody::VillageClosed {
            firm_id: identifier(fields.firm_id.take(), "firm_id")?,
            outlet_id: identifier(fields.outlet_id.take(), "outlet_id")?,
        },
        Program::CourierIdleDay => EventBody::IdleDay {
            platform_id: identifier(fields.platform_id.take(), "platform_id")?,
            courier_id: identifier(fields.courier_id.take(), "courier_id")?,
            zone_id: identifier(fields.zone_id.take(), "zone_id")?,
            date: date(fields.date.as_ref(), "date")?,
        },
        Program::UnitVoided => {
            let program = voided_program(fields.program.as_ref())?;
            let key = voided_key(program, &mut fields)?;
            EventBody::Void {
                program,
                key,
                void_reason: text(fields.void_reason.take(), "void_reason")?,
            }
        }
        Program::SubsidyRevoked => {
            let firm_id = identifier(fields.firm_id.take(), "firm_id")?;
            let period_from = date(fields.period_from.as_ref(), "period_from")?;
            let period_to = date(fields.period_to.as_ref(), "period_to")?;
            if period_from > period_to {
                return Err(field_error(
                    "period_to",
                    format_args!("{period_to} is before period_from {period_from}"),
                ));
            }
            EventBody::Revoke {
                firm_id,
                period_from,
                period_to,
                reason: text(fields.reason.take(), "reason")?,
                revoked_by: identifier(fields.revoked_by.take(), "revoked_by")?,
            }
        }
    };
    Ok(Event {
        event_id,
        occurred_at,
        body,
    })
}

/// Steps 1–2 by `serde_json`, for every payload the fast scan does not handle: the fields
/// of a syntactically valid JSON object, or the `malformed_json` / `schema_violation`
/// rejection that says what is wrong.
fn parse_checked(payload: &[u8]) -> Result<Fields<'_>, Rejection> {
    if payload.is_empty() {
        return Err(Rejection::new(Reason::MalformedJson, "empty payload"));
    }
    let text = std::str::from_utf8(payload).map_err(|err| {
        Rejection::new(
            Reason::MalformedJson,
            format!("payload is not UTF-8: {err}"),
        )
    })?;
    let mut fields = Fields::default();
    // The visitors accept every JSON kind, so any error here is bad JSON input.
    if text.starts_with('\u{feff}') {
        return Err(Rejection::new(
            Reason::MalformedJson,
            "invalid JSON: the payload starts with a byte order mark (U+FEFF), which a JSON text must not (RFC 8259 §8.1); remove it",
        ));
    }
    let kind = parse(text, &mut fields).map_err(|err| syntax_error(text, &err))?;
    if let Some((name, bad)) = fields.first_bad_string() {
        let (line, column) = line_and_column(text, bad);
        return Err(Rejection::new(
            Reason::MalformedJson,
            format!(
                "invalid JSON in field \"{name}\": {} at line {line} column {column}",
                bad.problem
            ),
        ));
    }
    if kind != OBJECT {
        return Err(schema(format!("expected a JSON object, got {kind}")));
    }

    Ok(fields)
}

/// Returns true if and only if `s` is 1–64 characters of `[A-Za-z0-9._:-]` (SPEC §3).
#[must_use]
pub fn is_identifier(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= IDENTIFIER_MAX_LEN
        && s.bytes().all(|b| IDENTIFIER_BYTES[usize::from(b)])
}

/// Which bytes an identifier may hold: a table, as every event checks 4–5 identifiers.
static IDENTIFIER_BYTES: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        let byte = b as u8;
        table[b] = byte.is_ascii_alphanumeric() || matches!(byte, b'.' | b'_' | b':' | b'-');
        b += 1;
    }
    table
};

// ---------------------------------------------------------------------------------------
// Field checks (step 4).

fn schema(detail: String) -> Rejection {
    Rejection::new(Reason::SchemaViolation, detail)
}

fn field_error(name: &str, what: impl fmt::Display) -> Rejection {
    schema(format!("field \"{name}\": {what}"))
}

/// A producer's value as a JSON string (quoted, control characters as `\u0000`, the
/// notation producers write), cut to [`ECHO_MAX_CHARS`] characters.
fn echo(value: &str) -> String {
    let (shown, cut) = match value.char_indices().nth(ECHO_MAX_CHARS) {
        None => (value, ""),
        Some((end, _)) => (&value[..end], "…"),
    };
    let quoted = serde_json::to_string(shown).expect("a string always serializes");
    format!("{quoted}{cut}")
}

/// The string value of a required field.
fn string<'s>(slot: Option<&'s Scalar<'_>>, name: &str) -> Result<&'s str, Rejection> {
    match slot {
        Some(Scalar::Str(value)) => Ok(value),
        other => Err(not_a_string(other, name)),
    }
}

/// The rejection of a required string field that is missing or of another JSON kind.
fn not_a_string(slot: Option<&Scalar<'_>>, name: &str) -> Rejection {
    match slot {
        None => field_error(name, "missing"),
        Some(other) => field_error(
            name,
            format_args!("expected a string, got {}", other.kind()),
        ),
    }
}

fn identifier<'a>(slot: Option<Scalar<'a>>, name: &str) -> Result<Cow<'a, str>, Rejection> {
    let value = match slot {
        Some(Scalar::Str(value)) => value,
        other => return Err(not_a_string(other.as_ref(), name)),
    };
    if is_identifier(&value) {
        Ok(value)
    } else if value.is_empty() {
        Err(field_error(name, "empty identifier"))
    } else {
        Err(field_error(
            name,
            format_args!(
                "{} is not an identifier (1-64 characters of A-Z a-z 0-9 . _ : -)",
                echo(&value)
            ),
        ))
    }
}

fn timestamp(slot: Option<&Scalar<'_>>, name: &str) -> Result<DateTime<FixedOffset>, Rejection> {
    let value = string(slot, name)?;
    DateTime::parse_from_rfc3339(value).map_err(|err| {
        let naive_date_time = ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f"]
            .iter()
            .any(|format| NaiveDateTime::parse_from_str(value, format).is_ok());
        let problem = if naive_date_time {
            "has no UTC offset".to_owned()
        } else if NaiveDate::parse_from_str(value, "%Y-%m-%d").is_ok() {
            "is a date without time and UTC offset".to_owned()
        } else {
            format!("is not an RFC 3339 timestamp with offset ({err})")
        };
        field_error(name, format_args!("{} {problem}", echo(value)))
    })
}

fn boolean(slot: Option<&Scalar<'_>>, name: &str) -> Result<bool, Rejection> {
    match slot {
        None => Err(field_error(name, "missing")),
        Some(Scalar::Bool(value)) => Ok(*value),
        Some(other) => Err(field_error(
            name,
            format_args!("expected a JSON boolean, got {}", other.kind()),
        )),
    }
}

/// Longest free text (`void_reason`, a revocation's `reason`), in code points.
const TEXT_MAX_CHARS: usize = 500;

/// Free text: 1–500 code points, none of them a control character (SPEC §8).
fn text<'a>(slot: Option<Scalar<'a>>, name: &str) -> Result<Cow<'a, str>, Rejection> {
    let value = match slot {
        Some(Scalar::Str(value)) => value,
        other => return Err(not_a_string(other.as_ref(), name)),
    };
    let chars = value.chars().count();
    if chars == 0 {
        return Err(field_error(name, "empty text (1-500 printable characters)"));
    }
    if chars > TEXT_MAX_CHARS {
        return Err(field_error(
            name,
            format_args!("{chars} characters, more than {TEXT_MAX_CHARS}"),
        ));
    }
    if let Some(control) = value.chars().find(|c| c.is_control()) {
        return Err(field_error(
            name,
            format_args!(
                "holds the control character U+{:04X} (only printable characters)",
                control as u32
            ),
        ));
    }
    Ok(value)
}

/// A void's `program`: the name of a ledger program (never a void or a revocation).
fn voided_program(slot: Option<&Scalar<'_>>) -> Result<Program, Rejection> {
    let name = string(slot, "program")?;
    Program::ledger_from_type(name).ok_or_else(|| {
        let names: Vec<&str> = Program::LEDGER.iter().map(|p| p.as_str()).collect();
        field_error(
            "program",
            format_args!(
                "{} is not a program a void may name (one of {})",
                echo(name),
                names.join(", ")
            ),
        )
    })
}

/// The unit key of the record a void names, from the fields of that program's key (an
/// infection's local date given as `date`), joined as [`Event::unit_key`] joins them.
fn voided_key(program: Program, fields: &mut Fields<'_>) -> Result<String, Rejection> {
    let id = |slot: &mut Option<Scalar<'_>>, name: &str| -> Result<String, Rejection> {
        identifier(slot.take(), name).map(Cow::into_owned)
    };
    Ok(match program {
        Program::TakeoutOrder => format!(
            "{}/{}",
            id(&mut fields.platform_id, "platform_id")?,
            id(&mut fields.order_id, "order_id")?
        ),
        Program::ImportParcel | Program::RuralDelivery => id(&mut fields.waybill_no, "waybill_no")?,
        Program::PlatformMonthAttested => format!(
            "{}/{}",
            id(&mut fields.platform_id, "platform_id")?,
            month(fields.month.as_ref(), "month")?.format("%Y-%m")
        ),
        Program::CourierInfection | Program::CourierIdleDay => format!(
            "{}/{}/{}",
            id(&mut fields.platform_id, "platform_id")?,
            id(&mut fields.courier_id, "courier_id")?,
            date(fields.date.as_ref(), "date")?
        ),
        Program::LockerPurchased => id(&mut fields.locker_serial, "locker_serial")?,
        Program::IdDevicePurchased => id(&mut fields.device_serial, "device_serial")?,
        Program::CountyCenterOpened => id(&mut fields.center_id, "center_id")?,
        Program::VillageOutletOpened | Program::VillageOutletClosed => {
            id(&mut fields.outlet_id, "outlet_id")?
        }
        Program::UnitVoided | Program::SubsidyRevoked => {
            unreachable!("voided_program admits ledger programs only")
        }
    })
}

/// `"YYYY-MM"` → the month's first day.
fn month(slot: Option<&Scalar<'_>>, name: &str) -> Result<NaiveDate, Rejection> {
    let value = string(slot, name)?;
    let parsed = (value.len() == 7 && value.as_bytes()[4] == b'-')
        .then(|| NaiveDate::parse_from_str(&format!("{value}-01"), "%Y-%m-%d").ok())
        .flatten();
    parsed.ok_or_else(|| field_error(name, format_args!("{} is not a month YYYY-MM", echo(value))))
}

/// `"YYYY-MM-DD"`, a calendar date.
fn date(slot: Option<&Scalar<'_>>, name: &str) -> Result<NaiveDate, Rejection> {
    let value = string(slot, name)?;
    let parsed = (value.len() == 10)
        .then(|| NaiveDate::parse_from_str(value, "%Y-%m-%d").ok())
        .flatten();
    parsed.ok_or_else(|| {
        field_error(
            name,
            format_args!("{} is not a date YYYY-MM-DD", echo(value)),
        )
    })
}

/// A price: a JSON string of yuan, plain digits with at most two decimals, above zero.
fn price(slot: Option<&Scalar<'_>>, name: &str) -> Result<i64, Rejection> {
    let value = string(slot, name)?;
    match crate::policy::parse_yuan_fen(value) {
        Some(fen) if fen > 0 => Ok(fen),
        Some(_) => Err(field_error(name, format_args!("{} is not above zero", echo(value)))),
        None => Err(field_error(
            name,
            format_args!(
                "{} is not a price (yuan as plain digits with at most two decimals, e.g. \"1200.00\")",
                echo(value)
            ),
        )),
    }
}

fn site_type(slot: Option<&Scalar<'_>>, name: &str) -> Result<SiteType, Rejection> {
    const EXPECTED: &str = "\"office_building\", \"residential_compound\" or \"other\"";
    match slot {
        None => Err(field_error(name, "missing")),
        Some(Scalar::Str(value)) => match value.as_ref() {
            "office_building" => Ok(SiteType::OfficeBuilding),
            "residential_compound" => Ok(SiteType::ResidentialCompound),
            "other" => Ok(SiteType::Other),
            other => Err(field_error(
                name,
                format_args!("expected {EXPECTED}, got {}", echo(other)),
            )),
        },
        Some(other) => Err(field_error(
            name,
            format_args!("expected {EXPECTED}, got {}", other.kind()),
        )),
    }
}

fn channel(slot: Option<&Scalar<'_>>, name: &str) -> Result<Channel, Rejection> {
    match slot {
        None => Err(field_error(name, "missing")),
        Some(Scalar::Str(value)) => match value.as_ref() {
            "mail" => Ok(Channel::Mail),
            "express" => Ok(Channel::Express),
            other => Err(field_error(
                name,
                format_args!("expected \"mail\" or \"express\", got {}", echo(other)),
            )),
        },
        Some(other) => Err(field_error(
            name,
            format_args!("expected \"mail\" or \"express\", got {}", other.kind()),
        )),
    }
}

/// The rejection of a JSON syntax error, naming the top-level field it is in when it is
/// inside one: `invalid JSON in field "waybill_no": control character … at line 1 column 40`.
fn syntax_error(text: &str, err: &serde_json::Error) -> Rejection {
    // serde_json's column counts the bytes of the line up to and including the byte that
    // revealed the error (a `}` ending `tru}`); the scan stops before that byte.
    let line_start: usize = text
        .split_inclusive('\n')
        .take(err.line().saturating_sub(1))
        .map(str::len)
        .sum();
    let detail = match field_at(text, (line_start + err.column()).saturating_sub(1)) {
        Some(field) => format!("invalid JSON in field {}: {err}", echo(&field)),
        None => format!("invalid JSON: {err}"),
    };
    Rejection::new(Reason::MalformedJson, detail)
}

/// The top-level field whose value holds byte `at` of `text`, when `text` starts as a JSON
/// object: scans the prefix before `at` (strings, escapes, nesting) and returns the last
/// complete key of the outermost object, unescaped. `None` when `at` is not inside a
/// value of the outermost object (in a key, before the object, after it).
fn field_at(text: &str, at: usize) -> Option<String> {
    let bytes = &text.as_bytes()[..at.min(text.len())];
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    let mut string_start = 0usize;
    // At depth 1: the byte range of the last complete key, and whether the next string
    // is a key (after `{` or `,`) or a value (after `:`).
    let mut key: Option<(usize, usize)> = None;
    let mut expecting_key = false;
    for (i, &b) in bytes.iter().enumerate() {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => {
                    in_string = false;
                    if depth == 1 && expecting_key {
                        key = Some((string_start, i + 1));
                        expecting_key = false;
                    }
                }
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => {
                in_string = true;
                string_start = i;
            }
            b'{' | b'[' => {
                depth += 1;
                if depth == 1 {
                    if b == b'[' {
                        return None;
                    }
                    expecting_key = true;
                    key = None;
                }
            }
            b'}' | b']' => {
                depth = depth.checked_sub(1)?;
                if depth == 0 {
                    return None;
                }
            }
            b',' if depth == 1 => {
                expecting_key = true;
                key = None;
            }
            _ => {}
        }
    }
    if depth == 0 || (in_string && expecting_key && depth == 1) {
        return None;
    }
    let (start, end) = key?;
    serde_json::from_str::<String>(&text[start..end]).ok()
}

/// 1-based line and byte column in `text` of a bad string's problem (`bad.raw` borrows
/// from `text`; JSON strings hold no raw line breaks, so the problem is on `raw`'s line).
fn line_and_column(text: &str, bad: &BadString<'_>) -> (usize, usize) {
    let start = (bad.raw.as_ptr() as usize).saturating_sub(text.as_ptr() as usize);
    let at = (start + bad.column.saturating_sub(1)).min(text.len());
    let before = &text.as_bytes()[..at];
    let line = 1 + before.iter().filter(|&&b| b == b'\n').count();
    let line_start = before
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |i| i + 1);
    (line, at - line_start + 1)
}

// ---------------------------------------------------------------------------------------
// One-pass borrowed parsing (steps 1–2).

/// The kind name of a JSON object.
const OBJECT: &str = "object";

/// Parses one JSON text (nothing but whitespace may follow it) and returns the kind of its
/// top-level value; if it is an object, its known keys are stored in `fields` in place
/// (filling a caller's struct avoids moving the ~400-byte `Fields` through return values).
fn parse<'a>(text: &'a str, fields: &mut Fields<'a>) -> serde_json::Result<&'static str> {
    let mut deserializer = serde_json::Deserializer::from_str(text);
    let kind = DocumentSeed { fields }.deserialize(&mut deserializer)?;
    deserializer.end()?;
    Ok(kind)
}

/// The value of a known key, as far as the schema cares.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Scalar<'a> {
    /// A JSON string, borrowed from the payload unless it contained escapes.
    Str(Cow<'a, str>),
    /// A JSON boolean.
    Bool(bool),
    /// Any other JSON kind, by name: `"number"`, `"null"`, `"array"` or `"object"`.
    Other(&'static str),
    /// A JSON string whose `\u` escapes are not valid Unicode (a lone surrogate): bad JSON
    /// (step 1), reported with the field's name after the parse.
    BadString(BadString<'a>),
}

/// Where and why a known field's string could not be unescaped.
#[derive(Debug, Clone, PartialEq, Eq)]
struct BadString<'a> {
    /// The raw JSON string, borrowed from the payload (its position gives the column).
    raw: &'a str,
    /// serde_json's message without its position, e.g. `unexpected end of hex escape`.
    problem: String,
    /// 1-based byte column of the problem within `raw`.
    column: usize,
}

impl Scalar<'_> {
    /// The JSON kind, for details such as `expected a string, got number`.
    fn kind(&self) -> &'static str {
        match self {
            Scalar::Str(_) => "string",
            Scalar::Bool(_) => "boolean",
            Scalar::Other(kind) => kind,
            Scalar::BadString(_) => "string",
        }
    }
}

impl<'de> Deserialize<'de> for Scalar<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        // The raw value is syntax-checked by serde_json but not converted, so numbers of
        // any size and nested values of any depth are fine here.
        let raw = <&'de RawValue>::deserialize(deserializer)?.get();
        Ok(match raw.as_bytes().first() {
            Some(b'"') => {
                let inner = &raw[1..raw.len() - 1];
                if inner.contains('\\') {
                    match serde_json::from_str::<String>(raw) {
                        Ok(text) => Scalar::Str(Cow::Owned(text)),
                        Err(error) => {
                            let shown = error.to_string();
                            let problem = match shown.rfind(" at line ") {
                                Some(end) => shown[..end].to_string(),
                                None => shown,
                            };
                            Scalar::BadString(BadString {
                                raw,
                                problem,
                                column: error.column(),
                            })
                        }
                    }
                } else {
                    Scalar::Str(Cow::Borrowed(inner))
                }
            }
            Some(b't') => Scalar::Bool(true),
            Some(b'f') => Scalar::Bool(false),
            Some(b'n') => Scalar::Other("null"),
            Some(b'[') => Scalar::Other("array"),
            Some(b'{') => Scalar::Other("object"),
            _ => Scalar::Other("number"),
        })
    }
}

/// Known fields of any event type; `None` where the key is absent.
#[derive(Debug, Default, PartialEq, Eq)]
struct Fields<'a> {
    type_: Option<Scalar<'a>>,
    event_id: Option<Scalar<'a>>,
    occurred_at: Option<Scalar<'a>>,
    platform_id: Option<Scalar<'a>>,
    order_id: Option<Scalar<'a>>,
    courier_id: Option<Scalar<'a>>,
    zone_id: Option<Scalar<'a>>,
    courier_released: Option<Scalar<'a>>,
    firm_id: Option<Scalar<'a>>,
    outlet_id: Option<Scalar<'a>>,
    waybill_no: Option<Scalar<'a>>,
    channel: Option<Scalar<'a>>,
    month: Option<Scalar<'a>>,
    prevention_measures: Option<Scalar<'a>>,
    couriers_managed: Option<Scalar<'a>>,
    sites_disinfected: Option<Scalar<'a>>,
    purchaser_id: Option<Scalar<'a>>,
    locker_serial: Option<Scalar<'a>>,
    price: Option<Scalar<'a>>,
    site_type: Option<Scalar<'a>>,
    device_serial: Option<Scalar<'a>>,
    center_id: Option<Scalar<'a>>,
    district_code: Option<Scalar<'a>>,
    village_code: Option<Scalar<'a>>,
    date: Option<Scalar<'a>>,
    program: Option<Scalar<'a>>,
    void_reason: Option<Scalar<'a>>,
    period_from: Option<Scalar<'a>>,
    period_to: Option<Scalar<'a>>,
    reason: Option<Scalar<'a>>,
    revoked_by: Option<Scalar<'a>>,
}

impl<'a> Fields<'a> {
    /// The known field whose string is bad JSON and comes first in the payload.
    fn first_bad_string(&self) -> Option<(&'static str, &BadString<'a>)> {
        let named = [
            ("type", &self.type_),
            ("event_id", &self.event_id),
            ("occurred_at", &self.occurred_at),
            ("platform_id", &self.platform_id),
            ("order_id", &self.order_id),
            ("courier_id", &self.courier_id),
            ("zone_id", &self.zone_id),
            ("courier_released", &self.courier_released),
            ("firm_id", &self.firm_id),
            ("outlet_id", &self.outlet_id),
            ("waybill_no", &self.waybill_no),
            ("channel", &self.channel),
            ("month", &self.month),
            ("prevention_measures", &self.prevention_measures),
            ("couriers_managed", &self.couriers_managed),
            ("sites_disinfected", &self.sites_disinfected),
            ("purchaser_id", &self.purchaser_id),
            ("locker_serial", &self.locker_serial),
            ("price", &self.price),
            ("site_type", &self.site_type),
            ("device_serial", &self.device_serial),
            ("center_id", &self.center_id),
            ("district_code", &self.district_code),
            ("village_code", &self.village_code),
            ("date", &self.date),
            ("program", &self.program),
            ("void_reason", &self.void_reason),
            ("period_from", &self.period_from),
            ("period_to", &self.period_to),
            ("reason", &self.reason),
            ("revoked_by", &self.revoked_by),
        ];
        named
            .into_iter()
            .filter_map(|(name, slot)| match slot {
                Some(Scalar::BadString(bad)) => Some((name, bad)),
                _ => None,
            })
            .min_by_key(|(_, bad)| bad.raw.as_ptr() as usize)
    }

    fn slot(&mut self, key: Key) -> Option<&mut Option<Scalar<'a>>> {
        Some(match key {
            Key::Type => &mut self.type_,
            Key::EventId => &mut self.event_id,
            Key::OccurredAt => &mut self.occurred_at,
            Key::PlatformId => &mut self.platform_id,
            Key::OrderId => &mut self.order_id,
            Key::CourierId => &mut self.courier_id,
            Key::ZoneId => &mut self.zone_id,
            Key::CourierReleased => &mut self.courier_released,
            Key::FirmId => &mut self.firm_id,
            Key::OutletId => &mut self.outlet_id,
            Key::WaybillNo => &mut self.waybill_no,
            Key::Channel => &mut self.channel,
            Key::Month => &mut self.month,
            Key::PreventionMeasures => &mut self.prevention_measures,
            Key::CouriersManaged => &mut self.couriers_managed,
            Key::SitesDisinfected => &mut self.sites_disinfected,
            Key::PurchaserId => &mut self.purchaser_id,
            Key::LockerSerial => &mut self.locker_serial,
            Key::Price => &mut self.price,
            Key::SiteType => &mut self.site_type,
            Key::DeviceSerial => &mut self.device_serial,
            Key::CenterId => &mut self.center_id,
            Key::DistrictCode => &mut self.district_code,
            Key::VillageCode => &mut self.village_code,
            Key::Date => &mut self.date,
            Key::Program => &mut self.program,
            Key::VoidReason => &mut self.void_reason,
            Key::PeriodFrom => &mut self.period_from,
            Key::PeriodTo => &mut self.period_to,
            Key::Reason => &mut self.reason,
            Key::RevokedBy => &mut self.revoked_by,
            Key::Unknown => return None,
        })
    }
}

/// An object key, matched without allocating (escaped keys are matched after unescaping).
#[derive(Clone, Copy)]
enum Key {
    Type,
    EventId,
    OccurredAt,
    PlatformId,
    OrderId,
    CourierId,
    ZoneId,
    CourierReleased,
    FirmId,
    OutletId,
    WaybillNo,
    Channel,
    Month,
    PreventionMeasures,
    CouriersManaged,
    SitesDisinfected,
    PurchaserId,
    LockerSerial,
    Price,
    SiteType,
    DeviceSerial,
    CenterId,
    DistrictCode,
    VillageCode,
    Date,
    Program,
    VoidReason,
    PeriodFrom,
    PeriodTo,
    Reason,
    RevokedBy,
    Unknown,
}

impl Key {
    /// The key called `name` (after unescaping).
    fn named(name: &str) -> Key {
        match name {
            "type" => Key::Type,
            "event_id" => Key::EventId,
            "occurred_at" => Key::OccurredAt,
            "platform_id" => Key::PlatformId,
            "order_id" => Key::OrderId,
            "courier_id" => Key::CourierId,
            "zone_id" => Key::ZoneId,
            "courier_released" => Key::CourierReleased,
            "firm_id" => Key::FirmId,
            "outlet_id" => Key::OutletId,
            "waybill_no" => Key::WaybillNo,
            "channel" => Key::Channel,
            "month" => Key::Month,
            "prevention_measures" => Key::PreventionMeasures,
            "couriers_managed" => Key::CouriersManaged,
            "sites_disinfected" => Key::SitesDisinfected,
            "purchaser_id" => Key::PurchaserId,
            "locker_serial" => Key::LockerSerial,
            "price" => Key::Price,
            "site_type" => Key::SiteType,
            "device_serial" => Key::DeviceSerial,
            "center_id" => Key::CenterId,
            "district_code" => Key::DistrictCode,
            "village_code" => Key::VillageCode,
            "date" => Key::Date,
            "program" => Key::Program,
            "void_reason" => Key::VoidReason,
            "period_from" => Key::PeriodFrom,
            "period_to" => Key::PeriodTo,
            "reason" => Key::Reason,
            "revoked_by" => Key::RevokedBy,
            _ => Key::Unknown,
        }
    }
}

impl<'de> Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl Visitor<'_> for KeyVisitor {
            type Value = Key;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object key")
            }
            fn visit_str<E: de::Error>(self, key: &str) -> Result<Key, E> {
                Ok(Key::named(key))
            }
        }
        deserializer.deserialize_identifier(KeyVisitor)
    }
}

/// Accepts every JSON kind at the top level, so that "not an object" is a value, not an
/// error, and every parse error is a syntax error. Yields the JSON kind's name.
struct DocumentSeed<'f, 'de> {
    fields: &'f mut Fields<'de>,
}

impl<'de> DeserializeSeed<'de> for DocumentSeed<'_, 'de> {
    type Value = &'static str;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for DocumentSeed<'_, 'de> {
    type Value = &'static str;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok("boolean")
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
        Ok("number")
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
        Ok("number")
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Ok("number")
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
        Ok("string")
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok("null")
    }

    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok("null")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok("array")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        while let Some(key) = map.next_key::<Key>()? {
            match self.fields.slot(key) {
                // The last occurrence of a key wins.
                Some(slot) => *slot = Some(map.next_value::<Scalar<'de>>()?),
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(OBJECT)
    }
}

#[cfg(test)]
mod tests {
    //! Table tests for every branch of steps 1–4 and their precedence.
    use super::*;

    type Pairs = Vec<(&'static str, String)>;

    /// A JSON object from (key, raw JSON value) pairs, in order.
    fn object(pairs: &Pairs) -> String {
        let body: Vec<String> = pairs.iter().map(|(k, v)| format!("{k:?}:{v}")).collect();
        format!("{{{}}}", body.join(","))
    }

    fn raw(pairs: &[(&'static str, &str)]) -> Pairs {
        pairs.iter().map(|(k, v)| (*k, (*v).to_owned())).collect()
    }

    fn takeout() -> Pairs {
        raw(&[
            ("type", r#""takeout_order""#),
            ("event_id", r#""evt-0001""#),
            ("occurred_at", r#""2024-03-01T12:30:00+08:00""#),
            ("platform_id", r#""P1""#),
            ("order_id", r#""ORD-123""#),
            ("courier_id", r#""C1""#),
            ("zone_id", r#""Z1""#),
            ("courier_released", "true"),
        ])
    }

    fn import() -> Pairs {
        raw(&[
            ("type", r#""import_parcel""#),
            ("event_id", r#""evt-0002""#),
            ("occurred_at", r#""2023-05-06T01:02:03Z""#),
            ("firm_id", r#""F1""#),
            ("waybill_no", r#""WB0001""#),
            ("channel", r#""mail""#),
        ])
    }

    fn rural() -> Pairs {
        raw(&[
            ("type", r#""rural_delivery""#),
            ("event_id", r#""evt-0003""#),
            ("occurred_at", r#""2022-07-01T00:00:00.123+08:00""#),
            ("firm_id", r#""F1""#),
            ("outlet_id", r#""O1""#),
            ("waybill_no", r#""RW0001""#),
        ])
    }

    /// `pairs` with `key` set to the raw JSON `value` (replaced in place or appended), or
    /// removed when `value` is `None`.
    fn with(mut pairs: Pairs, key: &'static str, value: Option<&str>) -> Pairs {
        match (pairs.iter().position(|(k, _)| *k == key), value) {
            (Some(i), Some(v)) => pairs[i].1 = v.to_owned(),
            (Some(i), None) => {
                pairs.remove(i);
            }
            (None, Some(v)) => pairs.push((key, v.to_owned())),
            (None, None) => {}
        }
        pairs
    }

    fn decode_str(payload: &str) -> Result<Event<'_>, Rejection> {
        decode(payload.as_bytes())
    }

    fn ts(s: &str) -> DateTime<FixedOffset> {
        DateTime::parse_from_rfc3339(s).unwrap()
    }

    /// Asserts a rejection with `reason` whose detail contains every one of `needles`.
    #[track_caller]
    fn assert_rejected(payload: &[u8], reason: Reason, needles: &[&str]) {
        let shown = String::from_utf8_lossy(payload);
        match decode(payload) {
            Ok(event) => panic!("{shown}: expected {reason}, decoded {event:?}"),
            Err(rejection) => {
                assert_eq!(rejection.reason, reason, "{shown}: {}", rejection.detail);
                for needle in needles {
                    assert!(
                        rejection.detail.contains(needle),
                        "{shown}: detail {:?} lacks {needle:?}",
                        rejection.detail
                    );
                }
            }
        }
    }

    #[test]
    fn valid_events_of_each_type_decode() {
        assert_eq!(
            decode_str(&object(&takeout())).unwrap(),
            Event {
                event_id: "evt-0001".into(),
                occurred_at: ts("2024-03-01T12:30:00+08:00"),
                body: EventBody::Takeout {
                    platform_id: "P1".into(),
                    order_id: "ORD-123".into(),
                    courier_id: "C1".into(),
                    zone_id: "Z1".into(),
                    courier_released: true,
                },
            }
        );
        assert_eq!(
            decode_str(&object(&import())).unwrap(),
            Event {
                event_id: "evt-0002".into(),
                occurred_at: ts("2023-05-06T01:02:03Z"),
                body: EventBody::Import {
                    firm_id: "F1".into(),
                    waybill_no: "WB0001".into(),
                    channel: Channel::Mail,
                },
            }
        );
        assert_eq!(
            decode_str(&object(&rural())).unwrap(),
            Event {
                event_id: "evt-0003".into(),
                occurred_at: ts("2022-07-01T00:00:00.123+08:00"),
                body: EventBody::Rural {
                    firm_id: "F1".into(),
                    outlet_id: "O1".into(),
                    waybill_no: "RW0001".into(),
                },
            }
        );
        // courier_released = false is valid at this stage; the rules reject it later.
        let released_false = with(takeout(), "courier_released", Some("false"));
        match decode_str(&object(&released_false)).unwrap().body {
            EventBody::Takeout {
                courier_released, ..
            } => assert!(!courier_released),
            other => panic!("{other:?}"),
        }
        let express = with(import(), "channel", Some(r#""express""#));
        match decode_str(&object(&express)).unwrap().body {
            EventBody::Import { channel, .. } => assert_eq!(channel, Channel::Express),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn field_order_and_whitespace_do_not_matter() {
        let mut pairs = takeout();
        pairs.reverse();
        assert_eq!(
            decode_str(&object(&pairs)).unwrap(),
            decode_str(&object(&takeout())).unwrap()
        );
        let spaced = format!(
            " \n\t{}\r\n ",
            object(&takeout())
                .replace(',', " ,\n  ")
                .replace(':', " : ")
        );
        // The replace above also spaced the colons inside the timestamp value; put them back.
        let spaced = spaced.replace("12 : 30 : 00+08 : 00", "12:30:00+08:00");
        assert_eq!(
            decode_str(&spaced).unwrap(),
            decode_str(&object(&takeout())).unwrap()
        );
    }

    #[test]
    fn malformed_json_cases() {
        let cases: &[(&[u8], &[&str])] = &[
            (b"", &["empty payload"]),
            (b" ", &["invalid JSON", "EOF", "line 1 column 1"]),
            (b" \n\t\r\n", &["invalid JSON", "EOF", "line 3"]),
            (
                b"{\"type\":\"takeout_order\xff\"}",
                &["not UTF-8", "index 22"],
            ),
            (b"\xff\xfe{}", &["not UTF-8"]),
            (b"\xef\xbb\xbf{}", &["invalid JSON"]), // a UTF-8 byte order mark is not JSON
            (b"{", &["invalid JSON", "EOF"]),
            (b"{\"type\":", &["invalid JSON", "EOF"]),
            (b"{\"type\":\"takeout_order\"", &["invalid JSON", "EOF"]),
            (b"{} x", &["trailing characters", "line 1 column 4"]),
            (b"{}{}", &["trailing characters"]),
            (b"[] []", &["trailing characters"]),
            (
                b"{'type':'takeout_order'}",
                &["invalid JSON", "line 1 column 2"],
            ),
            (b"{\"type\":\"rural_delivery\",}", &["trailing comma"]),
            (b"{\"a\" 1}", &["expected `:`"]),
            (b"{\"type\":\"a\nb\"}", &["control character"]),
            (b"{\"type\":\"\\x41\"}", &["invalid escape"]),
            (b"{\"event_id\":\"\\ud800\"}", &["invalid JSON"]), // lone surrogate, known field
            (b"{\"type\":tru}", &["invalid JSON"]),
            (b"{\"n\":01}", &["invalid JSON"]),
            (b"{\"n\":NaN}", &["invalid JSON"]),
            (b"nul", &["invalid JSON"]),
            (b"takeout_order", &["invalid JSON", "line 1 column 2"]),
            (b"hello", &["invalid JSON", "expected value"]),
            (b"\"unterminated", &["EOF"]),
            (b"1e400", &["number out of range"]), // see the module docs
        ];
        for (payload, needles) in cases {
            assert_rejected(payload, Reason::MalformedJson, needles);
        }
    }

    #[test]
    fn malformed_json_wins_even_after_an_otherwise_valid_event() {
        let valid = object(&takeout());
        assert_rejected(
            format!("{valid}garbage").as_bytes(),
            Reason::MalformedJson,
            &["trailing characters"],
        );
        let mut bytes = valid.into_bytes();
        let at = bytes.len() - 5;
        bytes[at] = 0xC0;
        assert_rejected(&bytes, Reason::MalformedJson, &["not UTF-8"]);
    }

    #[test]
    fn non_objects_are_schema_violations() {
        let deep_array = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
        let cases: &[(&str, &str)] = &[
            ("[]", "array"),
            ("[{\"type\":\"takeout_order\"}, [1, [2, {}]]]", "array"),
            ("\"str\"", "string"),
            ("\"{\\\"type\\\":\\\"takeout_order\\\"}\"", "string"),
            ("123", "number"),
            ("-1.5e3", "number"),
            ("18446744073709551616", "number"),
            ("null", "null"),
            ("true", "boolean"),
            (" false ", "boolean"),
            // Far deeper than serde_json's recursion limit of 128: still just an array.
            (&deep_array, "array"),
        ];
        for (payload, kind) in cases {
            assert_rejected(
                payload.as_bytes(),
                Reason::SchemaViolation,
                &["expected a JSON object", &format!("got {kind}")],
            );
        }
    }

    #[test]
    fn missing_or_mistyped_type_is_a_schema_violation() {
        let cases: &[(&str, &str)] = &[
            ("{}", "missing"),
            (
                "{\"event_id\":\"e1\",\"Type\":\"takeout_order\"}",
                "missing",
            ),
            ("{\"type\":null}", "got null"),
            ("{\"type\":1}", "got number"),
            ("{\"type\":true}", "got boolean"),
            ("{\"type\":[\"takeout_order\"]}", "got array"),
            ("{\"type\":{\"name\":\"takeout_order\"}}", "got object"),
        ];
        for (payload, what) in cases {
            assert_rejected(
                payload.as_bytes(),
                Reason::SchemaViolation,
                &["field \"type\"", what],
            );
        }
    }

    #[test]
    fn unknown_type_beats_missing_fields() {
        let cases: &[(&str, &str)] = &[
            ("{\"type\":\"parcel\"}", "\"parcel\""),
            ("{\"type\":\"\"}", "\"\""),
            ("{\"type\":\"Takeout_Order\"}", "\"Takeout_Order\""),
            ("{\"type\":\"takeout_order \"}", "\"takeout_order \""),
            ("{\"type\":\"外卖\",\"event_id\":7}", "\"外卖\""),
        ];
        for (payload, echoed) in cases {
            assert_rejected(
                payload.as_bytes(),
                Reason::UnknownType,
                &["unknown type", echoed],
            );
        }
        // A full, otherwise valid takeout event with another type.
        let pairs = with(takeout(), "type", Some(r#""takeout""#));
        assert_rejected(
            object(&pairs).as_bytes(),
            Reason::UnknownType,
            &["\"takeout\""],
        );
    }

    #[test]
    fn every_required_field_missing_null_or_mistyped_is_named() {
        for base in [takeout(), import(), rural()] {
            for (key, _) in base.iter().filter(|(k, _)| *k != "type") {
                let field = format!("field \"{key}\"");
                let expected = if *key == "courier_released" {
                    "expected a JSON boolean"
                } else if *key == "channel" {
                    "expected \"mail\" or \"express\""
                } else {
                    "expected a string"
                };
                let missing = with(base.clone(), key, None);
                assert_rejected(
                    object(&missing).as_bytes(),
                    Reason::SchemaViolation,
                    &[&field, "missing"],
                );
                for (value, kind) in [
                    ("null", "null"),
                    ("42", "number"),
                    ("1e400", "number"),
                    ("[\"P1\"]", "array"),
                    ("{\"id\":\"P1\"}", "object"),
                ] {
                    let pairs = with(base.clone(), key, Some(value));
                    assert_rejected(
                        object(&pairs).as_bytes(),
                        Reason::SchemaViolation,
                        &[&field, expected, &format!("got {kind}")],
                    );
                }
                if *key != "courier_released" {
                    let pairs = with(base.clone(), key, Some("false"));
                    assert_rejected(
                        object(&pairs).as_bytes(),
                        Reason::SchemaViolation,
                        &[&field, "got boolean"],
                    );
                }
            }
        }
    }

    #[test]
    fn courier_released_must_be_a_json_boolean() {
        for (value, kind) in [
            (r#""true""#, "got string"),
            (r#""false""#, "got string"),
            ("1", "got number"),
            ("0", "got number"),
            ("null", "got null"),
        ] {
            let pairs = with(takeout(), "courier_released", Some(value));
            assert_rejected(
                object(&pairs).as_bytes(),
                Reason::SchemaViolation,
                &["field \"courier_released\": expected a JSON boolean", kind],
            );
        }
        let pairs = with(takeout(), "courier_released", Some(r#""true""#));
        assert_eq!(
            decode_str(&object(&pairs)).unwrap_err().detail,
            r#"field "courier_released": expected a JSON boolean, got string"#
        );
    }

    #[test]
    fn channel_must_be_mail_or_express() {
        for value in [
            r#""Mail""#,
            r#""EXPRESS""#,
            r#""air""#,
            r#""""#,
            r#"" mail""#,
        ] {
            let pairs = with(import(), "channel", Some(value));
            assert_rejected(
                object(&pairs).as_bytes(),
                Reason::SchemaViolation,
                &[
                    "field \"channel\"",
                    "expected \"mail\" or \"express\"",
                    value,
                ],
            );
        }
    }

    #[test]
    fn occurred_at_needs_rfc3339_with_an_offset() {
        let accepted = [
            ("2024-01-01T00:00:00Z", "2024-01-01T00:00:00+00:00"),
            ("2024-01-01T00:00:00z", "2024-01-01T00:00:00+00:00"),
            ("2024-01-01t00:00:00Z", "2024-01-01T00:00:00+00:00"),
            ("2024-01-01 00:00:00Z", "2024-01-01T00:00:00+00:00"),
            ("2024-01-01T08:00:00+08:00", "2024-01-01T08:00:00+08:00"),
            ("2023-12-31T19:00:00-05:00", "2023-12-31T19:00:00-05:00"),
            ("2024-01-01T00:00:00+00:00", "2024-01-01T00:00:00+00:00"),
            ("2024-01-01T00:00:00-00:00", "2024-01-01T00:00:00+00:00"),
            ("2024-01-01T00:00:00.5Z", "2024-01-01T00:00:00.500+00:00"),
            (
                "2024-01-01T00:00:00.123456789+08:00",
                "2024-01-01T00:00:00.123456789+08:00",
            ),
            (
                "2024-02-29T23:59:59.999+08:00",
                "2024-02-29T23:59:59.999+08:00",
            ),
            ("2024-03-01T05:45:00+05:45", "2024-03-01T05:45:00+05:45"),
        ];
        for (value, expected) in accepted {
            let pairs = with(takeout(), "occurred_at", Some(&format!("{value:?}")));
            let text = object(&pairs);
            let event =
                decode_str(&text).unwrap_or_else(|r| panic!("{value}: {} {}", r.reason, r.detail));
            assert_eq!(event.occurred_at, ts(expected), "{value}");
            // The producer's offset is kept, not only the instant.
            assert_eq!(event.occurred_at.offset(), ts(expected).offset(), "{value}");
        }

        let rejected = [
            ("2024-01-01T00:00:00", "has no UTC offset"),
            ("2024-01-01T08:00:00", "has no UTC offset"),
            ("2024-01-01T08:00:00.250", "has no UTC offset"),
            ("2024-01-01 08:00:00", "has no UTC offset"),
            ("2024-01-01", "is a date without time and UTC offset"),
            ("2024-01-01Z", "not an RFC 3339 timestamp"),
            ("2024-01-01T00:00Z", "not an RFC 3339 timestamp"),
            ("2024-01-01T00:00:00+08", "not an RFC 3339 timestamp"),
            ("2024-01-01T00:00:00+0800", "not an RFC 3339 timestamp"),
            ("2024-01-01T00:00:00+24:00", "not an RFC 3339 timestamp"),
            ("2024-01-01T00:00:00 +08:00", "not an RFC 3339 timestamp"),
            ("2024-01-01T00:00:00.Z", "not an RFC 3339 timestamp"),
            ("2024-01-01T00:00:00ZZ", "not an RFC 3339 timestamp"),
            ("2024-02-30T00:00:00Z", "not an RFC 3339 timestamp"),
            ("2023-02-29T00:00:00Z", "not an RFC 3339 timestamp"),
            ("2024-13-01T00:00:00Z", "not an RFC 3339 timestamp"),
            ("2024-01-01T24:00:00Z", "not an RFC 3339 timestamp"),
            ("24-01-01T00:00:00Z", "not an RFC 3339 timestamp"),
            ("2024/01/01T00:00:00Z", "not an RFC 3339 timestamp"),
            (
                "Mon, 01 Jan 2024 00:00:00 +0000",
                "not an RFC 3339 timestamp",
            ),
            ("1704067200", "not an RFC 3339 timestamp"),
            (" 2024-01-01T00:00:00Z", "not an RFC 3339 timestamp"),
            ("2024-01-01T00:00:00Z ", "not an RFC 3339 timestamp"),
            ("", "not an RFC 3339 timestamp"),
        ];
        for (value, problem) in rejected {
            let pairs = with(rural(), "occurred_at", Some(&format!("{value:?}")));
            assert_rejected(
                object(&pairs).as_bytes(),
                Reason::SchemaViolation,
                &["field \"occurred_at\"", problem, &format!("{value:?}")],
            );
        }
        let pairs = with(import(), "occurred_at", Some(r#""2024-01-01T08:00:00""#));
        assert_eq!(
            decode_str(&object(&pairs)).unwrap_err().detail,
            r#"field "occurred_at": "2024-01-01T08:00:00" has no UTC offset"#
        );
        // A JSON number (epoch seconds) is the wrong kind, not a bad timestamp.
        let pairs = with(import(), "occurred_at", Some("1704067200"));
        assert_rejected(
            object(&pairs).as_bytes(),
            Reason::SchemaViolation,
            &["field \"occurred_at\": expected a string, got number"],
        );
    }

    #[test]
    fn identifier_character_set_and_length() {
        let max = "a".repeat(64);
        let too_long = "a".repeat(65);
        let accepted = [
            "a",
            "Z",
            "0",
            "P1",
            "order.2024-03-01:0001_x",
            "._:-",
            "---",
            "SF1234567890",
            max.as_str(),
        ];
        for id in accepted {
            assert!(is_identifier(id), "{id:?}");
        }
        let rejected = [
            "",
            too_long.as_str(),
            " ",
            "a b",
            " P1",
            "P1 ",
            "a/b",
            "a\\b",
            "a+b",
            "a@b",
            "a#b",
            "a\tb",
            "a\nb",
            "a\u{0}b",
            "外卖",
            "P1号",
            "é",
            "ａ", // full-width a
        ];
        for id in rejected {
            assert!(!is_identifier(id), "{id:?}");
        }
        // 64 characters whose UTF-8 is longer than 64 bytes are still rejected (not ASCII).
        assert!(!is_identifier(&"é".repeat(32)));
    }

    #[test]
    fn every_identifier_field_is_checked() {
        let bases = [takeout(), import(), rural()];
        let identifier_keys = [
            "event_id",
            "platform_id",
            "order_id",
            "courier_id",
            "zone_id",
            "firm_id",
            "outlet_id",
            "waybill_no",
        ];
        let max = format!("{:?}", "9".repeat(64));
        let too_long = format!("{:?}", "9".repeat(65));
        for base in bases {
            for (key, _) in base.iter().filter(|(k, _)| identifier_keys.contains(k)) {
                let field = format!("field \"{key}\"");
                let pairs = with(base.clone(), key, Some(&max));
                assert!(decode_str(&object(&pairs)).is_ok(), "{key} 64 chars");
                for (value, problem) in [
                    (too_long.as_str(), "is not an identifier"),
                    (r#""""#, "empty identifier"),
                    (r#""a b""#, "is not an identifier"),
                    (r#""a/b""#, "is not an identifier"),
                    (r#""外卖""#, "is not an identifier"),
                    (r#""P1\n""#, "is not an identifier"),
                ] {
                    let pairs = with(base.clone(), key, Some(value));
                    assert_rejected(
                        object(&pairs).as_bytes(),
                        Reason::SchemaViolation,
                        &[&field, problem],
                    );
                }
            }
        }
        let pairs = with(takeout(), "order_id", Some(r#""a/b""#));
        assert_eq!(
            decode_str(&object(&pairs)).unwrap_err().detail,
            r#"field "order_id": "a/b" is not an identifier (1-64 characters of A-Z a-z 0-9 . _ : -)"#
        );
    }

    #[test]
    fn fields_are_checked_in_the_documented_order() {
        // (payload, the field the rejection must name)
        let cases: Vec<(Pairs, &str)> = vec![
            // event_id before occurred_at.
            (
                with(
                    with(takeout(), "event_id", None),
                    "occurred_at",
                    Some(r#""2024-01-01""#),
                ),
                "event_id",
            ),
            // A bad occurred_at before a missing type field.
            (
                with(
                    with(takeout(), "platform_id", None),
                    "occurred_at",
                    Some(r#""2024-01-01""#),
                ),
                "occurred_at",
            ),
            // A bad event_id before a bad occurred_at.
            (
                with(
                    with(rural(), "event_id", Some(r#""e 1""#)),
                    "occurred_at",
                    Some("null"),
                ),
                "event_id",
            ),
            // Takeout: platform_id, order_id, courier_id, zone_id, courier_released.
            (
                raw(&[
                    ("type", r#""takeout_order""#),
                    ("event_id", r#""e""#),
                    ("occurred_at", r#""2024-01-01T00:00:00Z""#),
                ]),
                "platform_id",
            ),
            (
                with(
                    with(takeout(), "order_id", Some("1")),
                    "courier_released",
                    None,
                ),
                "order_id",
            ),
            (
                with(with(takeout(), "courier_id", None), "zone_id", None),
                "courier_id",
            ),
            (
                with(
                    with(takeout(), "zone_id", Some(r#""z/1""#)),
                    "courier_released",
                    Some(r#""yes""#),
                ),
                "zone_id",
            ),
            // Import: firm_id, waybill_no, channel.
            (
                raw(&[
                    ("type", r#""import_parcel""#),
                    ("event_id", r#""e""#),
                    ("occurred_at", r#""2024-01-01T00:00:00Z""#),
                ]),
                "firm_id",
            ),
            (
                with(
                    with(import(), "waybill_no", None),
                    "channel",
                    Some(r#""air""#),
                ),
                "waybill_no",
            ),
            // Rural: firm_id, outlet_id, waybill_no.
            (
                raw(&[
                    ("type", r#""rural_delivery""#),
                    ("event_id", r#""e""#),
                    ("occurred_at", r#""2024-01-01T00:00:00Z""#),
                ]),
                "firm_id",
            ),
            (
                with(with(rural(), "outlet_id", None), "waybill_no", None),
                "outlet_id",
            ),
        ];
        for (pairs, field) in cases {
            assert_rejected(
                object(&pairs).as_bytes(),
                Reason::SchemaViolation,
                &[&format!("field \"{field}\"")],
            );
        }
    }

    #[test]
    fn unknown_and_foreign_fields_are_ignored() {
        let expected_text = object(&takeout());
        let expected = decode_str(&expected_text).unwrap();
        let extras: &[(&str, &str)] = &[
            ("note", r#""外卖 order, 封控区""#),
            ("amount", "12.5"),
            ("huge", "1e400"),
            ("big_int", "123456789012345678901234567890"),
            ("flag", "null"),
            (
                "nested",
                r#"{"a":[1,{"b":[null,true,{"c":"\u00e9\ud800"}]}],"type":"x"}"#,
            ),
            ("list", r#"[[[[[]]]],{},"",-0.0]"#),
            // Fields of the other event types are ignored for takeout orders, even if bad.
            ("channel", r#""air""#),
            ("firm_id", "17"),
            ("outlet_id", "null"),
            ("waybill_no", r#""a b""#),
            ("", r#""empty key""#),
        ];
        for (key, value) in extras {
            let mut pairs = takeout();
            pairs.insert(1, (key, (*value).to_owned()));
            assert_eq!(
                decode_str(&object(&pairs)).as_ref(),
                Ok(&expected),
                "{key}: {value}"
            );
        }
        // Nesting far deeper than serde_json's recursion limit, in an unknown field.
        let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
        let mut pairs = takeout();
        pairs.push(("deep", deep));
        assert_eq!(decode_str(&object(&pairs)).as_ref(), Ok(&expected));
    }

    #[test]
    fn deeply_nested_known_field_is_the_wrong_kind() {
        let deep = format!("{}0{}", "[".repeat(5_000), "]".repeat(5_000));
        let pairs = with(takeout(), "zone_id", Some(&deep));
        assert_rejected(
            object(&pairs).as_bytes(),
            Reason::SchemaViolation,
            &["field \"zone_id\": expected a string, got array"],
        );
    }

    #[test]
    fn the_last_duplicate_key_wins() {
        let mut pairs = takeout();
        pairs.insert(3, ("courier_id", r#""FIRST""#.to_owned()));
        pairs.push(("courier_id", r#""LAST""#.to_owned()));
        match decode_str(&object(&pairs)).unwrap().body {
            EventBody::Takeout { courier_id, .. } => assert_eq!(courier_id, "LAST"),
            other => panic!("{other:?}"),
        }
        // An earlier bad value is overridden by a later good one, and vice versa.
        let mut pairs = takeout();
        pairs.insert(0, ("courier_released", r#""yes""#.to_owned()));
        assert!(decode_str(&object(&pairs)).is_ok());
        let mut pairs = takeout();
        pairs.push(("courier_released", "null".to_owned()));
        assert_rejected(
            object(&pairs).as_bytes(),
            Reason::SchemaViolation,
            &["courier_released", "got null"],
        );
        // The type too.
        let mut pairs = rural();
        pairs.insert(0, ("type", r#""bogus""#.to_owned()));
        assert!(decode_str(&object(&pairs)).is_ok());
    }

    #[test]
    fn escaped_values_decode_to_their_characters() {
        let payload = r#"{"ty\u0070e":"takeout\u005forder","event_id":"e\u002d1",
            "occurred_at":"2024-03-01T12:30:00\u002B08:00","platform_id":"P\u0031",
            "order_id":"O1","courier_id":"C1","zone_id":"Z1","courier_released":true}"#;
        let event = decode_str(payload).unwrap();
        assert_eq!(event.event_id, "e-1");
        assert_eq!(event.occurred_at, ts("2024-03-01T12:30:00+08:00"));
        match event.body {
            EventBody::Takeout { platform_id, .. } => assert_eq!(platform_id, "P1"),
            other => panic!("{other:?}"),
        }
        let slash = with(takeout(), "event_id", Some(r#""e\/1""#));
        assert_rejected(
            object(&slash).as_bytes(),
            Reason::SchemaViolation,
            &[r#"field "event_id": "e/1" is not an identifier"#],
        );
    }

    #[test]
    fn echoed_values_are_truncated() {
        let long = "x".repeat(500);
        let pairs = with(takeout(), "type", Some(&format!("{long:?}")));
        let detail = decode_str(&object(&pairs)).unwrap_err().detail;
        assert!(detail.len() < 160 + KNOWN_TYPES.len(), "{detail}");
        assert!(
            detail.contains(&format!("\"{}\"…", "x".repeat(80))),
            "{detail}"
        );

        let long = "时".repeat(500);
        let pairs = with(takeout(), "occurred_at", Some(&format!("{long:?}")));
        let detail = decode_str(&object(&pairs)).unwrap_err().detail;
        assert!(detail.chars().count() < 200, "{detail}");

        let pairs = with(takeout(), "courier_id", Some(r#""a\u0000b""#));
        let detail = decode_str(&object(&pairs)).unwrap_err().detail;
        assert!(
            detail.contains(r#""a\u0000b""#),
            "control characters are escaped as JSON writes them: {detail}"
        );
    }

    #[test]
    fn syntax_errors_inside_a_field_name_the_field() {
        // Proves: a syntax error inside the value of a top-level field says which field,
        // known or not, however deep; outside any field it says only where.
        let cases: [(&str, &[&str]); 7] = [
            (
                "{\"type\":\"import_parcel\",\"waybill_no\":\"a\u{1}b\"}",
                &[
                    "invalid JSON in field \"waybill_no\": control character",
                    "line 1 column",
                ],
            ),
            (
                r#"{"type":"import_parcel","extra":{"a":[1,2,}]}}"#,
                &["invalid JSON in field \"extra\": "],
            ),
            (
                r#"{"type":"import_parcel","firm_id":"sf"#,
                &["in field \"firm_id\": EOF"],
            ),
            (
                r#"{"type":"import_parcel","firm_id":tru}"#,
                &["in field \"firm_id\""],
            ),
            (r#"{"type":"import_parcel",,}"#, &["invalid JSON: "]),
            (r#"{"ty\u0070e":"x","a":[}"#, &["in field \"a\""]),
            (r#"[1,2,}"#, &["invalid JSON: "]),
        ];
        for (payload, needles) in cases {
            assert_rejected(payload.as_bytes(), Reason::MalformedJson, needles);
            let detail = decode_str(payload).unwrap_err().detail;
            if needles[0] == "invalid JSON: " {
                assert!(!detail.contains("in field"), "{payload}: {detail}");
            }
        }
        assert_eq!(field_at(r#"{"a":1,"b":"#, 11).as_deref(), Some("b"));
        assert_eq!(field_at(r#"{"a":1,"b"#, 9), None, "inside a key");
        assert_eq!(field_at(r#"{"a":1} x"#, 8), None, "after the object");
        assert_eq!(field_at(r#"{"a":{"b":{"#, 11).as_deref(), Some("a"));
    }

    #[test]
    fn a_byte_order_mark_is_named() {
        assert_rejected(
            "\u{feff}{\"type\":\"import_parcel\"}".as_bytes(),
            Reason::MalformedJson,
            &["byte order mark"],
        );
    }

    #[test]
    fn a_lone_surrogate_in_a_known_field_names_the_field_and_its_position() {
        // Proves: bad JSON inside a known field's string says which field, with the line
        // and column in the whole payload (not in the field's value).
        let payload = r#"{"type":"import_parcel","waybill_no":"\ud800"}"#;
        let column = payload.find(r"\ud800").unwrap() + 1 + r"\ud800".len();
        assert_rejected(
            payload.as_bytes(),
            Reason::MalformedJson,
            &[
                "invalid JSON in field \"waybill_no\": ",
                "unexpected end of hex escape",
                &format!("at line 1 column {column}"),
            ],
        );
        let two_lines = "{\"type\":\"import_parcel\",\n \"firm_id\":\"\\udc00x\"}";
        assert_rejected(
            two_lines.as_bytes(),
            Reason::MalformedJson,
            &["field \"firm_id\"", "at line 2 column "],
        );
    }

    /// A payload of a SPEC §8 type: the envelope plus raw JSON values.
    fn v2(kind: &str, fields: &[(&str, &str)]) -> String {
        let mut text = format!(
            r#"{{"type":"{kind}","event_id":"e-1","occurred_at":"2023-04-01T10:00:00+08:00""#
        );
        for (key, value) in fields {
            text.push_str(&format!(r#","{key}":{value}"#));
        }
        text.push('}');
        text
    }

    #[test]
    fn spec_8_types_decode_with_their_fields_and_keys() {
        let cases: [(String, Program, &str); 8] = [
            (
                v2(
                    "platform_month_attested",
                    &[
                        ("platform_id", r#""meituan""#),
                        ("month", r#""2022-09""#),
                        ("prevention_measures", "true"),
                        ("couriers_managed", "true"),
                        ("sites_disinfected", "false"),
                    ],
                ),
                Program::PlatformMonthAttested,
                "meituan/2022-09",
            ),
            (
                v2(
                    "courier_infection",
                    &[("platform_id", r#""meituan""#), ("courier_id", r#""C-1""#)],
                ),
                Program::CourierInfection,
                "meituan/C-1/2023-04-01",
            ),
            (
                v2(
                    "locker_purchased",
                    &[
                        ("purchaser_id", r#""sf""#),
                        ("locker_serial", r#""LK-1""#),
                        ("price", r#""1666.65""#),
                        ("site_type", r#""residential_compound""#),
                    ],
                ),
                Program::LockerPurchased,
                "LK-1",
            ),
            (
                v2(
                    "id_device_purchased",
                    &[("firm_id", r#""sf""#), ("device_serial", r#""D-1""#)],
                ),
                Program::IdDevicePurchased,
                "D-1",
            ),
            (
                v2(
                    "county_center_opened",
                    &[
                        ("firm_id", r#""sf""#),
                        ("center_id", r#""CC-1""#),
                        ("district_code", r#""330127""#),
                    ],
                ),
                Program::CountyCenterOpened,
                "CC-1",
            ),
            (
                v2(
                    "village_outlet_opened",
                    &[
                        ("firm_id", r#""sf""#),
                        ("outlet_id", r#""VO-1""#),
                        ("village_code", r#""330127101""#),
                        ("district_code", r#""330127""#),
                    ],
                ),
                Program::VillageOutletOpened,
                "VO-1",
            ),
            (
                v2(
                    "village_outlet_closed",
                    &[("firm_id", r#""sf""#), ("outlet_id", r#""VO-1""#)],
                ),
                Program::VillageOutletClosed,
                "VO-1",
            ),
            (
                v2(
                    "courier_idle_day",
                    &[
                        ("platform_id", r#""meituan""#),
                        ("courier_id", r#""C-1""#),
                        ("zone_id", r#""Z-1""#),
                        ("date", r#""2022-09-04""#),
                    ],
                ),
                Program::CourierIdleDay,
                "meituan/C-1/2022-09-04",
            ),
        ];
        for (payload, program, key) in &cases {
            let event = decode_str(payload).unwrap_or_else(|r| panic!("{payload}: {r:?}"));
            assert_eq!(event.program(), *program, "{payload}");
            assert_eq!(event.unit_key(), *key, "{payload}");
        }
        let attested = decode_str(&cases[0].0).unwrap();
        assert_eq!(attested.booking_date().to_string(), "2022-09-30");
        let idle = decode_str(&cases[7].0).unwrap();
        assert_eq!(idle.booking_date().to_string(), "2022-09-04");
        let EventBody::Locker { price_fen, .. } = decode_str(&cases[2].0).unwrap().body else {
            panic!("a locker");
        };
        assert_eq!(price_fen, 166_665);
    }

    #[test]
    fn spec_8_fields_are_checked_and_named() {
        let locker = |price: &str, site: &str| {
            v2(
                "locker_purchased",
                &[
                    ("purchaser_id", r#""sf""#),
                    ("locker_serial", r#""LK-1""#),
                    ("price", price),
                    ("site_type", site),
                ],
            )
        };
        let month = |value: &str| {
            v2(
                "platform_month_attested",
                &[
                    ("platform_id", r#""p""#),
                    ("month", value),
                    ("prevention_measures", "true"),
                    ("couriers_managed", "true"),
                    ("sites_disinfected", "true"),
                ],
            )
        };
        let idle = |value: &str| {
            v2(
                "courier_idle_day",
                &[
                    ("platform_id", r#""p""#),
                    ("courier_id", r#""c""#),
                    ("zone_id", r#""z""#),
                    ("date", value),
                ],
            )
        };
        let cases = [
            (locker(r#""0.00""#, r#""other""#), "price", "not above zero"),
            (locker(r#""0""#, r#""other""#), "price", "not above zero"),
            (locker(r#""1.234""#, r#""other""#), "price", "not a price"),
            (locker(r#""1e3""#, r#""other""#), "price", "not a price"),
            (locker(r#""-5.00""#, r#""other""#), "price", "not a price"),
            (locker("1200", r#""other""#), "price", "expected a string"),
            (
                locker(r#""1200.00""#, r#""garage""#),
                "site_type",
                "office_building",
            ),
            (month(r#""2022-13""#), "month", "not a month"),
            (month(r#""2022-9""#), "month", "not a month"),
            (month(r#""2022-09-01""#), "month", "not a month"),
            (idle(r#""2023-02-29""#), "date", "not a date"),
            (idle(r#""2023-2-28""#), "date", "not a date"),
            (
                v2(
                    "platform_month_attested",
                    &[
                        ("platform_id", r#""p""#),
                        ("month", r#""2022-09""#),
                        ("prevention_measures", r#""true""#),
                        ("couriers_managed", "true"),
                        ("sites_disinfected", "true"),
                    ],
                ),
                "prevention_measures",
                "JSON boolean",
            ),
            (
                v2(
                    "county_center_opened",
                    &[
                        ("firm_id", r#""sf""#),
                        ("center_id", r#""CC 1""#),
                        ("district_code", r#""330127""#),
                    ],
                ),
                "center_id",
                "not an identifier",
            ),
            (
                v2("village_outlet_closed", &[("firm_id", r#""sf""#)]),
                "outlet_id",
                "missing",
            ),
        ];
        for (payload, field, what) in cases {
            let rejection = decode_str(&payload).unwrap_err();
            assert_eq!(rejection.reason, Reason::SchemaViolation, "{payload}");
            assert!(
                rejection.detail.contains(&format!("\"{field}\"")),
                "{payload}: {}",
                rejection.detail
            );
            assert!(
                rejection.detail.contains(what),
                "{payload}: {}",
                rejection.detail
            );
        }
        // The fast scan and serde_json agree on the new keys too (escaped key, nested junk).
        let escaped =
            locker(r#""2000.00""#, r#""oth\u0065r""#).replace(r#""price""#, r#""pr\u0069ce""#);
        assert!(decode_str(&escaped).is_ok(), "{escaped}");
    }
}

#[cfg(test)]
mod action_tests {
    use super::*;

    fn decoded(payload: &str) -> Result<Event<'_>, Rejection> {
        decode(payload.as_bytes())
    }

    const ENVELOPE: &str = r#""event_id":"e-1","occurred_at":"2026-02-02T09:30:00+08:00""#;

    #[test]
    fn a_void_names_its_record_by_that_programs_key_fields() {
        // Proves: each voided program's key is built from its own fields, joined as the
        // program's unit key is; an infection's local date is given as `date`.
        let cases = [
            (
                r#""program":"takeout_order","platform_id":"P1","order_id":"O1""#,
                "takeout_order/P1/O1",
            ),
            (
                r#""program":"import_parcel","waybill_no":"W1""#,
                "import_parcel/W1",
            ),
            (
                r#""program":"platform_month_attested","platform_id":"P1","month":"2022-09""#,
                "platform_month_attested/P1/2022-09",
            ),
            (
                r#""program":"courier_infection","platform_id":"P1","courier_id":"C1","date":"2022-09-20""#,
                "courier_infection/P1/C1/2022-09-20",
            ),
            (
                r#""program":"village_outlet_closed","outlet_id":"VO-1""#,
                "village_outlet_closed/VO-1",
            ),
        ];
        for (fields, key) in cases {
            let payload = format!(
                r#"{{"type":"unit_voided",{ENVELOPE},{fields},"void_reason":"sent in error"}}"#
            );
            let event = decoded(&payload).unwrap();
            assert_eq!(event.unit_key(), key, "{payload}");
            assert_eq!(event.program(), Program::UnitVoided);
        }
    }

    #[test]
    fn a_void_or_revocation_with_a_bad_field_is_a_schema_violation_naming_it() {
        let cases = [
            (
                r#"{"type":"unit_voided",ENV,"program":"subsidy_revoked","void_reason":"x"}"#,
                "program",
            ),
            (
                r#"{"type":"unit_voided",ENV,"program":"import_parcel","void_reason":"x"}"#,
                "waybill_no",
            ),
            (
                r#"{"type":"unit_voided",ENV,"program":"import_parcel","waybill_no":"W1","void_reason":""}"#,
                "void_reason",
            ),
            (
                r#"{"type":"unit_voided",ENV,"program":"import_parcel","waybill_no":"W1","void_reason":"a\u0007b"}"#,
                "void_reason",
            ),
            (
                r#"{"type":"subsidy_revoked",ENV,"firm_id":"F1","period_from":"2023-02-01","period_to":"2023-01-31","reason":"r","revoked_by":"b"}"#,
                "period_to",
            ),
            (
                r#"{"type":"subsidy_revoked",ENV,"firm_id":"F1","period_from":"2023-01-01","period_to":"2023-01-31","reason":"r"}"#,
                "revoked_by",
            ),
        ];
        for (template, field) in cases {
            let payload = template.replace("ENV", ENVELOPE);
            let rejection = decoded(&payload).unwrap_err();
            assert_eq!(rejection.reason, Reason::SchemaViolation, "{payload}");
            assert!(
                rejection.detail.contains(field),
                "{payload}: {}",
                rejection.detail
            );
        }
        let long = "理".repeat(501);
        let payload = format!(
            r#"{{"type":"unit_voided",{ENVELOPE},"program":"import_parcel","waybill_no":"W1","void_reason":"{long}"}}"#
        );
        assert!(decoded(&payload)
            .unwrap_err()
            .detail
            .contains("501 characters"));
        let ok = "理".repeat(500);
        let payload = format!(
            r#"{{"type":"unit_voided",{ENVELOPE},"program":"import_parcel","waybill_no":"W1","void_reason":"{ok}"}}"#
        );
        assert!(decoded(&payload).is_ok());
    }

    #[test]
    fn a_revocation_decodes_its_period_and_keys_on_firm_and_period() {
        let payload = format!(
            r#"{{"type":"subsidy_revoked",{ENVELOPE},"firm_id":"F1","period_from":"2022-12-15","period_to":"2023-01-20","reason":"审计","revoked_by":"bureau"}}"#
        );
        let event = decoded(&payload).unwrap();
        assert_eq!(event.unit_key(), "F1/2022-12-15/2023-01-20");
        assert_eq!(event.booking_date().to_string(), "2026-02-02");
    }
}
