//! Resolving a chunk's slice records into what a reader sees.
//!
//! Records are applied oldest first into a `RangeMap` keyed by chunk position; a later
//! record overwrites whatever range it covers. The value stored for a range is the slice
//! and the offset *delta* (`off - pos`), so two adjacent ranges of one slice that are
//! contiguous in it coalesce, and any position maps to its slice offset by adding the
//! delta. Positions no record covers, hole records (`id == 0`) and reservations
//! (`RESERVED_ID`) read as zeros.

use std::ops::Range;

use rangemap::RangeMap;

use crate::meta::records::{has_blocks, SliceRecord};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Source {
    id: u64,
    size: u32,
    delta: i64,
}

/// A visible piece of a chunk: `len` bytes at `chunk_pos` come from slice `id` starting
/// at `slice_off` (or are zeros when the slice has no blocks: a hole or a reservation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Piece {
    pub chunk_pos: u64,
    pub len: u64,
    pub id: u64,
    pub size: u32,
    pub slice_off: u64,
}

/// A chunk's records with what they resolve to, built once and then shared: looking up
/// a range costs a search, not a rebuild over every record (a chunk left with
/// thousands of records by random writes is read this way until it is compacted).
pub struct Resolved {
    pub records: Vec<SliceRecord>,
    map: RangeMap<u64, (u64, u32, i64)>,
}

impl Resolved {
    pub fn new(records: Vec<SliceRecord>) -> Self {
        let map = build(&records);
        Resolved { records, map }
    }

    /// The pieces covering `[start, start + len)` in order, gaps included as holes.
    pub fn pieces(&self, start: u64, len: u64) -> Vec<Piece> {
        pieces(&self.map, start, len)
    }
}

pub fn build(recs: &[SliceRecord]) -> RangeMap<u64, (u64, u32, i64)> {
    let mut map = RangeMap::new();
    for r in recs {
        let range: Range<u64> = u64::from(r.pos)..u64::from(r.pos) + u64::from(r.len);
        let src = Source {
            id: r.id,
            size: r.size,
            delta: i64::from(r.off) - i64::from(r.pos),
        };
        map.insert(
            range,
            (
                src.id,
                src.size,
                if has_blocks(src.id) { src.delta } else { 0 },
            ),
        );
    }
    map
}

/// Indices of the records at least one byte of which is still visible. A record outside
/// this set is entirely overwritten by later ones and can be dropped without changing
/// what the chunk shows.
pub fn visible_records(recs: &[SliceRecord]) -> std::collections::HashSet<usize> {
    let mut map: RangeMap<u64, usize> = RangeMap::new();
    for (i, r) in recs.iter().enumerate() {
        map.insert(u64::from(r.pos)..u64::from(r.pos) + u64::from(r.len), i);
    }
    map.iter().map(|(_, &i)| i).collect()
}

/// The pieces covering `[start, start + len)` in order, gaps included as holes.
pub fn visible(recs: &[SliceRecord], start: u64, len: u64) -> Vec<Piece> {
    pieces(&build(recs), start, len)
}

pub fn pieces(map: &RangeMap<u64, (u64, u32, i64)>, start: u64, len: u64) -> Vec<Piece> {
    let end = start + len;
    let mut out = Vec::new();
    let mut cur = start;
    for (range, &(id, size, delta)) in map.overlapping(&(start..end)) {
        let s = range.start.max(start);
        let e = range.end.min(end);
        if s > cur {
            out.push(Piece {
                chunk_pos: cur,
                len: s - cur,
                id: 0,
                size: 0,
                slice_off: 0,
            });
        }
        let slice_off = if has_blocks(id) {
            (s as i64 + delta) as u64
        } else {
            0
        };
        out.push(Piece {
            chunk_pos: s,
            len: e - s,
            id,
            size,
            slice_off,
        });
        cur = e;
    }
    if cur < end {
        out.push(Piece {
            chunk_pos: cur,
            len: end - cur,
            id: 0,
            size: 0,
            slice_off: 0,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(pos: u32, id: u64, off: u32, len: u32) -> SliceRecord {
        SliceRecord {
            pos,
            id,
            size: 1000,
            off,
            len,
        }
    }

    #[test]
    fn later_records_win_and_gaps_are_holes() {
        let recs = [rec(0, 1, 0, 100), rec(50, 2, 10, 20), rec(200, 3, 0, 10)];
        let p = visible(&recs, 0, 220);
        let summary: Vec<(u64, u64, u64, u64)> = p
            .iter()
            .map(|p| (p.chunk_pos, p.len, p.id, p.slice_off))
            .collect();
        assert_eq!(
            summary,
            vec![
                (0, 50, 1, 0),
                (50, 20, 2, 10),
                (70, 30, 1, 70),
                (100, 100, 0, 0),
                (200, 10, 3, 0),
                (210, 10, 0, 0)
            ]
        );
    }

    #[test]
    fn fully_overwritten_records_are_not_visible() {
        let recs = [
            rec(0, 1, 0, 100),
            rec(10, 2, 0, 20),
            rec(0, 3, 0, 100),
            rec(50, 4, 0, 10),
        ];
        let v = visible_records(&recs);
        assert_eq!(v, [2, 3].into_iter().collect());
    }

    #[test]
    fn holes_hide_older_data_and_windows_clip() {
        let recs = [
            rec(0, 1, 0, 100),
            SliceRecord {
                pos: 10,
                id: 0,
                size: 0,
                off: 0,
                len: 90,
            },
        ];
        assert_eq!(
            visible(&recs, 5, 10),
            vec![
                Piece {
                    chunk_pos: 5,
                    len: 5,
                    id: 1,
                    size: 1000,
                    slice_off: 5
                },
                Piece {
                    chunk_pos: 10,
                    len: 5,
                    id: 0,
                    size: 0,
                    slice_off: 0
                },
            ]
        );
    }
}
