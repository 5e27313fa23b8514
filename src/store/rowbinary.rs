//! A minimal RowBinary encoder for the `outcomes` insert, the hot path of the service.
//!
//! Rows are encoded straight into one growing buffer per batch as messages are processed:
//! no per-row allocation, and the batch's byte size is known exactly for the
//! `batch_bytes_max` bound. RowBinary is the same on 18.16 and current servers; newer ones
//! additionally get a `RowBinaryWithNamesAndTypes` header so the server checks every
//! column's name and type.

/// Appends ClickHouse RowBinary values to a buffer.
#[derive(Debug, Default)]
pub struct RowBinaryWriter {
    buf: Vec<u8>,
}

impl RowBinaryWriter {
    /// An empty writer with room for `bytes` bytes.
    pub fn with_capacity(bytes: usize) -> RowBinaryWriter {
        RowBinaryWriter {
            buf: Vec::with_capacity(bytes),
        }
    }

    /// `String`: LEB128 length, then the bytes (any bytes: ClickHouse strings are binary).
    pub fn put_bytes(&mut self, value: &[u8]) {
        self.put_leb128(value.len() as u64);
        self.buf.extend_from_slice(value);
    }

    /// `String` from text.
    pub fn put_str(&mut self, value: &str) {
        self.put_bytes(value.as_bytes());
    }

    /// `UInt16` (also `Date`: days since 1970-01-01).
    pub fn put_u16(&mut self, value: u16) {
        self.buf.extend_from_slice(&value.to_le_bytes());
    }

    /// `UInt32` (also `DateTime`: seconds since the epoch).
    pub fn put_u32(&mut self, value: u32) {
        self.buf.extend_from_slice(&value.to_le_bytes());
    }

    /// `UInt64`.
    pub fn put_u64(&mut self, value: u64) {
        self.buf.extend_from_slice(&value.to_le_bytes());
    }

    /// `Int64`.
    pub fn put_i64(&mut self, value: i64) {
        self.buf.extend_from_slice(&value.to_le_bytes());
    }

    /// Wraps bytes already in RowBinary.
    pub fn from_vec(buf: Vec<u8>) -> RowBinaryWriter {
        RowBinaryWriter { buf }
    }

    /// A bare LEB128 number (a string's length prefix without the string).
    pub fn put_leb128_raw(&mut self, value: u64) {
        self.put_leb128(value);
    }

    fn put_leb128(&mut self, mut value: u64) {
        loop {
            let byte = (value & 0x7f) as u8;
            value >>= 7;
            if value == 0 {
                self.buf.push(byte);
                return;
            }
            self.buf.push(byte | 0x80);
        }
    }

    /// Bytes written so far.
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// Returns true if and only if nothing was written.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// The encoded bytes.
    pub fn into_inner(self) -> Vec<u8> {
        self.buf
    }
}

/// The `RowBinaryWithNamesAndTypes` header for the given columns `(name, type)`.
pub fn names_and_types_header(columns: &[(&str, &str)]) -> Vec<u8> {
    let mut writer = RowBinaryWriter::default();
    writer.put_leb128(columns.len() as u64);
    for (name, _) in columns {
        writer.put_str(name);
    }
    for (_, column_type) in columns {
        writer.put_str(column_type);
    }
    writer.into_inner()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_carry_a_leb128_length() {
        let mut w = RowBinaryWriter::default();
        w.put_str("ab");
        w.put_bytes(&[0xff; 200]);
        let bytes = w.into_inner();
        assert_eq!(&bytes[..3], &[2, b'a', b'b']);
        // 200 = 0b1_1001000 -> 0xc8 0x01
        assert_eq!(&bytes[3..5], &[0xc8, 0x01]);
        assert_eq!(bytes.len(), 3 + 2 + 200);
    }

    #[test]
    fn integers_are_little_endian() {
        let mut w = RowBinaryWriter::default();
        w.put_u16(0x0102);
        w.put_u32(1);
        w.put_i64(-1);
        assert_eq!(
            w.into_inner(),
            vec![2, 1, 1, 0, 0, 0, 255, 255, 255, 255, 255, 255, 255, 255]
        );
    }
}
