//! Dead letters: the notice a producer gets for each rejected message, on the dead-letter
//! topic, keyed `topic/partition/offset`.
//!
//! A letter must never be refused for its size, and no letter may stop the line:
//! - **Bounded.** The letter carries the payload only up to [`PAYLOAD_ENCODED_BYTES_MAX`]
//!   bytes *as encoded in the letter* (JSON-escaped text, or base64 for a payload that is
//!   not UTF-8) and the detail up to [`DETAIL_CHARS_MAX`] characters, so the whole letter
//!   stays below [`ENVELOPE_BYTES_MAX`], well under the producer's `message.max.bytes`
//!   ([`crate::kafka::DEAD_LETTER_MESSAGE_BYTES_MAX`]). A cut payload is marked
//!   `payload_truncated`; `payload_bytes` and `payload_sha256` always describe the whole
//!   original value, which stays byte for byte in `rejected_events`.
//! - **Permanent refusals** (size, authorization, an invalid topic: see [`is_permanent`]) are
//!   counted, logged with the source topic/partition/offset, and skipped.
//! - **Transient failures** are retried [`SEND_ROUNDS_MAX`] rounds with capped exponential
//!   backoff, then counted as failed the same way. Letters are a notification; the record
//!   is `rejected_events`, which the flusher writes whatever happened to the letters.

use crate::domain::Reason;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};
use sha2::{Digest, Sha256};
use std::time::Duration;

/// Most bytes the payload may take inside a letter, as encoded there (512 KiB).
pub const PAYLOAD_ENCODED_BYTES_MAX: usize = 512 * 1024;

/// Most characters of the rejection detail a letter carries.
pub const DETAIL_CHARS_MAX: usize = 2_000;

/// Upper bound of a whole encoded letter, bytes: the payload and detail bounds (a detail
/// character escapes to at most 6 bytes), the longest Kafka topic name (249), and the
/// envelope's fixed fields.
pub const ENVELOPE_BYTES_MAX: usize = PAYLOAD_ENCODED_BYTES_MAX + 6 * DETAIL_CHARS_MAX + 4_096;

// Every letter fits the producer's limit, with room for Kafka's record framing.
const _: () = assert!(ENVELOPE_BYTES_MAX + 64 * 1024 < crate::kafka::DEAD_LETTER_MESSAGE_BYTES_MAX);

/// Rounds of sending before a transiently failing letter is given up (and counted).
pub const SEND_ROUNDS_MAX: u32 = 5;

/// First backoff between rounds; doubles each round up to the flusher's backoff cap.
const RETRY_BACKOFF_FIRST: Duration = Duration::from_millis(100);

/// A rejected message, on its way to the dead-letter topic.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub reason: Reason,
    pub detail: String,
    /// The message value; `None` for a Kafka tombstone (a message without a value), or
    /// when `payload_at_source`.
    pub payload: Option<Vec<u8>>,
    /// The letter does not carry the payload: read it at the source coordinates (the
    /// ledger stage's duplicates, decided from the unit record, not the message).
    pub payload_at_source: bool,
    pub received_at_unix_s: u32,
}

impl DeadLetter {
    /// The letter's Kafka key: the source coordinates, so repeats can be told apart.
    pub fn key(&self) -> String {
        format!("{}/{}/{}", self.topic, self.partition, self.offset)
    }
}

/// One letter encoded for the topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    /// The JSON value of the Kafka message.
    pub value: Vec<u8>,
    /// True if and only if the payload was cut to fit.
    pub truncated: bool,
}

/// What sending one batch's letters came to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SendTally {
    /// Letters the broker acknowledged.
    pub sent: u64,
    /// Of those and the failed ones, letters whose payload was cut to fit.
    pub truncated: u64,
    /// Letters given up: refused permanently, or still failing after [`SEND_ROUNDS_MAX`].
    pub failed: u64,
}

