//! The fast path of [`super::decode`]: one hand-written pass over the payloads producers
//! actually send — a flat JSON object whose strings hold no escapes and whose values are
//! strings, booleans, `null` or numbers — filling the same [`Fields`] the `serde_json`
//! path fills.
//!
//! It never decides anything on its own: whatever it does not recognise (an escape, a
//! control character, bytes that are not UTF-8, a nested value, any syntax error,
//! anything but an object) makes it give up with `None`, and `serde_json` parses the payload from the start and
//! reports what is wrong exactly as before. So it only has to be right on what it accepts;
//! the equivalence test below checks that on valid and mutated payloads.
//!
//! Why: `serde_json` with borrowed raw values cost ~600 ns per event (a UTF-8 pass, then
//! the parse, a raw-value pass per known field); this scan touches each byte once.

use super::{Fields, Key, Scalar};
use std::borrow::Cow;

/// The fields of `text` when it is a flat object this scan handles, `None` otherwise
/// (the caller then parses it with `serde_json`).
pub(super) fn flat_object(payload: &[u8]) -> Option<Fields<'_>> {
    // One validation of the whole payload (word-at-a-time for ASCII) instead of one per
    // string; strings are then cut at ASCII quotes, always on a character boundary.
    let text = std::str::from_utf8(payload).ok()?;
    let mut scan = Scan {
        text,
        bytes: payload,
        at: 0,
    };
    let mut fields = Fields::default();
    scan.skip_whitespace();
    scan.expect(b'{')?;
    scan.skip_whitespace();
    if scan.peek()? == b'}' {
        scan.at += 1;
    } else {
        loop {
            let key = scan.string()?;
            scan.skip_whitespace();
            scan.expect(b':')?;
            scan.skip_whitespace();
            let value = scan.value()?;
            if let Some(slot) = fields.slot(Key::named(key)) {
                // The last occurrence of a key wins, as in the serde path.
                *slot = Some(value);
            }
            scan.skip_whitespace();
            match scan.next()? {
                b',' => scan.skip_whitespace(),
                b'}' => break,
                _ => return None,
            }
        }
    }
    scan.skip_whitespace();
    (scan.at == payload.len()).then_some(fields)
}

/// A cursor over the payload.
struct Scan<'a> {
    text: &'a str,
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Scan<'a> {
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.at).copied()
    }

    fn next(&mut self) -> Option<u8> {
        let byte = self.peek()?;
        self.at += 1;
        Some(byte)
    }

    fn expect(&mut self, byte: u8) -> Option<()> {
        (self.next()? == byte).then_some(())
    }

    /// JSON's four whitespace bytes (RFC 8259 §2).
    fn skip_whitespace(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.at += 1;
        }
    }

    /// A string without escapes or control characters, at the cursor; its contents.
    fn string(&mut self) -> Option<&'a str> {
        self.expect(b'"')?;
        let start = self.at;
        let len = string_end(&self.bytes[start..])?;
        // An escape or a control character: the serde path.
        (self.bytes[start + len] == b'"').then_some(())?;
        self.at = start + len + 1;
        self.text.get(start..start + len)
    }

    /// A value that is not nested, at the cursor.
    fn value(&mut self) -> Option<Scalar<'a>> {
        Some(match self.peek()? {
            b'"' => Scalar::Str(Cow::Borrowed(self.string()?)),
            b't' => self.literal(b"true", Scalar::Bool(true))?,
            b'f' => self.literal(b"false", Scalar::Bool(false))?,
            b'n' => self.literal(b"null", Scalar::Other("null"))?,
            b'-' | b'0'..=b'9' => {
                self.number()?;
                Scalar::Other("number")
            }
            // An array, an object or bad JSON: the serde path.
            _ => return None,
        })
    }

    fn literal(&mut self, word: &[u8], scalar: Scalar<'a>) -> Option<Scalar<'a>> {
        let end = self.at + word.len();
        (self.bytes.get(self.at..end)? == word).then(|| {
            self.at = end;
            scalar
        })
    }

    /// A number in JSON's grammar: `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`.
    /// Its value is never needed (the serde path does not convert numbers either).
    fn number(&mut self) -> Option<()> {
        if self.peek() == Some(b'-') {
            self.at += 1;
        }
        match self.next()? {
            b'0' => {}
            b'1'..=b'9' => self.digits(),
            _ => return None,
        }
        if self.peek() == Some(b'.') {
            self.at += 1;
            self.digit()?;
            self.digits();
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.at += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.at += 1;
            }
            self.digit()?;
            self.digits();
        }
        Some(())
    }

    fn digit(&mut self) -> Option<()> {
        self.next()?.is_ascii_digit().then_some(())
    }

    fn digits(&mut self) {
        while self.peek().is_some_and(|b| b.is_ascii_digit()) {
            self.at += 1;
        }
    }
}

/// Index of the first `"`, `\\` or control character in `bytes`: eight bytes per step
/// (SWAR), as strings are most of a payload and a byte-at-a-time loop cost ~1.5 ns/byte.
fn string_end(bytes: &[u8]) -> Option<usize> {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGHS: u64 = u64::from_ne_bytes([0x80; 8]);
    // The high bit of each byte of `x` below `n` (n ≤ 0x80); exact for the lowest such
    // byte, which is the only one used.
    let below = |x: u64, n: u8| x.wrapping_sub(ONES * u64::from(n)) & !x & HIGHS;
    let mut chunks = bytes.chunks_exact(8);
    let mut at = 0;
    for chunk in &mut chunks {
        let x = u64::from_le_bytes(chunk.try_into().expect("eight bytes"));
        let stops = below(x ^ (ONES * u64::from(b'"')), 1)
            | below(x ^ (ONES * u64::from(b'\\')), 1)
            | below(x, 0x20);
        if stops != 0 {
            return Some(at + (stops.trailing_zeros() / 8) as usize);
        }
        at += 8;
    }
    let tail = chunks.remainder();
    tail.iter()
        .position(|&b| b == b'"' || b == b'\\' || b < 0x20)
        .map(|i| at + i)
}

