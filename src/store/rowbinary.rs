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

    /// `UInt8` (also a flag: 0 or 1).
    pub fn put_u8(&mut self, value: u8) {
        self.buf.push(value);
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

    /// Empties the buffer, keeping its capacity (a recycled batch writes into it again).
    pub fn clear(&mut self) {
        self.buf.clear();
    }

    /// Wraps bytes already in RowBinary.
    pub fn from_vec(buf: Vec<u8>) -> RowBinaryWriter {
        RowBinaryWriter { buf }
    }

    /// Bytes already in RowBinary, appended as they are.
    pub fn put_raw(&mut self, encoded: &[u8]) {
        self.buf.extend_from_slice(encoded);
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

/// Walks encoded RowBinary values without decoding them (to find a column inside a row).
#[derive(Debug)]
pub struct RowBinaryReader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> RowBinaryReader<'a> {
    /// A reader at the start of `bytes`.
    pub fn new(bytes: &'a [u8]) -> RowBinaryReader<'a> {
        RowBinaryReader { bytes, at: 0 }
    }

    /// Skips a fixed-size value of `width` bytes; `None` past the end.
    pub fn skip(&mut self, width: usize) -> Option<()> {
        let end = self.at.checked_add(width)?;
        (end <= self.bytes.len()).then(|| self.at = end)
    }

    /// Skips a `String` (LEB128 length, then the bytes); `None` if it is cut or its length
    /// is not a valid LEB128 number.
    pub fn skip_string(&mut self) -> Option<()> {
        let mut length: u64 = 0;
        for shift in (0..64).step_by(7) {
            let byte = *self.bytes.get(self.at)?;
            self.at += 1;
            length |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return self.skip(usize::try_from(length).ok()?);
            }
        }
        None
    }

    /// Bytes read so far.
    pub fn position(&self) -> usize {
        self.at
    }

    /// Returns true if and only if every byte was read.
    pub fn is_done(&self) -> bool {
        self.at == self.bytes.len()
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
    fn proves_the_reader_walks_what_the_writer_wrote_and_refuses_cut_or_bad_lengths() {
        let mut w = RowBinaryWriter::default();
        w.put_u32(7);
        w.put_bytes(&[0xaa; 300]);
        w.put_str("");
        let bytes = w.into_inner();
        let mut r = RowBinaryReader::new(&bytes);
        assert_eq!(r.skip(4), Some(()));
        assert_eq!(r.skip_string(), Some(()));
        assert_eq!(r.position(), 4 + 2 + 300);
        assert_eq!(r.skip_string(), Some(()));
        assert!(r.is_done());
        assert_eq!(r.skip(1), None);
        let mut cut = RowBinaryReader::new(&bytes[4..100]);
        assert_eq!(cut.skip_string(), None);
        let mut huge = RowBinaryWriter::default();
        huge.put_leb128_raw(1 << 62);
        assert_eq!(RowBinaryReader::new(&huge.into_inner()).skip_string(), None);
        assert_eq!(RowBinaryReader::new(&[0xff; 12]).skip_string(), None);
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
