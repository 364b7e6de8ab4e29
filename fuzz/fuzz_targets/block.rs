//! Block decoding and checksums: `Codec::decode` (lz4, zstd) on arbitrary objects and
//! lengths, and `checksum::{block_sums, verify, aligned, of_block}` on arbitrary
//! arguments.
//!
//! Block lengths are at most the largest block size (64 MiB), as every caller
//! guarantees: decoding allocates the length it is told once the object agrees.
#![no_main]

use arbitrary::Unstructured;
use kiseki_core::data::checksum::{self, SECTOR};
use kiseki_core::data::compress::Codec;
use kiseki_core::meta::format::MAX_BLOCK_SIZE;
use libfuzzer_sys::fuzz_target;

fn codecs(len: u32, raw: &[u8]) {
    for codec in [Codec::Lz4, Codec::Zstd] {
        if let Ok(out) = codec.decode(raw, len) {
            assert_eq!(out.len(), len as usize);
        }
        // What the store writes always reads back, and only at its own length.
        let packed = codec.encode(raw).unwrap();
        assert_eq!(codec.decode(&packed, raw.len() as u32).as_deref(), Ok(raw));
        if !raw.is_empty() {
            assert!(codec.decode(&packed, raw.len() as u32 - 1).is_err());
            assert!(codec.decode(&packed[..packed.len() - 1], raw.len() as u32).is_err());
        }
    }
    // The length an lz4 object's own prefix claims (the usual case of a length that
    // agrees), and the size a zstd frame states.
    if raw.len() >= 4 {
        let claimed = u32::from_le_bytes(raw[..4].try_into().unwrap());
        if claimed <= MAX_BLOCK_SIZE {
            if let Ok(out) = Codec::Lz4.decode(raw, claimed) {
                assert_eq!(out.len(), claimed as usize);
            }
        }
    }
    if let Ok(Some(stated)) = zstd::zstd_safe::get_frame_content_size(raw) {
        if stated <= u64::from(MAX_BLOCK_SIZE) {
            if let Ok(out) = Codec::Zstd.decode(raw, stated as u32) {
                assert_eq!(out.len() as u64, stated);
            }
        }
    }
}

/// A block of `len` bytes made of the input repeated, so that small inputs still make
/// blocks of many sectors.
fn block_of(pattern: &[u8], len: usize) -> Vec<u8> {
    if pattern.is_empty() {
        return vec![0; len];
    }
    pattern.iter().copied().cycle().take(len).collect()
}

fn sums(u: &mut Unstructured, pattern: &[u8]) -> arbitrary::Result<()> {
    let len = u.int_in_range(0..=(4 * SECTOR as usize + 17))?;
    let mut data = block_of(pattern, len);
    let whole = checksum::block_sums([data.as_slice()]);
    assert_eq!(whole.len(), len.div_ceil(SECTOR as usize));
    // The checksums do not depend on how the block is cut into pieces.
    let mut cuts: Vec<usize> = (0..u.int_in_range(0..=8)?)
        .map(|_| u.int_in_range(0..=len))
        .collect::<arbitrary::Result<_>>()?;
    cuts.push(0);
    cuts.push(len);
    cuts.sort_unstable();
    let pieces: Vec<&[u8]> = cuts.windows(2).map(|w| &data[w[0]..w[1]]).collect();
    assert_eq!(checksum::block_sums(pieces), whole);
    assert_eq!(checksum::verify(&data, 0, &whole), Ok(()));
    // A sector-aligned range of the block verifies on its own.
    let a = u.int_in_range(0..=len as u32)?;
    let b = u.int_in_range(a..=len as u32)?;
    let r = checksum::aligned(a..b, len as u32);
    assert!(
        r.start <= a && r.start % SECTOR == 0 && r.end <= len as u32,
        "{r:?} {a}..{b}"
    );
    assert!(r.end >= b, "{r:?} does not cover {a}..{b}");
    assert_eq!(
        checksum::verify(&data[r.start as usize..r.end as usize], r.start, &whole),
        Ok(())
    );
    // A flipped byte is caught by a read that covers it.
    if len > 0 {
        let at = u.int_in_range(0..=len - 1)?;
        data[at] ^= 1 << u.int_in_range(0..=7)?;
        assert!(checksum::verify(&data, 0, &whole).is_err());
    }
    Ok(())
}

fn arbitrary_calls(u: &mut Unstructured, pattern: &[u8]) -> arbitrary::Result<()> {
    // verify: any data, start and recorded sums give Ok or Err, never a panic.
    let len = u.int_in_range(0..=(3 * SECTOR as usize))?;
    let data = block_of(pattern, len);
    let start: u32 = u.arbitrary()?;
    let recorded: Vec<u32> = u.arbitrary()?;
    let _ = checksum::verify(&data, start, &recorded);
    let _ = checksum::verify(pattern, start, &recorded);
    // aligned: any range and length.
    let (s, e, l): (u32, u32, u32) = u.arbitrary()?;
    let r = checksum::aligned(s..e, l);
    assert_eq!(r.start % SECTOR, 0);
    assert!(r.start <= s);
    assert!(r.end <= l || r.end == 0, "aligned({s}..{e}, {l}) = {r:?}");
    // of_block: any slice sums, block size, index and length.
    let (block_size, index, blen): (u32, u32, u32) = u.arbitrary()?;
    if let Ok(s) = checksum::of_block(&recorded, block_size, index, blen) {
        assert_eq!(s.len(), blen.div_ceil(SECTOR) as usize);
    }
    Ok(())
}

fuzz_target!(|data: &[u8]| {
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    match sel % 3 {
        0 => {
            let (len, raw) = if rest.len() >= 4 {
                let (l, r) = rest.split_at(4);
                (
                    u32::from_le_bytes(l.try_into().unwrap()) % (MAX_BLOCK_SIZE + 1),
                    r,
                )
            } else {
                (0, rest)
            };
            codecs(len, raw);
        }
        1 => {
            let (ctl, pattern) = rest.split_at(rest.len().min(32));
            let _ = sums(&mut Unstructured::new(ctl), pattern);
        }
        _ => {
            let (ctl, pattern) = rest.split_at(rest.len().min(64));
            let _ = arbitrary_calls(&mut Unstructured::new(ctl), pattern);
        }
    }
});
