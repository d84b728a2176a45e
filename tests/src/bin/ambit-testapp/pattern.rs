//! The deterministic byte pattern clients send, so an echo can be checked byte for byte.

/// Fills `buf` with the pattern bytes at stream offsets `offset..offset + buf.len()`.
pub fn fill(offset: u64, buf: &mut [u8]) {
    for (i, byte) in buf.iter_mut().enumerate() {
        *byte = at(offset + i as u64);
    }
}

/// The pattern byte at stream offset `offset`: splitmix64 of the 8-byte block, so shifts
/// and repeated chunks are detected.
pub fn at(offset: u64) -> u8 {
    let mut z = (offset / 8).wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^= z >> 31;
    z.to_le_bytes()[(offset % 8) as usize]
}

/// The offset (within `got`) of the first byte that differs from the pattern at `offset`.
pub fn first_mismatch(offset: u64, got: &[u8]) -> Option<u64> {
    got.iter()
        .enumerate()
        .find(|(i, b)| **b != at(offset + *i as u64))
        .map(|(i, _)| offset + i as u64)
}
