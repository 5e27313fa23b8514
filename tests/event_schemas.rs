//! The published JSON Schemas in `schemas/events/` agree with the decoder.
//!
//! For a table of payloads (valid events of each type with `Z`, `+08:00` and `-05:00`
//! offsets, fractional seconds and extra fields; and invalid ones: every required field
//! missing or `null` in turn, wrong JSON kinds, bad identifiers, timestamps without offset,
//! bad `channel` and `courier_released` values, non-objects, missing and unknown `type`),
//! this test proves that:
//!
//! - the per-type schema (`takeout_order`, `import_parcel`, `rural_delivery`.schema.json)
//!   accepts a payload whose `type` is that type exactly when
//!   [`subsidy_ingester::decode::decode`] returns `Ok`;
//! - the union `event.schema.json` (whose `oneOf` branches `$ref` the thirteen per-type
//!   schemas by their `$id` URNs) accepts a payload exactly when `decode` returns `Ok`,
//!   for every payload of the table, including those without a known `type`;
//! - each schema's `examples` validate against it and against the union, and decode `Ok`;
//! - each schema file is a valid draft 2020-12 schema with the documented metadata.
//!
//! The ten SPEC §8 types (`platform_month_attested` … `unit_voided`, see [`V2_TYPES`]) are
//! checked against the schemas alone for now: their files are well formed and
//! self-contained, their examples validate (also through the union), and a table of bad
//! payloads (missing fields, bad identifiers, prices, months, dates, district codes, texts,
//! voids without their key fields) is refused by the per-type schema and by the union.
//!
//! Validators run as draft 2020-12 prescribes, with `format` as an annotation, so the
//! verdict on `occurred_at` comes from its `pattern`. Each payload is also checked with
//! `format` asserted. Two differences from the decoder cannot be removed from a schema and
//! are pinned here as [`Gap`]s rather than left out:
//!
//! - a regex cannot check the day of the month against the month and year (`2023-02-29`,
//!   `2022-04-31`): the pattern-only schema accepts it, the decoder and `format: date-time`
//!   reject it;
//! - the decoder (like RFC 3339 §5.6's note) accepts a space instead of `T`; the pattern
//!   accepts it too, but `format: date-time` validators reject it, so a producer that
//!   asserts formats is only stricter than the ingester.

use jsonschema::{Registry, Validator};
use serde_json::Value;
use std::path::PathBuf;
use subsidy_ingester::decode::decode;

/// The per-type schemas, by event type.
const TYPES: [&str; 3] = ["takeout_order", "import_parcel", "rural_delivery"];

/// The per-type schemas of SPEC §8 (v2 types), by event type. The decoder tests above cover
/// only [`TYPES`]; these are checked by `v2_schemas_accept_their_examples_and_refuse_bad_payloads`.
const V2_TYPES: [&str; 10] = [
    "platform_month_attested",
    "courier_infection",
    "locker_purchased",
    "id_device_purchased",
    "county_center_opened",
    "village_outlet_opened",
    "village_outlet_closed",
    "courier_idle_day",
    "subsidy_revoked",
    "unit_voided",
];

const DRAFT_2020_12: &str = "https://json-schema.org/draft/2020-12/schema";

fn schema_path(file: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("schemas/events")
        .join(file)
}

fn load(file: &str) -> Value {
    let path = schema_path(file);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|err| panic!("read {}: {err}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|err| panic!("parse {}: {err}", path.display()))
}

fn type_urn(event_type: &str) -> String {
    format!("urn:subsidy-ingester:event:{event_type}:v1")
}

/// A validator for one schema: `format` as annotation (draft 2020-12 default) and asserted.
struct Checker {
    plain: Validator,
    formats: Validator,
}

impl Checker {
    fn new(schema: &Value, registry: &Registry<'_>) -> Self {
        let build = |assert_formats: bool| {
            jsonschema::draft202012::options()
                .offline()
                .with_registry(registry)
                .should_validate_formats(assert_formats)
                .build(schema)
                .unwrap_or_else(|err| panic!("schema {}: {err}", schema["$id"]))
        };
        Checker {
            plain: build(false),
            formats: build(true),
        }
    }
}

/// All fourteen schemas, compiled.
struct Schemas {
    /// In the order of [`TYPES`].
    per_type: Vec<Checker>,
    /// In the order of [`V2_TYPES`].
    v2: Vec<Checker>,
    event: Checker,
}

impl Schemas {
    fn load() -> Self {
        let per_type: Vec<Value> = TYPES
            .iter()
            .map(|t| load(&format!("{t}.schema.json")))
            .collect();
        let v2: Vec<Value> = V2_TYPES
            .iter()
            .map(|t| load(&format!("{t}.schema.json")))
            .collect();
        // The union references every type, so all of them are registered.
        let mut builder = Registry::new();
        for (event_type, schema) in TYPES
            .iter()
            .chain(&V2_TYPES)
            .zip(per_type.iter().chain(&v2))
        {
            builder = builder
                .add(type_urn(event_type), schema.clone())
                .expect("register per-type schema");
        }
        let registry = builder.prepare().expect("prepare registry");
        let compile = |schemas: &[Value]| -> Vec<Checker> {
            schemas
                .iter()
                .map(|schema| Checker::new(schema, &registry))
                .collect()
        };
        Schemas {
            per_type: compile(&per_type),
            v2: compile(&v2),
            event: Checker::new(&load("event.schema.json"), &registry),
        }
    }

    /// The per-type schema for a payload whose `type` is one of the three.
    fn for_type(&self, payload: &Value) -> Option<&Checker> {
        let event_type = payload.get("type")?.as_str()?;
        let index = TYPES.iter().position(|t| *t == event_type)?;
        Some(&self.per_type[index])
    }
}

/// A known, documented difference between a schema and the decoder (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Gap {
    /// Schema, `format`-asserting schema and decoder all agree.
    None,
    /// An impossible day of the month: only the pattern-only schema accepts it.
    DayOfMonth,
    /// A space instead of `T`: only the `format`-asserting schema rejects it.
    SpaceSeparator,
}

