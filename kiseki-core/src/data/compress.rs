//! Block compression, chosen at format (`compression=none|lz4|zstd`) and stated in the
//! volume's format record: every block of a volume is stored the one way it names.
//!
//! Stored forms:
//! - `lz4`: the block's length as u32 LE, then one lz4 block (`lz4_flex`'s
//!   `compress_prepend_size`);
//! - `zstd`: one standard zstd frame that states its content size, at level 1. This is
//!   what `zstd -1` writes and what JuiceFS writes with `--compress zstd`, so the zstd
//!   blocks of a JuiceFS bucket decode as they are.
//!
//! Decoding compares the size an object states with the length its key gives before
//! anything is allocated (a corrupt object must not make a reader allocate gigabytes)
//! and checks that exactly that many bytes come out: a damaged object reads as corrupt,
//! never as data. Checksums (`data::checksum`) cover the uncompressed bytes.

use std::fmt;

/// How a volume's blocks are compressed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Codec {
    None,
    Lz4,
    Zstd,
}

/// zstd's level: its fastest standard level, as JuiceFS uses; higher levels cost several
/// times the CPU for a few percent on typical data.
pub const ZSTD_LEVEL: i32 = 1;

impl Codec {
    pub const NAMES: &'static str = "none, lz4 or zstd";

    /// The codec a format option or format record names.
    pub fn parse(name: &str) -> Option<Codec> {
        match name {
            "none" => Some(Codec::None),
            "lz4" => Some(Codec::Lz4),
            "zstd" => Some(Codec::Zstd),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Codec::None => "none",
            Codec::Lz4 => "lz4",
            Codec::Zstd => "zstd",
        }
    }

    /// The stored form of `raw` (a copy of it for `None`).
    pub fn encode(self, raw: &[u8]) -> std::io::Result<Vec<u8>> {
        match self {
            Codec::None => Ok(raw.to_vec()),
            Codec::Lz4 => Ok(lz4_flex::compress_prepend_size(raw)),
            Codec::Zstd => zstd::bulk::compress(raw, ZSTD_LEVEL),
        }
    }

    /// The `len` bytes `stored` holds, or why it does not hold them.
    pub fn decode(self, stored: &[u8], len: u32) -> Result<Vec<u8>, String> {
        match self {
            Codec::None if stored.len() == len as usize => Ok(stored.to_vec()),
            Codec::None => Err(format!("holds {} bytes, expected {len}", stored.len())),
            Codec::Lz4 => decode_lz4(stored, len),
            Codec::Zstd => decode_zstd(stored, len),
        }
    }
}

impl fmt::Display for Codec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

fn decode_lz4(raw: &[u8], len: u32) -> Result<Vec<u8>, String> {
    let (size, body) = lz4_flex::block::uncompressed_size(raw).map_err(|e| e.to_string())?;
    if size != len as usize {
        return Err(format!("says it holds {size} bytes, expected {len}"));
    }
    let mut out = vec![0u8; size];
    let n = lz4_flex::block::decompress_into(body, &mut out).map_err(|e| e.to_string())?;
    if n != size {
        return Err(format!("decompressed to {n} bytes, expected {len}"));
    }
    Ok(out)
}

fn decode_zstd(raw: &[u8], len: u32) -> Result<Vec<u8>, String> {
    let size = match zstd::zstd_safe::get_frame_content_size(raw) {
        Ok(Some(size)) => size,
        // A streaming encoder's frame: the output is bounded by `len` below.
        Ok(None) => u64::from(len),
        Err(_) => return Err("not a zstd frame".into()),
    };
    if size != u64::from(len) {
        return Err(format!("says it holds {size} bytes, expected {len}"));
    }
    // At most `len` bytes come out: a frame holding more fails here.
    let out = zstd::bulk::decompress(raw, len as usize).map_err(|e| format!("zstd: {e}"))?;
    if out.len() != len as usize {
        return Err(format!(
            "decompressed to {} bytes, expected {len}",
            out.len()
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i / 7 % 251) as u8).collect()
    }

    #[test]
    fn every_codec_round_trips_and_refuses_wrong_lengths_and_damage() {
        for codec in [Codec::None, Codec::Lz4, Codec::Zstd] {
            assert_eq!(Codec::parse(codec.name()), Some(codec));
            for len in [0usize, 1, 4096, 1 << 20] {
                let raw = sample(len);
                let stored = codec.encode(&raw).unwrap();
                assert_eq!(
                    codec.decode(&stored, len as u32).unwrap(),
                    raw,
                    "{codec} {len}"
                );
                assert!(
                    codec.decode(&stored, len as u32 + 1).is_err(),
                    "{codec} {len}"
                );
                if len > 0 {
                    assert!(codec
                        .decode(&stored[..stored.len() - 1], len as u32)
                        .is_err());
                }
            }
        }
        assert_eq!(Codec::parse("gzip"), None);
    }

    #[test]
    fn zstd_blocks_are_standard_frames_that_state_their_size() {
        let raw = sample(100_000);
        let stored = Codec::Zstd.encode(&raw).unwrap();
        assert_eq!(&stored[..4], &[0x28, 0xb5, 0x2f, 0xfd], "zstd magic");
        assert!(stored.len() < raw.len() / 4, "{} bytes", stored.len());
        // Any zstd encoder's frame decodes, also a streaming one that states no size;
        // its output is still held to the block's length.
        let other = zstd::stream::encode_all(&raw[..], 3).unwrap();
        assert_eq!(Codec::Zstd.decode(&other, raw.len() as u32).unwrap(), raw);
        assert!(Codec::Zstd.decode(&other, raw.len() as u32 - 1).is_err());
        assert!(Codec::Zstd.decode(&other, raw.len() as u32 + 1).is_err());
        // An lz4 block is not a zstd frame.
        let lz4 = Codec::Lz4.encode(&raw).unwrap();
        assert!(Codec::Zstd.decode(&lz4, raw.len() as u32).is_err());
    }
}