#[cfg(test)]
mod tests {
    //! Proves: wherever the scan answers, it answers what the `serde_json` path does; and it
    //! answers for the payloads producers send.
    use super::*;
    use rand::{Rng, SeedableRng};

    fn serde_fields(text: &str) -> Option<(Fields<'_>, &'static str)> {
        let mut fields = Fields::default();
        let kind = super::super::parse(text, &mut fields).ok()?;
        Some((fields, kind))
    }

    /// Whether the scan accepted `text`; asserts it agrees with the serde path if it did.
    #[track_caller]
    fn assert_same(text: &[u8]) -> bool {
        let Some(fast) = flat_object(text) else {
            return false;
        };
        let shown = String::from_utf8_lossy(text);
        let text = std::str::from_utf8(text).expect("the scan accepts UTF-8 only");
        let (slow, kind) =
            serde_fields(text).unwrap_or_else(|| panic!("{shown}: scanned but bad JSON"));
        assert_eq!(kind, "object", "{shown}");
        assert_eq!(fast, slow, "{shown}");
        true
    }

    const PRODUCED: &[&str] = &[
        r#"{"type":"takeout_order","event_id":"e-1","occurred_at":"2024-03-01T12:30:00+08:00","platform_id":"P1","order_id":"O-1","courier_id":"C1","zone_id":"Z1","courier_released":true}"#,
        r#"{"type":"import_parcel","event_id":"e-2","occurred_at":"2023-05-06T01:02:03Z","firm_id":"F1","waybill_no":"WB1","channel":"mail","weight_kg":1.25e3,"n":-0,"tags":null}"#,
        " {\n \"type\" : \"rural_delivery\" ,\"firm_id\":\"F1\",\"outlet_id\":\"O1\",\"waybill_no\":\"R1\",\"courier_released\":false,\"type\":7}\r\n",
        "{}",
        "{ }",
        "{\"type\":\"caf\u{e9}\",\"\u{4e2d}\":\"\u{6587}\"}",
    ];

    #[test]
    fn produced_payloads_are_scanned_and_equal_the_serde_path() {
        for text in PRODUCED {
            assert!(flat_object(text.as_bytes()).is_some(), "{text}");
            assert_same(text.as_bytes());
        }
    }

    #[test]
    fn string_end_finds_the_first_stop_byte_at_every_position() {
        for len in 0..40 {
            for stop in [b'"', b'\\', 0x00, 0x1f, b'\n'] {
                for at in 0..len {
                    let mut bytes = vec![b'a'; len];
                    // Bytes just around the stops (0x20, 0x21, 0x5b, 0x5d, 0x80+) are not stops.
                    for (i, byte) in bytes.iter_mut().enumerate() {
                        *byte = [b' ', b'!', b'#', b'[', b']', 0xe4, 0xff, b'z'][i % 8];
                    }
                    bytes[at] = stop;
                    if at + 1 < len {
                        bytes[at + 1] = b'"';
                    }
                    assert_eq!(string_end(&bytes), Some(at), "{bytes:?}");
                }
                assert_eq!(string_end(&vec![b'a'; len]), None);
            }
        }
    }

    #[test]
    fn what_it_does_not_handle_goes_to_the_serde_path() {
        for text in [
            r#"{"type":"a\"b"}"#,
            r#"{"type":["x"]}"#,
            r#"{"x":{"y":1}}"#,
            r#"{"type":"x",}"#,
            r#"{"type":01}"#,
            r#"{"type":1.}"#,
            r#"{"type":truex}"#,
            r#"{"type":"x"} x"#,
            r#"["x"]"#,
            "",
            "{\"type\":\"a\tb\"}",
        ] {
            assert!(flat_object(text.as_bytes()).is_none(), "{text}");
        }
    }

    /// Mutates produced payloads a byte at a time (replace, insert, delete, truncate) and
    /// checks every one the scan accepts against the serde path.
    #[test]
    fn mutated_payloads_agree_with_the_serde_path() {
        let mut rng = rand::rngs::SmallRng::seed_from_u64(13);
        let alphabet = b"{}[]:,\"\\ \t\n-+.0123456789eEtruefalsnx\x01\x7f\xc3\xa9";
        let mut scanned = 0;
        for _ in 0..200_000 {
            let mut text = PRODUCED[rng.gen_range(0..PRODUCED.len())]
                .as_bytes()
                .to_vec();
            for _ in 0..rng.gen_range(1..4) {
                let at = rng.gen_range(0..=text.len());
                let byte = alphabet[rng.gen_range(0..alphabet.len())];
                match rng.gen_range(0..4) {
                    0 if at < text.len() => text[at] = byte,
                    1 => text.insert(at, byte),
                    2 if at < text.len() => {
                        text.remove(at);
                    }
                    _ => text.truncate(at),
                }
            }
            scanned += usize::from(assert_same(&text));
        }
        // Enough mutants are scanned for the agreement to mean something.
        assert!(scanned > 20_000, "only {scanned} mutants scanned");
    }
}