struct Case {
    name: String,
    payload: String,
    /// Whether the decoder must accept it.
    valid: bool,
    gap: Gap,
}

type Pairs = Vec<(&'static str, String)>;

/// A JSON object from (key, raw JSON value) pairs, in order (duplicate keys allowed).
fn object(pairs: &Pairs) -> String {
    let body: Vec<String> = pairs.iter().map(|(k, v)| format!("{k:?}:{v}")).collect();
    format!("{{{}}}", body.join(","))
}

fn raw(pairs: &[(&'static str, &str)]) -> Pairs {
    pairs.iter().map(|(k, v)| (*k, (*v).to_owned())).collect()
}

/// `pairs` with `key` set to the raw JSON `value` (in place or appended), or removed.
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

fn takeout() -> Pairs {
    raw(&[
        ("type", r#""takeout_order""#),
        ("event_id", r#""evt-meituan-20220905-000001""#),
        ("occurred_at", r#""2022-09-05T12:30:00+08:00""#),
        ("platform_id", r#""meituan""#),
        ("order_id", r#""MT20220905123000001""#),
        ("courier_id", r#""MT-C-330106-0042""#),
        ("zone_id", r#""Z-330106-XH-007""#),
        ("courier_released", "true"),
    ])
}

fn import() -> Pairs {
    raw(&[
        ("type", r#""import_parcel""#),
        ("event_id", r#""evt-sf-000417""#),
        ("occurred_at", r#""2022-09-05T01:15:00Z""#),
        ("firm_id", r#""SF-HZ""#),
        ("waybill_no", r#""SF1234567890123""#),
        ("channel", r#""express""#),
    ])
}

fn rural() -> Pairs {
    raw(&[
        ("type", r#""rural_delivery""#),
        ("event_id", r#""evt-zto-081532""#),
        ("occurred_at", r#""2023-04-18T03:05:12.350-05:00""#),
        ("firm_id", r#""ZTO-HZ""#),
        ("outlet_id", r#""OUT-330127-0015""#),
        ("waybill_no", r#""ZT7312345678901""#),
    ])
}

fn bases() -> [(&'static str, Pairs); 3] {
    [
        ("takeout_order", takeout()),
        ("import_parcel", import()),
        ("rural_delivery", rural()),
    ]
}

/// Identifier fields, whichever type they belong to.
const IDENTIFIERS: [&str; 8] = [
    "event_id",
    "platform_id",
    "order_id",
    "courier_id",
    "zone_id",
    "firm_id",
    "outlet_id",
    "waybill_no",
];

fn case(name: impl Into<String>, pairs: &Pairs, valid: bool) -> Case {
    Case {
        name: name.into(),
        payload: object(pairs),
        valid,
        gap: Gap::None,
    }
}

fn case_raw(name: &str, payload: &str, valid: bool) -> Case {
    Case {
        name: name.to_owned(),
        payload: payload.to_owned(),
        valid,
        gap: Gap::None,
    }
}

/// Sets `occurred_at` of a rural delivery to the JSON string `timestamp`.
fn at(timestamp: &str, valid: bool) -> Case {
    let value = serde_json::to_string(timestamp).unwrap();
    case(
        format!("occurred_at {timestamp:?}"),
        &with(rural(), "occurred_at", Some(&value)),
        valid,
    )
}

fn gap(mut case: Case, gap: Gap) -> Case {
    case.gap = gap;
    case
}

/// The hand-written table: valid events and targeted invalid ones.
fn table() -> Vec<Case> {
    let max_id = format!("{:?}", "9".repeat(64));
    let long_id = format!("{:?}", "9".repeat(65));
    vec![
        // --- valid ---
        case("takeout +08:00", &takeout(), true),
        case("import Z", &import(), true),
        case("rural -05:00 fractional", &rural(), true),
        case(
            "takeout Z",
            &with(takeout(), "occurred_at", Some(r#""2022-09-05T04:30:00Z""#)),
            true,
        ),
        case(
            "takeout -05:00 nanoseconds",
            &with(
                takeout(),
                "occurred_at",
                Some(r#""2022-09-04T23:30:00.123456789-05:00""#),
            ),
            true,
        ),
        // Not released is a program check (step 6), not a schema violation.
        case(
            "takeout courier_released false",
            &with(takeout(), "courier_released", Some("false")),
            true,
        ),
        case(
            "import mail +08:00 fractional",
            &with(
                with(import(), "channel", Some(r#""mail""#)),
                "occurred_at",
                Some(r#""2022-09-05T09:15:00.5+08:00""#),
            ),
            true,
        ),
        // Outside the policy period is step 5, not a schema violation.
        at("2019-01-01T00:00:00+08:00", true),
        at("2022-07-01t00:00:00.1z", true),
        at("2024-02-29T23:59:59.999+14:00", true),
        at("2022-12-31T23:59:60Z", true),
        at("2022-12-31T00:00:00-00:00", true),
        at("2022-12-31T00:00:00+23:59", true),
        gap(at("2022-09-05 12:30:00+08:00", true), Gap::SpaceSeparator),
        case(
            "takeout with extra fields of every kind",
            &with(
                with(
                    with(
                        with(takeout(), "note", Some(r#""外卖 order, 封控区""#)),
                        "amount",
                        Some("12.5"),
                    ),
                    "nested",
                    Some(r#"{"a":[1,{"b":null}],"type":"x"}"#),
                ),
                "flag",
                Some("null"),
            ),
            true,
        ),
        case(
            "import with bad fields of other types (ignored)",
            &with(
                with(
                    with(import(), "outlet_id", Some("null")),
                    "courier_released",
                    Some(r#""yes""#),
                ),
                "zone_id",
                Some(r#""a b""#),
            ),
            true,
        ),
        case(
            "identifiers of 1 and 64 characters and all punctuation",
            &with(
                with(
                    with(rural(), "event_id", Some(r#""e""#)),
                    "waybill_no",
                    Some(&max_id),
                ),
                "outlet_id",
                Some(r#""._:-aZ09""#),
            ),
            true,
        ),
        case_raw(
            "duplicate key: the last value wins (schema sees the same)",
            r#"{"type":"import_parcel","event_id":"e1","occurred_at":"2022-09-05T01:15:00Z",
                "firm_id":"SF-HZ","waybill_no":"SF1","channel":"air","channel":"mail"}"#,
            true,
        ),
        // --- wrong JSON kinds ---
        case(
            "event_id number",
            &with(takeout(), "event_id", Some("17")),
            false,
        ),
        case(
            "occurred_at epoch number",
            &with(import(), "occurred_at", Some("1662340500")),
            false,
        ),
        case(
            "courier_released \"true\"",
            &with(takeout(), "courier_released", Some(r#""true""#)),
            false,
        ),
        case(
            "courier_released 1",
            &with(takeout(), "courier_released", Some("1")),
            false,
        ),
        case(
            "platform_id array",
            &with(takeout(), "platform_id", Some(r#"["meituan"]"#)),
            false,
        ),
        case(
            "zone_id object",
            &with(takeout(), "zone_id", Some(r#"{"id":"Z1"}"#)),
            false,
        ),
        case(
            "waybill_no boolean",
            &with(rural(), "waybill_no", Some("true")),
            false,
        ),
        // --- channel ---
        case(
            "channel \"air\"",
            &with(import(), "channel", Some(r#""air""#)),
            false,
        ),
        case(
            "channel \"Mail\"",
            &with(import(), "channel", Some(r#""Mail""#)),
            false,
        ),
        case(
            "channel \"\"",
            &with(import(), "channel", Some(r#""""#)),
            false,
        ),
        case(
            "channel number",
            &with(import(), "channel", Some("1")),
            false,
        ),
        // --- bad identifiers ---
        case(
            "order_id empty",
            &with(takeout(), "order_id", Some(r#""""#)),
            false,
        ),
        case(
            "firm_id 65 characters",
            &with(import(), "firm_id", Some(&long_id)),
            false,
        ),
        case(
            "courier_id space",
            &with(takeout(), "courier_id", Some(r#""C 1""#)),
            false,
        ),
        case(
            "outlet_id slash",
            &with(rural(), "outlet_id", Some(r#""O/1""#)),
            false,
        ),
        case(
            "event_id escaped slash",
            &with(rural(), "event_id", Some(r#""e\/1""#)),
            false,
        ),
        case(
            "zone_id non-ASCII",
            &with(takeout(), "zone_id", Some(r#""封控区1""#)),
            false,
        ),
        case(
            "waybill_no full-width digits",
            &with(import(), "waybill_no", Some(r#""SF１２３""#)),
            false,
        ),
        case(
            "platform_id trailing newline",
            &with(takeout(), "platform_id", Some(r#""meituan\n""#)),
            false,
        ),
        case(
            "firm_id leading space",
            &with(rural(), "firm_id", Some(r#"" ZTO-HZ""#)),
            false,
        ),
        // --- bad timestamps ---
        at("2022-09-05T12:30:00", false),
        at("2022-09-05T12:30:00.250", false),
        at("2022-09-05 12:30:00", false),
        at("2022-09-05", false),
        at("2022-09-05Z", false),
        at("2022-09-05T12:30Z", false),
        at("2022-09-05T12:30:00+08", false),
        at("2022-09-05T12:30:00+0800", false),
        at("2022-09-05T12:30:00+24:00", false),
        at("2022-09-05T12:30:00+08:60", false),
        at("2022-09-05T12:30:00 +08:00", false),
        at("2022-09-05T12:30:00.Z", false),
        at("2022-09-05T12:30:00ZZ", false),
        at("2022-13-05T12:30:00Z", false),
        at("2022-00-05T12:30:00Z", false),
        at("2022-09-32T12:30:00Z", false),
        at("2022-09-05T24:00:00Z", false),
        at("2022-09-05T12:60:00Z", false),
        at("2022-09-05T12:30:61Z", false),
        at("22-09-05T12:30:00Z", false),
        at("2022/09/05T12:30:00Z", false),
        at("２０２２-09-05T12:30:00Z", false),
        at(" 2022-09-05T12:30:00Z", false),
        at("2022-09-05T12:30:00Z ", false),
        at("Mon, 05 Sep 2022 12:30:00 +0800", false),
        at("", false),
        gap(at("2023-02-29T12:00:00+08:00", false), Gap::DayOfMonth),
        gap(at("2022-04-31T12:00:00+08:00", false), Gap::DayOfMonth),
        gap(at("2022-02-30T12:00:00Z", false), Gap::DayOfMonth),
        // --- not an event of a known type (union schema only) ---
        case_raw("array", r#"[{"type":"takeout_order"}]"#, false),
        case_raw("string", r#""takeout_order""#, false),
        case_raw("number", "42", false),
        case_raw("null", "null", false),
        case("type missing", &with(takeout(), "type", None), false),
        case("type number", &with(takeout(), "type", Some("1")), false),
        case("type null", &with(import(), "type", Some("null")), false),
        case(
            "type unknown",
            &with(rural(), "type", Some(r#""parcel""#)),
            false,
        ),
        case(
            "type of another event's fields",
            &with(import(), "type", Some(r#""rural_delivery""#)),
            false,
        ),
    ]
}

/// Generated cases: each required field of each type missing, `null`, and (identifiers)
/// empty or too long in turn.
fn generated() -> Vec<Case> {
    let long_id = format!("{:?}", "a".repeat(65));
    let mut cases = Vec::new();
    for (event_type, base) in bases() {
        for (key, _) in &base {
            cases.push(case(
                format!("{event_type} without {key}"),
                &with(base.clone(), key, None),
                false,
            ));
            cases.push(case(
                format!("{event_type} with {key} null"),
                &with(base.clone(), key, Some("null")),
                false,
            ));
            if IDENTIFIERS.contains(key) {
                for (what, value) in [("empty", r#""""#), ("65 chars", &long_id)] {
                    cases.push(case(
                        format!("{event_type} with {key} {what}"),
                        &with(base.clone(), key, Some(value)),
                        false,
                    ));
                }
            }
        }
    }
    cases
}

#[test]
fn schemas_and_decoder_agree_on_every_payload() {
    let schemas = Schemas::load();
    let mut cases = table();
    cases.extend(generated());
    assert!(cases.len() > 100, "{} cases", cases.len());
    let mut failures = Vec::new();
    for case in &cases {
        let decoded = decode(case.payload.as_bytes());
        let instance: Value = serde_json::from_str(&case.payload)
            .unwrap_or_else(|err| panic!("{}: payload is not JSON: {err}", case.name));
        let decoded_ok = decoded.is_ok();
        let verdicts = |checker: &Checker| {
            (
                checker.plain.is_valid(&instance),
                checker.formats.is_valid(&instance),
            )
        };
        // What the (plain, format-asserting) schemas must say, given the decoder's verdict.
        let expected = match case.gap {
            Gap::None => (decoded_ok, decoded_ok),
            Gap::DayOfMonth => (true, false),
            Gap::SpaceSeparator => (true, false),
        };
        let mut problems = Vec::new();
        if decoded_ok != case.valid {
            problems.push(format!("decode: {decoded:?}, expected ok = {}", case.valid));
        }
        if let Some(checker) = schemas.for_type(&instance) {
            let got = verdicts(checker);
            if got != expected {
                problems.push(format!("per-type schema (plain, formats) = {got:?}"));
            }
        }
        let got = verdicts(&schemas.event);
        if got != expected {
            problems.push(format!("event.schema.json (plain, formats) = {got:?}"));
        }
        if !problems.is_empty() {
            failures.push(format!(
                "{}: {}\n    payload: {}\n    decode: {:?}",
                case.name,
                problems.join("; "),
                case.payload,
                decoded.map(|_| "Ok").map_err(|r| r.detail),
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases disagree:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

#[test]
fn examples_validate_and_decode() {
    let schemas = Schemas::load();
    // v2 types: decoder coverage is added with their decode
    let mut files: Vec<String> = TYPES.iter().map(|t| format!("{t}.schema.json")).collect();
    files.push("event.schema.json".to_owned());
    for file in files {
        let schema = load(&file);
        let examples = schema["examples"]
            .as_array()
            .unwrap_or_else(|| panic!("{file}: no examples array"));
        assert!(!examples.is_empty(), "{file}: no examples");
        for example in examples {
            let checker = if file == "event.schema.json" {
                &schemas.event
            } else {
                schemas.for_type(example).expect("example of a known type")
            };
            assert!(checker.plain.is_valid(example), "{file}: {example}");
            assert!(checker.formats.is_valid(example), "{file}: {example}");
            assert!(schemas.event.formats.is_valid(example), "{file}: {example}");
            let payload = serde_json::to_vec(example).unwrap();
            if let Err(rejection) = decode(&payload) {
                panic!("{file}: example {example} rejected: {rejection:?}");
            }
        }
    }
    // One example per type in the union.
    let event = load("event.schema.json");
    let union_types: Vec<&str> = event["examples"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    assert_eq!(union_types, TYPES);
}

/// Every `$ref` value anywhere in `schema`.
fn collect_refs<'a>(schema: &'a Value, refs: &mut Vec<&'a str>) {
    match schema {
        Value::Object(map) => {
            for (key, value) in map {
                match (key.as_str(), value) {
                    ("$ref", Value::String(reference)) => refs.push(reference),
                    _ => collect_refs(value, refs),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|item| collect_refs(item, refs)),
        _ => {}
    }
}

/// The checks every per-type schema file passes: a valid draft 2020-12 schema with its
/// URN and title, a description holding `needles`, extra fields allowed, `type` pinned,
/// exactly the described fields required, and only references to its own definitions (so
/// the file stands alone). Returns the required fields in file order.
fn well_formed<'s>(
    file: &str,
    schema: &'s Value,
    event_type: &str,
    needles: &[&str],
) -> Vec<&'s str> {
    assert!(
        jsonschema::meta::is_valid(schema),
        "{file}: not a valid schema"
    );
    assert_eq!(schema["$schema"], DRAFT_2020_12, "{file}");
    assert_eq!(schema["$id"], type_urn(event_type).as_str(), "{file}");
    assert!(schema["title"].is_string(), "{file}: title");
    let description = schema["description"].as_str().unwrap_or_default();
    for needle in needles {
        assert!(
            description.contains(needle),
            "{file}: description lacks {needle:?}"
        );
    }
    assert_eq!(schema["additionalProperties"], true, "{file}");
    assert_eq!(schema["properties"]["type"]["const"], event_type, "{file}");
    // Every required field is described, and every described field is required.
    let required: Vec<&str> = schema["required"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    let mut properties: Vec<&str> = schema["properties"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    let mut sorted_required = required.clone();
    sorted_required.sort_unstable();
    properties.sort_unstable();
    assert_eq!(sorted_required, properties, "{file}");
    // Only local references, each to a definition of the file.
    let mut refs = Vec::new();
    collect_refs(schema, &mut refs);
    assert!(!refs.is_empty(), "{file}");
    for reference in refs {
        let name = reference
            .strip_prefix("#/$defs/")
            .unwrap_or_else(|| panic!("{file}: $ref {reference}"));
        assert!(
            schema["$defs"].get(name).is_some(),
            "{file}: $ref {reference} has no definition"
        );
    }
    required
}

#[test]
fn schema_files_are_well_formed_and_self_contained() {
    for event_type in TYPES {
        let file = format!("{event_type}.schema.json");
        let schema = load(&file);
        let required = well_formed(
            &file,
            &schema,
            event_type,
            &["Rate: ", "yuan", "Dedup key: "],
        );
        let (_, base) = bases().into_iter().find(|(t, _)| *t == event_type).unwrap();
        let base_keys: Vec<&str> = base.iter().map(|(k, _)| *k).collect();
        assert_eq!(
            required, base_keys,
            "{file}: required fields, in decoder order"
        );
        assert_eq!(
            schema["$defs"]["identifier"]["pattern"], "^[A-Za-z0-9._:-]{1,64}$",
            "{file}"
        );
        assert_eq!(
            schema["$defs"]["timestamp"]["format"], "date-time",
            "{file}"
        );
    }

    // The shared definitions are duplicated verbatim, so the table's timestamp cases (run
    // on rural deliveries) hold for every type.
    let defs: Vec<Value> = TYPES
        .iter()
        .map(|t| load(&format!("{t}.schema.json"))["$defs"].clone())
        .collect();
    assert!(
        defs.iter().all(|d| *d == defs[0]),
        "$defs differ between files"
    );

    let event = load("event.schema.json");
    assert!(jsonschema::meta::is_valid(&event));
    assert_eq!(event["$schema"], DRAFT_2020_12);
    assert_eq!(event["$id"], "urn:subsidy-ingester:event:v1");
    let refs: Vec<&str> = event["oneOf"]
        .as_array()
        .unwrap()
        .iter()
        .map(|branch| branch["$ref"].as_str().unwrap())
        .collect();
    // v1 and v2 types, in this order.
    let expected: Vec<String> = TYPES.iter().chain(&V2_TYPES).map(|t| type_urn(t)).collect();
    assert_eq!(refs, expected);
}

/// What the schemas must say about a v2 payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum V2Verdict {
    Valid,
    Invalid,
    /// An impossible day of the month in a `"YYYY-MM-DD"` field: only `format: date`
    /// refuses it (the pattern checks ranges, not calendars).
    DayOfMonth,
}

/// The first example of a v2 type's schema file, the base of that type's cases.
fn v2_example(event_type: &str) -> Value {
    load(&format!("{event_type}.schema.json"))["examples"][0].clone()
}

/// `payload` with `key` set to `value`, or removed.
fn v2_with(mut payload: Value, key: &str, value: Option<Value>) -> Value {
    let object = payload.as_object_mut().expect("an object");
    match value {
        Some(value) => {
            object.insert(key.to_owned(), value);
        }
        None => {
            object.remove(key);
        }
    }
    payload
}

/// A `unit_voided` payload of `program` with the fields `key` (raw JSON values).
fn void_of(program: &str, key: &[(&str, Value)]) -> Value {
    let mut payload = serde_json::json!({
        "type": "unit_voided",
        "event_id": "evt-void-1",
        "occurred_at": "2026-01-05T10:00:00+08:00",
        "program": program,
        "void_reason": "recorded in error",
    });
    for (field, value) in key {
        payload = v2_with(payload, field, Some(value.clone()));
    }
    payload
}

/// The unit-key fields of each ledger program, as `unit_voided` carries them.
fn void_keys() -> Vec<(&'static str, Vec<(&'static str, Value)>)> {
    use serde_json::json;
    vec![
        (
            "takeout_order",
            vec![
                ("platform_id", json!("meituan")),
                ("order_id", json!("MT1")),
            ],
        ),
        ("import_parcel", vec![("waybill_no", json!("SF1"))]),
        ("rural_delivery", vec![("waybill_no", json!("ZT1"))]),
        (
            "platform_month_attested",
            vec![
                ("platform_id", json!("meituan")),
                ("month", json!("2022-09")),
            ],
        ),
        (
            "courier_infection",
            vec![
                ("platform_id", json!("meituan")),
                ("courier_id", json!("C1")),
                ("date", json!("2022-09-20")),
            ],
        ),
        ("locker_purchased", vec![("locker_serial", json!("L1"))]),
        ("id_device_purchased", vec![("device_serial", json!("D1"))]),
        ("county_center_opened", vec![("center_id", json!("CC1"))]),
        ("village_outlet_opened", vec![("outlet_id", json!("VO1"))]),
        ("village_outlet_closed", vec![("outlet_id", json!("VO1"))]),
        (
            "courier_idle_day",
            vec![
                ("platform_id", json!("meituan")),
                ("courier_id", json!("C1")),
                ("date", json!("2022-09-05")),
            ],
        ),
    ]
}

/// Identifier fields of the v2 types.
const V2_IDENTIFIERS: [&str; 14] = [
    "event_id",
    "platform_id",
    "courier_id",
    "zone_id",
    "firm_id",
    "outlet_id",
    "purchaser_id",
    "locker_serial",
    "device_serial",
    "center_id",
    "village_code",
    "revoked_by",
    "order_id",
    "waybill_no",
];

/// One v2 case: name, the type whose schema judges it (the payload's `type` may be
/// missing or wrong), payload, verdict.
type V2Case = (String, &'static str, Value, V2Verdict);

/// The table of v2 payloads.
fn v2_table() -> Vec<V2Case> {
    use serde_json::json;
    use V2Verdict::{DayOfMonth, Invalid, Valid};
    let mut cases: Vec<V2Case> = Vec::new();

    // Every required field of every type missing or null in turn; every identifier field
    // empty, too long, with a space or non-ASCII in turn; the envelope's type wrong.
    for event_type in V2_TYPES {
        let mut push = |name: String, payload: Value, verdict: V2Verdict| {
            cases.push((name, event_type, payload, verdict));
        };
        let base = v2_example(event_type);
        let schema = load(&format!("{event_type}.schema.json"));
        for field in schema["required"].as_array().unwrap() {
            let field = field.as_str().unwrap();
            push(
                format!("{event_type} without {field}"),
                v2_with(base.clone(), field, None),
                Invalid,
            );
            push(
                format!("{event_type} with {field} null"),
                v2_with(base.clone(), field, Some(Value::Null)),
                Invalid,
            );
            push(
                format!("{event_type} with {field} a number"),
                v2_with(base.clone(), field, Some(json!(17))),
                Invalid,
            );
        }
        for field in V2_IDENTIFIERS {
            if base.get(field).is_none() {
                continue;
            }
            for (what, bad) in [
                ("empty", String::new()),
                ("65 characters", "a".repeat(65)),
                ("with a space", "a b".to_owned()),
                ("with a slash", "a/b".to_owned()),
                ("non-ASCII", "杭州1".to_owned()),
                ("with a trailing newline", "a\n".to_owned()),
            ] {
                push(
                    format!("{event_type} with {field} {what}"),
                    v2_with(base.clone(), field, Some(json!(bad))),
                    Invalid,
                );
            }
            push(
                format!("{event_type} with {field} of 64 characters"),
                v2_with(base.clone(), field, Some(json!("9".repeat(64)))),
                Valid,
            );
        }
        push(
            format!("{event_type} with type of another event"),
            v2_with(base.clone(), "type", Some(json!("takeout_order"))),
            Invalid,
        );
        push(
            format!("{event_type} with occurred_at without offset"),
            v2_with(
                base.clone(),
                "occurred_at",
                Some(json!("2022-09-05T12:30:00")),
            ),
            Invalid,
        );
        push(
            format!("{event_type} with occurred_at a date"),
            v2_with(base.clone(), "occurred_at", Some(json!("2022-09-05"))),
            Invalid,
        );
        push(
            format!("{event_type} with extra fields"),
            v2_with(
                v2_with(base.clone(), "note", Some(json!("备注\n"))),
                "nested",
                Some(json!({"a": [1, null]})),
            ),
            Valid,
        );
    }

    // The rest keep the `type` of their base.
    let mut push = |name: String, payload: Value, verdict: V2Verdict| {
        let event_type = V2_TYPES
            .into_iter()
            .find(|t| payload["type"] == *t)
            .unwrap_or_else(|| panic!("{name}: not a v2 type: {payload}"));
        cases.push((name, event_type, payload, verdict));
    };

    // platform_month_attested: month and the three booleans.
    let attested = v2_example("platform_month_attested");
    for month in ["2022-12", "2022-01", "2025-10", "0001-01"] {
        push(
            format!("month {month:?}"),
            v2_with(attested.clone(), "month", Some(json!(month))),
            Valid,
        );
    }
    for month in [
        "2022-13",
        "2022-00",
        "2022-9",
        "2022-09-01",
        "202-09",
        "22-09",
        "2022/09",
        "2022-1a",
        "２０２２-09",
        " 2022-09",
        "2022-09 ",
        "",
    ] {
        push(
            format!("month {month:?}"),
            v2_with(attested.clone(), "month", Some(json!(month))),
            Invalid,
        );
    }
    push(
        "month a number".to_owned(),
        v2_with(attested.clone(), "month", Some(json!(202209))),
        Invalid,
    );
    for field in [
        "prevention_measures",
        "couriers_managed",
        "sites_disinfected",
    ] {
        // `false` is a program check (`attestation_incomplete`), not a schema violation.
        push(
            format!("{field} false"),
            v2_with(attested.clone(), field, Some(json!(false))),
            Valid,
        );
        for bad in [json!("true"), json!(1), json!("yes"), json!([true])] {
            push(
                format!("{field} {bad}"),
                v2_with(attested.clone(), field, Some(bad)),
                Invalid,
            );
        }
    }

    // locker_purchased: price and site_type.
    let locker = v2_example("locker_purchased");
    for price in [
        "0.01",
        "0.1",
        "1",
        "1.5",
        "1200",
        "1200.00",
        "1666.65",
        "01",
        "0001200.00",
        "00.01",
        "999999999999999.99",
    ] {
        push(
            format!("price {price:?}"),
            v2_with(locker.clone(), "price", Some(json!(price))),
            Valid,
        );
    }
    for price in [
        "0",
        "00",
        "0.0",
        "0.00",
        "000.00",
        "-1",
        "+1",
        "1.234",
        "0.001",
        "1e3",
        "1E3",
        " 1",
        "1 ",
        "1.",
        ".5",
        "",
        "1,200.00",
        "1_200",
        "１２００",
        "0x10",
        "NaN",
        "1000000000000000",
    ] {
        push(
            format!("price {price:?}"),
            v2_with(locker.clone(), "price", Some(json!(price))),
            Invalid,
        );
    }
    for price in [json!(1200), json!(1200.5), json!(true)] {
        push(
            format!("price {price} (not a string)"),
            v2_with(locker.clone(), "price", Some(price)),
            Invalid,
        );
    }
    for site in ["office_building", "residential_compound", "other"] {
        push(
            format!("site_type {site:?}"),
            v2_with(locker.clone(), "site_type", Some(json!(site))),
            Valid,
        );
    }
    for site in ["Office_building", "office building", "park", ""] {
        push(
            format!("site_type {site:?}"),
            v2_with(locker.clone(), "site_type", Some(json!(site))),
            Invalid,
        );
    }

    // district codes.
    for event_type in ["county_center_opened", "village_outlet_opened"] {
        let base = v2_example(event_type);
        for code in [
            "330102", "330105", "330106", "330108", "330109", "330110", "330111", "330112",
            "330113", "330114", "330122", "330127", "330182",
        ] {
            push(
                format!("{event_type} district_code {code}"),
                v2_with(base.clone(), "district_code", Some(json!(code))),
                Valid,
            );
        }
        for code in ["330100", "330103", "330183", "3301090", "330109 ", "XH", ""] {
            push(
                format!("{event_type} district_code {code:?}"),
                v2_with(base.clone(), "district_code", Some(json!(code))),
                Invalid,
            );
        }
        push(
            format!("{event_type} district_code a number"),
            v2_with(base.clone(), "district_code", Some(json!(330109))),
            Invalid,
        );
    }

    // Dates: courier_idle_day's date, subsidy_revoked's period, a void's date.
    let date_fields = [
        ("courier_idle_day", v2_example("courier_idle_day"), "date"),
        (
            "subsidy_revoked",
            v2_example("subsidy_revoked"),
            "period_from",
        ),
        (
            "subsidy_revoked",
            v2_example("subsidy_revoked"),
            "period_to",
        ),
        (
            "unit_voided",
            void_of(
                "courier_infection",
                &[
                    ("platform_id", json!("meituan")),
                    ("courier_id", json!("C1")),
                ],
            ),
            "date",
        ),
    ];
    for (event_type, base, field) in &date_fields {
        let dated = |date: &str| v2_with(base.clone(), field, Some(json!(date)));
        push(
            format!("{event_type} {field} 2024-02-29"),
            dated("2024-02-29"),
            Valid,
        );
        for date in [
            "2022-13-01",
            "2022-00-10",
            "2022-09-32",
            "2022-09-00",
            "2022-9-5",
            "2022-09-05T00:00:00Z",
            "2022-09-05Z",
            "20220905",
            "2022/09/05",
            "2022-09",
            "",
        ] {
            push(
                format!("{event_type} {field} {date:?}"),
                dated(date),
                Invalid,
            );
        }
        for date in ["2023-02-29", "2022-04-31"] {
            push(
                format!("{event_type} {field} {date:?}"),
                dated(date),
                DayOfMonth,
            );
        }
    }
    // A reversed period cannot be refused by a schema (no comparison of values); the
    // schema documents that the ingester refuses it.
    push(
        "subsidy_revoked period_from after period_to (schema cannot tell)".to_owned(),
        v2_with(
            v2_example("subsidy_revoked"),
            "period_from",
            Some(json!("2023-07-01")),
        ),
        Valid,
    );

    // Texts: reason and void_reason.
    let text_fields = [
        ("subsidy_revoked", v2_example("subsidy_revoked"), "reason"),
        ("unit_voided", v2_example("unit_voided"), "void_reason"),
    ];
    for (event_type, base, field) in &text_fields {
        let texted = |text: String| v2_with(base.clone(), field, Some(json!(text)));
        for (what, text) in [
            ("1 character", "x".to_owned()),
            ("a space", " ".to_owned()),
            ("500 characters", "a".repeat(500)),
            ("500 CJK characters", "审".repeat(500)),
            ("500 emoji (1000 UTF-16 units)", "😀".repeat(500)),
            ("with U+00A0 and U+2028", "a\u{a0}b\u{2028}c".to_owned()),
        ] {
            push(format!("{event_type} {field} {what}"), texted(text), Valid);
        }
        for (what, text) in [
            ("empty", String::new()),
            ("501 characters", "a".repeat(501)),
            ("501 CJK characters", "审".repeat(501)),
            ("with a line feed", "audit\nfinding".to_owned()),
            ("with a tab", "audit\tfinding".to_owned()),
            ("with a carriage return", "audit\r".to_owned()),
            ("with NUL", "\u{0}".to_owned()),
            ("with U+001F", "a\u{1f}".to_owned()),
            ("with DEL", "a\u{7f}b".to_owned()),
            ("with U+0085 (NEL)", "a\u{85}b".to_owned()),
            ("with U+009F", "\u{9f}".to_owned()),
        ] {
            push(
                format!("{event_type} {field} {what}"),
                texted(text),
                Invalid,
            );
        }
        push(
            format!("{event_type} {field} an array"),
            v2_with(base.clone(), field, Some(json!(["audit"]))),
            Invalid,
        );
    }

    // unit_voided: every program with its key; without each key field; bad programs.
    for (program, key) in void_keys() {
        push(format!("void of {program}"), void_of(program, &key), Valid);
        for (field, _) in &key {
            let without: Vec<(&str, Value)> =
                key.iter().filter(|(f, _)| f != field).cloned().collect();
            push(
                format!("void of {program} without {field}"),
                void_of(program, &without),
                Invalid,
            );
            push(
                format!("void of {program} with {field} \"a b\""),
                void_of(
                    program,
                    &key.iter()
                        .map(|(f, v)| (*f, if f == field { json!("a b") } else { v.clone() }))
                        .collect::<Vec<_>>(),
                ),
                Invalid,
            );
        }
        push(
            format!("void of {program} without its key"),
            void_of(program, &[]),
            Invalid,
        );
    }
    push(
        "void of platform_month_attested with month 2022-13".to_owned(),
        void_of(
            "platform_month_attested",
            &[
                ("platform_id", json!("meituan")),
                ("month", json!("2022-13")),
            ],
        ),
        Invalid,
    );
    push(
        "void of locker_purchased with another program's key only".to_owned(),
        void_of("locker_purchased", &[("device_serial", json!("D1"))]),
        Invalid,
    );
    push(
        "void of import_parcel with a bad field of another program's key (ignored)".to_owned(),
        void_of(
            "import_parcel",
            &[("waybill_no", json!("SF1")), ("order_id", json!("a b"))],
        ),
        Valid,
    );
    for program in [
        json!("subsidy_revoked"),
        json!("unit_voided"),
        json!("Takeout_order"),
        json!("takeout"),
        json!(""),
        json!(1),
        Value::Null,
    ] {
        push(
            format!("void of program {program}"),
            v2_with(
                void_of("import_parcel", &[("waybill_no", json!("SF1"))]),
                "program",
                Some(program),
            ),
            Invalid,
        );
    }
    cases
}

#[test]
fn v2_schemas_accept_their_examples_and_refuse_bad_payloads() {
    let schemas = Schemas::load();
    let v1_defs = load("takeout_order.schema.json")["$defs"].clone();

    // Well formed and self-contained, like the v1 files.
    for event_type in V2_TYPES {
        let file = format!("{event_type}.schema.json");
        let schema = load(&file);
        let required = well_formed(
            &file,
            &schema,
            event_type,
            &[
                "Rate: ",
                "yuan",
                "Dedup key: ",
                "Rejection reasons",
                "`schema_violation`",
            ],
        );
        assert_eq!(
            required[..3],
            ["type", "event_id", "occurred_at"],
            "{file}: the envelope first"
        );
        for (name, property) in schema["properties"].as_object().unwrap() {
            assert!(
                property["description"].is_string(),
                "{file}: {name} has no description"
            );
        }
        // The shared definitions, verbatim.
        for shared in ["identifier", "timestamp"] {
            assert_eq!(
                schema["$defs"][shared], v1_defs[shared],
                "{file}: $defs/{shared} differs from the v1 files'"
            );
        }
        let examples = schema["examples"]
            .as_array()
            .unwrap_or_else(|| panic!("{file}: no examples array"));
        assert!(!examples.is_empty(), "{file}: no examples");
    }
    // Definitions shared by several v2 files are identical where they appear.
    let mut seen: std::collections::BTreeMap<String, (String, Value)> = Default::default();
    for event_type in V2_TYPES {
        let file = format!("{event_type}.schema.json");
        for (name, definition) in load(&file)["$defs"].as_object().unwrap() {
            match seen.get(name) {
                Some((first, earlier)) => {
                    assert_eq!(
                        earlier, definition,
                        "$defs/{name}: {first} and {file} differ"
                    )
                }
                None => {
                    seen.insert(name.clone(), (file.clone(), definition.clone()));
                }
            }
        }
    }

    // The union lists every type.
    let event = load("event.schema.json");
    let union_enum: Vec<&str> = event["properties"]["type"]["enum"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    let all: Vec<&str> = TYPES.iter().chain(&V2_TYPES).copied().collect();
    assert_eq!(union_enum, all);
    let description = event["description"].as_str().unwrap();
    for event_type in &all {
        assert!(
            description.contains(event_type),
            "event.schema.json: description lacks {event_type}"
        );
    }

    // unit_voided names exactly the ledger programs, each with an if/then of its key.
    let voided = load("unit_voided.schema.json");
    let programs: Vec<&str> = voided["properties"]["program"]["enum"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    let ledger_programs: Vec<&str> = all[..11].to_vec();
    assert_eq!(programs, ledger_programs);
    let branches: Vec<(&str, Vec<&str>)> = voided["allOf"]
        .as_array()
        .unwrap()
        .iter()
        .map(|branch| {
            (
                branch["if"]["properties"]["program"]["const"]
                    .as_str()
                    .unwrap(),
                branch["then"]["required"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|v| v.as_str().unwrap())
                    .collect(),
            )
        })
        .collect();
    let expected_branches: Vec<(&str, Vec<&str>)> = void_keys()
        .into_iter()
        .map(|(program, key)| (program, key.into_iter().map(|(f, _)| f).collect()))
        .collect();
    assert_eq!(branches, expected_branches);

    let checker = |event_type: &str| -> &Checker {
        let index = V2_TYPES
            .iter()
            .position(|t| *t == event_type)
            .unwrap_or_else(|| panic!("not a v2 type: {event_type}"));
        &schemas.v2[index]
    };

    // Examples validate against their schema and the union, formats asserted or not; those
    // of a type the decoder knows already decode.
    for event_type in V2_TYPES {
        let file = format!("{event_type}.schema.json");
        for example in load(&file)["examples"].as_array().unwrap() {
            assert_eq!(example["type"], event_type, "{file}: {example}");
            let own = checker(event_type);
            for (what, validator) in [
                ("plain", &own.plain),
                ("formats", &own.formats),
                ("union plain", &schemas.event.plain),
                ("union formats", &schemas.event.formats),
            ] {
                if let Some(error) = validator.iter_errors(example).next() {
                    panic!("{file}: example {example} fails ({what}): {error}");
                }
            }
            let payload = serde_json::to_vec(example).unwrap();
            match decode(&payload) {
                Ok(_) => {}
                Err(rejection) if rejection.reason.as_str() == "unknown_type" => {}
                Err(rejection) => panic!("{file}: example {example} rejected: {rejection:?}"),
            }
        }
    }

    // The table.
    let cases = v2_table();
    assert!(cases.len() > 400, "{} cases", cases.len());
    let mut failures = Vec::new();
    for (name, event_type, payload, verdict) in &cases {
        let own = checker(event_type);
        let got = (
            own.plain.is_valid(payload),
            own.formats.is_valid(payload),
            schemas.event.plain.is_valid(payload),
            schemas.event.formats.is_valid(payload),
        );
        let expected = match verdict {
            V2Verdict::Valid => (true, true, true, true),
            V2Verdict::Invalid => (false, false, false, false),
            V2Verdict::DayOfMonth => (true, false, true, false),
        };
        if got != expected {
            failures.push(format!(
                "{name}: (plain, formats, union plain, union formats) = {got:?}, expected {expected:?}\n    payload: {payload}"
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases disagree:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}
