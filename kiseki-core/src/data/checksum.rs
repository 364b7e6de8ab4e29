//! End-to-end block checksums.
//!
//! Every block is checksummed before it leaves this client: a CRC32C of each 64 KiB
//! sector of its raw bytes (before compression). A slice's checksums, block after block,
//! are committed in the same metadata transaction as the slice (`Z` slice key, see
//! `meta::keys`), so the object stays raw and JuiceFS-compatible and no committed slice
//! is ever without them. Every block read from object storage or from the disk cache
//! is checked against them: a flipped byte gives EIO naming the object, never wrong
//! data. Sectors, not whole blocks, let a small ranged read check what it fetched
//! without fetching the whole block.
//!
//! Volumes formatted before checksums existed (metadata layout v2) keep working: their
//! old slices have no checksums and are read unchecked; slices written since have them.

use crate::error::{Error, Result};

/// Bytes one checksum covers. Block sizes are powers of two of at least 64 KiB, so
/// every block but a slice's last is a whole number of sectors.
pub const SECTOR: u32 = 64 << 10;

/// Sector checksums of a block given as consecutive pieces (pages, buffers).
pub fn block_sums<P: AsRef<[u8]>>(pieces: impl IntoIterator<Item = P>) -> Vec<u32> {
    let mut sums = Vec::new();
    let (mut crc, mut filled) = (0u32, 0usize);
    for p in pieces {
        let mut piece = p.as_ref();
        while !piece.is_empty() {
            let take = piece.len().min(SECTOR as usize - filled);
            crc = crc32c::crc32c_append(crc, &piece[..take]);
            filled += take;
            piece = &piece[take..];
            if filled == SECTOR as usize {
                sums.push(crc);
                (crc, filled) = (0, 0);
            }
        }
    }
    if filled > 0 {
        sums.push(crc);
    }
    sums
}

/// The checksums of block `index` (of `len` bytes) within a slice's checksums, or why
/// there are not as many as the block needs.
pub fn of_block(
    slice_sums: &[u32],
    block_size: u32,
    index: u32,
    len: u32,
) -> Result<&[u32], String> {
    let per_block = (block_size / SECTOR) as usize;
    let first = index as usize * per_block;
    let count = len.div_ceil(SECTOR) as usize;
    slice_sums.get(first..first + count).ok_or_else(|| {
        format!(
            "the slice records {} sector checksums; block {index} needs {first}..{}",
            slice_sums.len(),
            first + count
        )
    })
}

/// The sector-aligned range of a block of `len` bytes that covers `range`.
pub fn aligned(range: std::ops::Range<u32>, len: u32) -> std::ops::Range<u32> {
    let start = range.start / SECTOR * SECTOR;
    let end = range.end.div_ceil(SECTOR).saturating_mul(SECTOR).min(len);
    start..end
}

/// Checks `data`, block bytes from sector-aligned offset `start`, against the block's
/// sector checksums `sums`; on a mismatch says which sector.
pub fn verify(data: &[u8], start: u32, sums: &[u32]) -> Result<(), String> {
    let first = (start / SECTOR) as usize;
    for (i, sector) in data.chunks(SECTOR as usize).enumerate() {
        let want = sums.get(first + i).copied();
        let got = crc32c::crc32c(sector);
        if want != Some(got) {
            return Err(match want {
                Some(w) => format!(
                    "checksum mismatch in bytes {}..{} (crc32c {got:08x}, recorded {w:08x})",
                    u64::from(start) + (i * SECTOR as usize) as u64,
                    u64::from(start) + (i * SECTOR as usize + sector.len()) as u64
                ),
                None => format!("no checksum recorded for sector {}", first + i),
            });
        }
    }
    Ok(())
}

/// Encodes a slice's checksums (the `Z` value): a version byte, then each CRC32C as
/// u32 little-endian.
pub fn encode(sums: &[u32]) -> Vec<u8> {
    let mut v = Vec::with_capacity(1 + 4 * sums.len());
    v.push(1);
    for s in sums {
        v.extend_from_slice(&s.to_le_bytes());
    }
    v
}

pub fn decode(slice: u64, v: &[u8]) -> Result<Vec<u32>> {
    match v.split_first() {
        Some((1, rest)) if rest.len() % 4 == 0 => Ok(rest
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes(c.try_into().expect("chunks of 4")))
            .collect()),
        _ => Err(Error::Corrupt {
            ino: crate::meta::Ino(0),
            what: format!(
                "checksum record of slice {slice}: {} bytes, not a v1 record",
                v.len()
            ),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_do_not_depend_on_how_the_block_is_cut() {
        let data: Vec<u8> = (0..200_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let whole = block_sums([data.as_slice()]);
        assert_eq!(whole.len(), 4);
        let pieces: Vec<&[u8]> = data.chunks(4096 + 3).collect();
        assert_eq!(block_sums(pieces), whole);
        assert!(verify(&data, 0, &whole).is_ok());
        // A ranged read checks the sectors it covers.
        let r = aligned(70_000..70_010, data.len() as u32);
        assert_eq!(r, SECTOR..2 * SECTOR);
        assert!(verify(&data[r.start as usize..r.end as usize], r.start, &whole).is_ok());
        let mut bad = data.clone();
        bad[150_000] ^= 1;
        let e = verify(&bad, 0, &whole).unwrap_err();
        assert!(e.contains("131072..196608"), "{e}");
        assert!(verify(&data[..10], 0, &[]).is_err());
    }

    #[test]
    fn block_ranges_and_records() {
        let sums: Vec<u32> = (0..70).collect();
        // 4 MiB blocks: 64 sectors each; the second block of a slice is shorter.
        assert_eq!(of_block(&sums, 4 << 20, 0, 4 << 20).unwrap(), &sums[..64]);
        assert_eq!(
            of_block(&sums, 4 << 20, 1, 6 * SECTOR - 1).unwrap(),
            &sums[64..70]
        );
        assert!(of_block(&sums, 4 << 20, 1, 7 * SECTOR).is_err());
        assert_eq!(decode(1, &encode(&sums)).unwrap(), sums);
        assert!(decode(1, &[1, 0, 0]).is_err());
        assert!(decode(1, &[2]).is_err());
        assert!(decode(1, &[]).is_err());
    }
}