/// Encodes a letter: JSON naming the reason and the source, the payload as text (or
/// base64 when it is not UTF-8), cut to [`PAYLOAD_ENCODED_BYTES_MAX`] encoded bytes.
///
/// ```json
/// {"reason":"schema_violation","detail":"field \"waybill_no\": …",
///  "source_topic":"subsidy.import.parcels","source_partition":0,"source_offset":7,
///  "received_at_unix_s":1795412345,"payload":"{…}","payload_bytes":1040000,
///  "payload_truncated":true,"payload_sha256":"…"}
/// ```
pub fn envelope(letter: &DeadLetter) -> Envelope {
    let mut fields = EnvelopeFields {
        detail: cut_chars(&letter.detail, DETAIL_CHARS_MAX),
        payload: None,
        payload_at_source: None,
        payload_base64: None,
        payload_bytes: None,
        payload_sha256: None,
        payload_truncated: None,
        reason: letter.reason.as_str(),
        received_at_unix_s: letter.received_at_unix_s,
        source_offset: letter.offset,
        source_partition: letter.partition,
        source_topic: &letter.topic,
        tombstone: None,
    };
    let mut truncated = false;
    match &letter.payload {
        None if letter.payload_at_source => {
            fields.payload_at_source = Some(true);
            fields.payload = Some(None);
        }
        None => {
            fields.tombstone = Some(true);
            fields.payload = Some(None);
            fields.payload_bytes = Some(0);
        }
        Some(payload) => {
            match std::str::from_utf8(payload) {
                Ok(text) => {
                    let kept = json_prefix(text, PAYLOAD_ENCODED_BYTES_MAX);
                    truncated = kept.len() < text.len();
                    fields.payload = Some(Some(kept));
                }
                Err(_) => {
                    // Base64 turns each 3 bytes into 4 characters.
                    let kept_bytes = (PAYLOAD_ENCODED_BYTES_MAX / 4) * 3;
                    let kept = &payload[..payload.len().min(kept_bytes)];
                    truncated = kept.len() < payload.len();
                    fields.payload_base64 = Some(base64(kept));
                }
            }
            fields.payload_bytes = Some(payload.len());
            fields.payload_truncated = Some(truncated);
            fields.payload_sha256 = Some(sha256_hex(payload));
        }
    }
    let value = serde_json::to_vec(&fields).expect("an envelope always serializes");
    debug_assert!(
        value.len() <= ENVELOPE_BYTES_MAX,
        "letter of {} bytes",
        value.len()
    );
    Envelope { value, truncated }
}

/// The letter's JSON fields, in the alphabetical order letters always had (they were
/// built as a sorted JSON map); absent fields are left out, `payload: null` is written.
/// A struct rather than a `serde_json::Value`: a map per letter cost more than the rules.
#[derive(serde::Serialize)]
struct EnvelopeFields<'a> {
    detail: std::borrow::Cow<'a, str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    payload: Option<Option<&'a str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    payload_at_source: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    payload_base64: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    payload_bytes: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    payload_sha256: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    payload_truncated: Option<bool>,
    reason: &'a str,
    received_at_unix_s: u32,
    source_offset: i64,
    source_partition: i32,
    source_topic: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    tombstone: Option<bool>,
}

/// Returns true if and only if the broker or librdkafka refused a letter for a reason no
/// retry can fix: its size, the letter itself, the topic's name, or our permissions.
pub fn is_permanent(code: RDKafkaErrorCode) -> bool {
    use RDKafkaErrorCode as C;
    matches!(
        code,
        C::MessageSizeTooLarge
            | C::InvalidMessageSize
            | C::InvalidMessage
            | C::InvalidRecord
            | C::MessageBatchTooLarge
            | C::InvalidTopic
            | C::TopicAuthorizationFailed
            | C::ClusterAuthorizationFailed
            | C::PolicyViolation
            | C::InvalidRequiredAcks
            | C::UnsupportedForMessageFormat
            | C::InvalidArgument
            | C::BadMessage
    )
}

/// Sends letters to one topic and waits for the broker's acknowledgements.
pub struct DeadLetterSender<'a> {
    pub producer: &'a FutureProducer,
    pub topic: &'a str,
    /// Cap of the backoff between rounds.
    pub retry_backoff_max: Duration,
}

impl DeadLetterSender<'_> {
    /// Sends every letter; returns only when each one is acknowledged or given up.
    pub async fn send_all(&self, letters: &[DeadLetter]) -> SendTally {
        let mut tally = SendTally::default();
        let mut pending: Vec<&DeadLetter> = letters.iter().collect();
        let mut backoff = RETRY_BACKOFF_FIRST;
        for round in 1..=SEND_ROUNDS_MAX {
            let retry = self.send_round(pending, round == 1, &mut tally).await;
            if retry.is_empty() {
                return tally;
            }
            if round == SEND_ROUNDS_MAX {
                for letter in &retry {
                    give_up(letter, "still failing after the last round", &mut tally);
                }
                return tally;
            }
            tracing::warn!(
                message = "Dead letters not acknowledged; retrying.",
                count = retry.len(),
                round,
                backoff_ms = backoff.as_millis() as u64
            );
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(self.retry_backoff_max);
            pending = retry;
        }
        tally
    }

    /// One round: encodes and produces every pending letter (librdkafka copies the value,
    /// so only the letters are kept for a retry) and awaits the deliveries. Returns the
    /// letters worth another round.
    async fn send_round<'l>(
        &self,
        pending: Vec<&'l DeadLetter>,
        first_round: bool,
        tally: &mut SendTally,
    ) -> Vec<&'l DeadLetter> {
        let mut retry = Vec::new();
        let mut in_flight: Vec<(&'l DeadLetter, DeliveryFuture)> = Vec::new();
        for letter in pending {
            let key = letter.key();
            let envelope = envelope(letter);
            if first_round && envelope.truncated {
                tally.truncated += 1;
            }
            loop {
                let record = FutureRecord::to(self.topic)
                    .key(&key)
                    .payload(&envelope.value);
                match self.producer.send_result(record) {
                    Ok(delivery) => {
                        in_flight.push((letter, delivery));
                        break;
                    }
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _))
                        if !in_flight.is_empty() =>
                    {
                        // The local queue is full: wait for what is in flight first.
                        await_deliveries(&mut in_flight, &mut retry, tally).await;
                    }
                    Err((error, _)) => {
                        classify_failure(letter, &error, &mut retry, tally);
                        break;
                    }
                }
            }
        }
        await_deliveries(&mut in_flight, &mut retry, tally).await;
        retry
    }
}

