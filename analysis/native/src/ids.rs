//! Span and trace ids as the readers write them: lower-case hex, 16 or 32 digits, in Arrow
//! string columns. Parsed eight digits at a time (SWAR); any other spelling is refused, and
//! the caller takes the numpy path, which handles every spelling.

/// One chunk of an Arrow string column: validity bits (none: all valid), offsets already
/// sliced to the chunk's rows (`len + 1` absolute positions into `data`).
pub struct StrChunk<'a> {
    pub valid: Option<&'a [u8]>,
    pub bit_offset: usize,
    pub offsets: &'a [i32],
    pub data: &'a [u8],
}

impl StrChunk<'_> {
    pub fn len(&self) -> usize {
        self.offsets.len().saturating_sub(1)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The bytes of row `i`, None when it is null.
    pub fn get(&self, i: usize) -> Option<&[u8]> {
        if let Some(bits) = self.valid {
            let b = self.bit_offset + i;
            if bits[b / 8] & (1 << (b % 8)) == 0 {
                return None;
            }
        }
        Some(&self.data[self.offsets[i] as usize..self.offsets[i + 1] as usize])
    }

    pub fn check(&self, name: &str) -> Result<(), String> {
        let (Some(&first), Some(&last)) = (self.offsets.first(), self.offsets.last()) else {
            return Err(format!("{name}: a chunk without offsets"));
        };
        if first < 0 || last < first || last as usize > self.data.len() {
            return Err(format!(
                "{name}: offsets {first}..{last} outside {} data bytes",
                self.data.len()
            ));
        }
        if self.offsets.windows(2).any(|w| w[1] < w[0]) {
            return Err(format!("{name}: offsets decrease"));
        }
        if let Some(bits) = self.valid {
            if bits.len() * 8 < self.bit_offset + self.len() {
                return Err(format!("{name}: validity bitmap shorter than the chunk"));
            }
        }
        Ok(())
    }
}

/// A dictionary-encoded chunk's indices (int32, with their own validity bits).
pub struct IndexChunk<'a> {
    pub valid: Option<&'a [u8]>,
    pub bit_offset: usize,
    pub indices: &'a [i32],
}

impl IndexChunk<'_> {
    /// The dictionary entry of row `i`, None when it is null.
    pub fn get(&self, i: usize) -> Option<usize> {
        if let Some(bits) = self.valid {
            let b = self.bit_offset + i;
            if bits[b / 8] & (1 << (b % 8)) == 0 {
                return None;
            }
        }
        usize::try_from(self.indices[i]).ok()
    }

    pub fn check(&self, name: &str) -> Result<(), String> {
        match self.valid {
            Some(bits) if bits.len() * 8 < self.bit_offset + self.indices.len() => {
                Err(format!("{name}: validity bitmap shorter than the chunk"))
            }
            _ => Ok(()),
        }
    }
}

/// A chunk of trace ids: plain strings, or dictionary indices into `ids`.
pub struct TraceChunk<'a> {
    pub ids: StrChunk<'a>,
    pub indices: Option<IndexChunk<'a>>,
}

impl TraceChunk<'_> {
    pub fn len(&self) -> usize {
        self.indices
            .as_ref()
            .map_or(self.ids.len(), |ix| ix.indices.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGH: u64 = 0x8080_8080_8080_8080;

/// Eight lower-case hex digits (first digit most significant), or None for anything else.
#[inline]
fn hex8(chunk: &[u8]) -> Option<u32> {
    let x = u64::from_le_bytes(chunk.try_into().ok()?);
    if x & HIGH != 0 {
        return None;
    }
    // per byte b < 0x80, (b + 0x80 - lo) has its high bit set iff b >= lo; no carry crosses bytes
    let ge = |lo: u64| (x + (0x80 - lo) * ONES) & HIGH;
    let digit = ge(0x30) & !ge(0x3a);
    let alpha = ge(0x61) & !ge(0x67);
    if digit | alpha != HIGH {
        return None;
    }
    let nib = (x & (0x0f * ONES)) + (alpha >> 7) * 9;
    // bytes d0..d7 (d0 lowest) → 16-bit lanes d0<<4|d1 … → one u32, d0 in the top nibble
    let pairs = ((nib & 0x000f_000f_000f_000f) << 4) | ((nib >> 8) & 0x000f_000f_000f_000f);
    let quads = (pairs | (pairs >> 8)) & 0x0000_ffff_0000_ffff;
    let word = ((quads | (quads >> 16)) & 0xffff_ffff) as u32;
    Some(word.swap_bytes())
}

/// A 16-digit id as its 64-bit value.
#[inline]
pub fn hex64(s: &[u8]) -> Option<u64> {
    if s.len() != 16 {
        return None;
    }
    Some(((hex8(&s[..8])? as u64) << 32) | hex8(&s[8..])? as u64)
}

/// A 32-digit id as its 128-bit value.
#[inline]
pub fn hex128(s: &[u8]) -> Option<u128> {
    if s.len() != 32 {
        return None;
    }
    Some(((hex64(&s[..16])? as u128) << 64) | hex64(&s[16..])? as u128)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_matches_the_standard_parser() {
        for s in [
            "0000000000000000",
            "0123456789abcdef",
            "fedcba9876543210",
            "ffffffffffffffff",
            "00000000000000a0",
        ] {
            assert_eq!(
                hex64(s.as_bytes()),
                Some(u64::from_str_radix(s, 16).unwrap()),
                "{s}"
            );
        }
        let t = "4bf92f3577b34da6a3ce929d0e0e4736";
        assert_eq!(hex128(t.as_bytes()), Some(u128::from_str_radix(t, 16).unwrap()));
    }

    #[test]
    fn every_byte_outside_lower_hex_is_refused() {
        for b in 0u8..=255 {
            let mut s = *b"0123456789abcdef";
            s[5] = b;
            let ok = b.is_ascii_digit() || (b'a'..=b'f').contains(&b);
            assert_eq!(hex64(&s).is_some(), ok, "byte {b:#x}");
        }
        assert_eq!(hex64(b"0123456789abcde"), None);
    }
}
