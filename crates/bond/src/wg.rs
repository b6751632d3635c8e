//! What the bond needs to know about WireGuard's wire format, read defensively.

/// WireGuard message type of transport data.
pub const DATA: u8 = 4;
/// Bytes a data message adds to its plaintext, besides padding: type, receiver index,
/// counter (16) and the AEAD tag (16).
pub const DATA_OVERHEAD: usize = 32;

/// The receiver index and counter of a data message (type 4), read before decryption.
pub fn data_header(msg: &[u8]) -> Option<(u32, u64)> {
    if msg.len() < DATA_OVERHEAD || msg[..4] != [DATA, 0, 0, 0] {
        return None;
    }
    let index = u32::from_le_bytes(msg.get(4..8)?.try_into().ok()?);
    let counter = u64::from_le_bytes(msg.get(8..16)?.try_into().ok()?);
    Some((index, counter))
}

/// The size on the wire (UDP payload) of a data message carrying `plain` bytes:
/// WireGuard pads the plaintext to a multiple of 16.
pub fn data_wire_len(plain: usize) -> usize {
    DATA_OVERHEAD + plain.div_ceil(16) * 16
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_index_and_counter_of_data_messages_only() {
        let mut m = vec![4, 0, 0, 0, 1, 2, 3, 4];
        m.extend_from_slice(&7u64.to_le_bytes());
        m.extend_from_slice(&[0; 16]);
        assert_eq!(data_header(&m), Some((0x0403_0201, 7)));
        m[0] = 1;
        assert_eq!(data_header(&m), None);
        assert_eq!(data_header(&[4, 0, 0, 0]), None);
        assert_eq!(data_wire_len(0), 32);
        assert_eq!(data_wire_len(1), 48);
        assert_eq!(data_wire_len(1420), 32 + 1424);
    }
}