/// Awaits every delivery, sorting failures into `retry` or the tally.
async fn await_deliveries<'l>(
    in_flight: &mut Vec<(&'l DeadLetter, DeliveryFuture)>,
    retry: &mut Vec<&'l DeadLetter>,
    tally: &mut SendTally,
) {
    for (letter, delivery) in in_flight.drain(..) {
        match delivery.await {
            Ok(Ok(_)) => tally.sent += 1,
            Ok(Err((error, _))) => classify_failure(letter, &error, retry, tally),
            // The producer dropped the message (shutting down): try again.
            Err(_canceled) => retry.push(letter),
        }
    }
}

fn classify_failure<'l>(
    letter: &'l DeadLetter,
    error: &KafkaError,
    retry: &mut Vec<&'l DeadLetter>,
    tally: &mut SendTally,
) {
    match error.rdkafka_error_code() {
        Some(code) if is_permanent(code) => {
            give_up(letter, &format!("refused: {error}"), tally);
        }
        _ => {
            tracing::warn!(message = "Dead letter delivery failed.", %error, source_topic = %letter.topic, source_partition = letter.partition, source_offset = letter.offset);
            retry.push(letter);
        }
    }
}

fn give_up(letter: &DeadLetter, why: &str, tally: &mut SendTally) {
    tracing::error!(
        message = "Dead letter given up; the rejection stays in rejected_events.",
        why,
        source_topic = %letter.topic,
        source_partition = letter.partition,
        source_offset = letter.offset,
        reason = letter.reason.as_str()
    );
    tally.failed += 1;
}

/// At most `chars_max` characters of `text`, with `…` when cut.
fn cut_chars(text: &str, chars_max: usize) -> std::borrow::Cow<'_, str> {
    match text.char_indices().nth(chars_max) {
        None => text.into(),
        Some((cut, _)) => format!("{}…", &text[..cut]).into(),
    }
}

/// The longest prefix of `text` (whole characters) whose JSON string escaping takes at
/// most `encoded_bytes_max` bytes.
fn json_prefix(text: &str, encoded_bytes_max: usize) -> &str {
    let mut encoded = 0usize;
    for (index, c) in text.char_indices() {
        encoded += json_escaped_len(c);
        if encoded > encoded_bytes_max {
            return &text[..index];
        }
    }
    text
}

/// Bytes serde_json writes for `c` inside a JSON string.
fn json_escaped_len(c: char) -> usize {
    match c {
        '"' | '\\' | '\n' | '\r' | '\t' | '\u{8}' | '\u{c}' => 2,
        c if (c as u32) < 0x20 => 6,
        c => c.len_utf8(),
    }
}

/// Lower-case hex SHA-256 of `bytes` (what `sha256sum` prints).
pub fn sha256_hex(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(64);
    for byte in Sha256::digest(bytes) {
        out.push(HEX[usize::from(byte >> 4)] as char);
        out.push(HEX[usize::from(byte & 0x0f)] as char);
    }
    out
}

