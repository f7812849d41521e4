//! Zig-zag variable-length integers as Kafka's record format uses them (protobuf style: 7 bits per
//! byte, low group first). Decoding never reads past the slice it is given.

/// Appends `value` zig-zag encoded (Kafka `varint`/`varlong`).
#[inline]
pub(crate) fn put_varlong(buf: &mut Vec<u8>, value: i64) {
    let mut v = ((value << 1) ^ (value >> 63)) as u64;
    if v < 0x80 {
        buf.push(v as u8);
        return;
    }
    while v >= 0x80 {
        buf.push((v as u8) | 0x80);
        v >>= 7;
    }
    buf.push(v as u8);
}

/// Number of bytes `put_varlong(value)` writes.
#[inline]
pub(crate) fn varlong_len(value: i64) -> usize {
    let v = ((value << 1) ^ (value >> 63)) as u64;
    let bits = 64 - (v | 1).leading_zeros() as usize;
    bits.div_ceil(7)
}

/// Reads a zig-zag varint from `buf[*pos..]`, advancing `pos`. `None` if it runs off the end or is
/// longer than ten bytes.
#[inline]
pub(crate) fn get_varlong(buf: &[u8], pos: &mut usize) -> Option<i64> {
    let mut result: u64 = 0;
    let mut shift = 0u32;
    loop {
        let byte = *buf.get(*pos)?;
        *pos += 1;
        result |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some(((result >> 1) as i64) ^ -((result & 1) as i64));
        }
        shift += 7;
        if shift > 63 {
            return None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_edge_values_and_lengths_agree() {
        let values = [
            0i64,
            1,
            -1,
            63,
            -64,
            64,
            300,
            -300,
            i32::MAX as i64,
            i32::MIN as i64,
            i64::MAX,
            i64::MIN,
        ];
        for v in values {
            let mut buf = Vec::new();
            put_varlong(&mut buf, v);
            assert_eq!(buf.len(), varlong_len(v), "length of {v}");
            let mut pos = 0;
            assert_eq!(get_varlong(&buf, &mut pos), Some(v));
            assert_eq!(pos, buf.len());
        }
    }

    #[test]
    fn matches_kafka_zigzag_bytes() {
        // Kafka ByteUtils: writeVarint(-1) = 0x01, writeVarint(1) = 0x02, 300 -> 0xd8 0x04.
        let mut buf = Vec::new();
        put_varlong(&mut buf, -1);
        put_varlong(&mut buf, 1);
        put_varlong(&mut buf, 300);
        assert_eq!(buf, [0x01, 0x02, 0xd8, 0x04]);
    }

    #[test]
    fn truncated_or_overlong_input_is_rejected() {
        let mut pos = 0;
        assert_eq!(get_varlong(&[0x80, 0x80], &mut pos), None);
        let mut pos = 0;
        assert_eq!(get_varlong(&[0xff; 11], &mut pos), None);
    }
}