/// Standard base64 with padding (RFC 4648 §4).
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn letter(payload: Option<Vec<u8>>) -> DeadLetter {
        DeadLetter {
            payload_at_source: false,
            topic: "t".repeat(249),
            partition: 2,
            offset: 41,
            reason: Reason::SchemaViolation,
            detail: "\u{0}".repeat(10 * DETAIL_CHARS_MAX),
            payload,
            received_at_unix_s: 1,
        }
    }

    fn decoded(envelope: &Envelope) -> serde_json::Value {
        serde_json::from_slice(&envelope.value).unwrap()
    }

    #[test]
    fn base64_matches_rfc_4648_vectors() {
        let cases = [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ];
        for (plain, encoded) in cases {
            assert_eq!(base64(plain.as_bytes()), encoded);
        }
    }

    #[test]
    fn sha256_matches_the_fips_180_vector() {
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn envelopes_name_reason_and_source_and_keep_binary_payloads() {
        let mut small = letter(Some(vec![0xff, 0xfe]));
        small.topic = "subsidy.import.parcels".into();
        small.reason = Reason::MalformedJson;
        small.detail = "not UTF-8".into();
        let envelope = envelope(&small);
        let value = decoded(&envelope);
        assert!(!envelope.truncated);
        assert_eq!(value["reason"], "malformed_json");
        assert_eq!(value["detail"], "not UTF-8");
        assert_eq!(value["source_topic"], "subsidy.import.parcels");
        assert_eq!(value["source_partition"], 2);
        assert_eq!(value["source_offset"], 41);
        assert_eq!(value["payload_base64"], "//4=");
        assert_eq!(value["payload_bytes"], 2);
        assert_eq!(value["payload_truncated"], false);
        assert_eq!(value["payload_sha256"], sha256_hex(&[0xff, 0xfe]));
        assert!(value.get("payload").is_none());
        assert_eq!(small.key(), "subsidy.import.parcels/2/41");
    }

    #[test]
    fn the_worst_payloads_of_any_size_stay_under_the_bound() {
        // Proves: each shape that grows when encoded — quotes and backslashes (×2), control
        // characters (×6), non-UTF-8 bytes (base64, ×4/3), multi-byte characters — of
        // 1 MiB and more makes a letter under ENVELOPE_BYTES_MAX, marked truncated, with
        // the full length and hash of the original.
        let mib = 1 << 20;
        let payloads: Vec<Vec<u8>> = vec![
            vec![b'"'; mib + 40_000],
            vec![b'\\'; mib],
            vec![0u8; mib],
            vec![0x80; mib],
            "时".repeat(mib / 3 + 1).into_bytes(),
            [
                b"{\"waybill_no\":\"".as_slice(),
                &vec![b'x'; 1_040_000],
                b"\"}",
            ]
            .concat(),
        ];
        for payload in payloads {
            let envelope = envelope(&letter(Some(payload.clone())));
            assert!(
                envelope.value.len() <= ENVELOPE_BYTES_MAX,
                "{} bytes",
                envelope.value.len()
            );
            assert!(envelope.truncated);
            let value = decoded(&envelope);
            assert_eq!(value["payload_truncated"], true);
            assert_eq!(value["payload_bytes"], payload.len());
            assert_eq!(value["payload_sha256"], sha256_hex(&payload));
            let kept = match value.get("payload") {
                Some(text) => text.as_str().unwrap().as_bytes().to_vec(),
                None => value["payload_base64"]
                    .as_str()
                    .unwrap()
                    .as_bytes()
                    .to_vec(),
            };
            assert!(!kept.is_empty());
            assert!(value["detail"].as_str().unwrap().chars().count() <= DETAIL_CHARS_MAX + 1);
        }
    }

    #[test]
    fn a_text_payload_is_cut_at_a_character_boundary_and_is_a_prefix() {
        let text = format!("{}{}", "a".repeat(PAYLOAD_ENCODED_BYTES_MAX - 1), "时时");
        let envelope = envelope(&letter(Some(text.clone().into_bytes())));
        let kept = decoded(&envelope)["payload"].as_str().unwrap().to_string();
        assert!(text.starts_with(&kept));
        assert_eq!(kept.len(), PAYLOAD_ENCODED_BYTES_MAX - 1);
    }

    #[test]
    fn a_payload_that_fits_is_whole() {
        let text = "\"".repeat(PAYLOAD_ENCODED_BYTES_MAX / 2);
        let envelope = envelope(&letter(Some(text.clone().into_bytes())));
        assert!(!envelope.truncated);
        assert_eq!(decoded(&envelope)["payload"], text.as_str());
    }

    #[test]
    fn a_tombstone_says_so() {
        let envelope = envelope(&letter(None));
        let value = decoded(&envelope);
        assert_eq!(value["tombstone"], true);
        assert!(value["payload"].is_null());
        assert_eq!(value["payload_bytes"], 0);
    }

    #[test]
    fn size_and_permission_refusals_are_permanent_and_timeouts_are_not() {
        assert!(is_permanent(RDKafkaErrorCode::MessageSizeTooLarge));
        assert!(is_permanent(RDKafkaErrorCode::TopicAuthorizationFailed));
        assert!(!is_permanent(RDKafkaErrorCode::MessageTimedOut));
        assert!(!is_permanent(RDKafkaErrorCode::BrokerTransportFailure));
        assert!(!is_permanent(RDKafkaErrorCode::NotEnoughReplicas));
    }
}
