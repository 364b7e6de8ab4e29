//! Model-based test of file contents: random writes through several handles, truncates,
//! fallocate and copy_file_range across block (64 KiB here) and chunk (64 MiB)
//! boundaries, compared byte for byte with an in-memory model after every step,
//! including after forced flushes and after reconnecting the client.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

use kiseki_core::meta::{FormatOptions, CHUNK_SIZE};
use kiseki_core::vfs::{Client, ClientOptions, File};
use proptest::prelude::*;

const PAGE: u64 = 64 << 10;
const HANDLES: usize = 3;
/// Places where boundaries are: file start, a block edge, the first and second chunk edge.
const BASES: [u64; 4] = [0, PAGE - 700, CHUNK_SIZE - 1000, 2 * CHUNK_SIZE - 300];

#[derive(Debug, Clone)]
enum Op {
    Write {
        h: usize,
        off: u64,
        len: u64,
        seed: u8,
    },
    Truncate(u64),
    Punch {
        off: u64,
        len: u64,
    },
    ZeroRange {
        off: u64,
        len: u64,
    },
    Copy {
        src: u64,
        dst: u64,
        len: u64,
    },
    Flush(usize),
    Compact,
    Reopen,
}

fn offset() -> impl Strategy<Value = u64> {
    (prop::sample::select(BASES.to_vec()), 0u64..200_000).prop_map(|(b, d)| b + d)
}

/// Operations on a small file around the inline size (64 KiB, the default, here one
/// block), so that it crosses the limit both ways: grows past it (its inline slices
/// move to blocks), is truncated under it, is compacted back inline.
fn small_op() -> impl Strategy<Value = Op> {
    let off = || 0u64..90_000;
    prop_oneof![
        8 => (0..HANDLES, off(), 1u64..40_000, any::<u8>()).prop_map(|(h, off, len, seed)| Op::Write { h, off, len, seed }),
        3 => (0u64..70_000).prop_map(Op::Truncate),
        1 => (off(), 1u64..30_000).prop_map(|(off, len)| Op::Punch { off, len }),
        1 => (off(), off(), 1u64..30_000).prop_map(|(src, dst, len)| Op::Copy { src, dst, len }),
        2 => (0..HANDLES).prop_map(Op::Flush),
        2 => Just(Op::Compact),
        1 => Just(Op::Reopen),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => (0..HANDLES, offset(), 1u64..150_000, any::<u8>()).prop_map(|(h, off, len, seed)| Op::Write { h, off, len, seed }),
        2 => offset().prop_map(Op::Truncate),
        1 => (offset(), 1u64..100_000).prop_map(|(off, len)| Op::Punch { off, len }),
        1 => (offset(), 1u64..100_000).prop_map(|(off, len)| Op::ZeroRange { off, len }),
        2 => (offset(), offset(), 1u64..150_000).prop_map(|(src, dst, len)| Op::Copy { src, dst, len }),
        1 => (0..HANDLES).prop_map(Op::Flush),
        1 => Just(Op::Compact),
        1 => Just(Op::Reopen),
    ]
}

fn pattern(seed: u8, off: u64, len: u64) -> Vec<u8> {
    (0..len)
        .map(|i| seed.wrapping_add(((off + i) % 251) as u8) | 1)
        .collect()
}

/// Sparse model file: 64 KiB pages, absent pages are zeros.
#[derive(Default)]
struct Model {
    pages: BTreeMap<u64, Vec<u8>>,
    len: u64,
}

impl Model {
    fn set(&mut self, off: u64, data: &[u8]) {
        let mut done = 0;
        while done < data.len() {
            let at = off + done as u64;
            let in_page = (at % PAGE) as usize;
            let n = (PAGE as usize - in_page).min(data.len() - done);
            let page = self
                .pages
                .entry(at / PAGE)
                .or_insert_with(|| vec![0; PAGE as usize]);
            page[in_page..in_page + n].copy_from_slice(&data[done..done + n]);
            done += n;
        }
    }
    fn zero(&mut self, off: u64, len: u64) {
        self.set(off, &vec![0; len as usize]);
    }
    fn get(&self, off: u64, len: u64) -> Vec<u8> {
        let end = (off + len).min(self.len).max(off);
        let mut out = vec![0u8; (end - off) as usize];
        let mut done = 0;
        while done < out.len() {
            let at = off + done as u64;
            let in_page = (at % PAGE) as usize;
            let n = (PAGE as usize - in_page).min(out.len() - done);
            if let Some(p) = self.pages.get(&(at / PAGE)) {
                out[done..done + n].copy_from_slice(&p[in_page..in_page + n]);
            }
            done += n;
        }
        out
    }
    fn truncate(&mut self, n: u64) {
        if n < self.len {
            self.zero(n, self.len - n);
        }
        self.len = n;
    }
}

static VOLUMES: AtomicU64 = AtomicU64::new(0);

struct Harness {
    url: String,
    client: Option<Client>,
    files: Vec<File>,
}

impl Harness {
    fn new() -> Self {
        let url = format!(
            "memory://data-model-{}",
            VOLUMES.fetch_add(1, Ordering::SeqCst)
        );
        let mut o = FormatOptions::new("dm");
        o.storage = "memory".into();
        o.block_size = PAGE as u32;
        Client::format(&url, &o).unwrap();
        let mut h = Harness {
            url,
            client: None,
            files: Vec::new(),
        };
        h.connect();
        h
    }

    fn connect(&mut self) {
        let mut opts = ClientOptions::default();
        // A small pool makes back-pressure and background commits part of the test.
        opts.data.buffer_memory = 2 << 20;
        opts.data.cache_memory = 8 << 20;
        let c = Client::connect(Some(&self.url), &opts).unwrap();
        self.files = (0..HANDLES)
            .map(|_| c.open("/f", libc::O_RDWR | libc::O_CREAT, 0o644).unwrap())
            .collect();
        self.client = Some(c);
    }

    fn reopen(&mut self) {
        for f in self.files.drain(..) {
            f.close().unwrap();
        }
        self.client.take().unwrap().close().unwrap();
        self.connect();
    }

    fn check(&self, m: &Model, step: usize, op: &Op) -> Result<(), TestCaseError> {
        let st = self.files[0].fstat().unwrap();
        prop_assert_eq!(
            st.attr.length,
            m.len,
            "length after step {}: {:?}",
            step,
            op
        );
        for base in BASES {
            let from = base.saturating_sub(300_000);
            let len = 700_000;
            let mut buf = vec![0xEE; len as usize];
            let n = self.files[step % HANDLES].pread(&mut buf, from).unwrap();
            let want = m.get(from, len);
            prop_assert_eq!(
                n,
                want.len(),
                "read size at {} after step {}: {:?}",
                from,
                step,
                op
            );
            if buf[..n] != want[..] {
                let first = buf.iter().zip(&want).position(|(a, b)| a != b).unwrap();
                prop_assert!(
                    false,
                    "byte {} differs after step {}: {:?}",
                    from + first as u64,
                    step,
                    op
                );
            }
        }
        Ok(())
    }
}

fn run(ops: Vec<Op>) -> Result<(), TestCaseError> {
    let mut h = Harness::new();
    let mut m = Model::default();
    for (step, op) in ops.iter().enumerate() {
        match *op {
            Op::Write {
                h: i,
                off,
                len,
                seed,
            } => {
                let data = pattern(seed, off, len);
                prop_assert_eq!(h.files[i].pwrite(&data, off).unwrap(), len as usize);
                m.set(off, &data);
                m.len = m.len.max(off + len);
            }
            Op::Truncate(n) => {
                h.files[step % HANDLES].ftruncate(n).unwrap();
                m.truncate(n);
            }
            Op::Punch { off, len } => {
                h.files[0]
                    .fallocate(
                        libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
                        off,
                        len,
                    )
                    .unwrap();
                if off < m.len {
                    m.zero(off, len.min(m.len - off));
                }
            }
            Op::ZeroRange { off, len } => {
                h.files[0]
                    .fallocate(libc::FALLOC_FL_ZERO_RANGE, off, len)
                    .unwrap();
                m.zero(off, len);
                m.len = m.len.max(off + len);
            }
            Op::Copy { src, dst, len } => {
                let n = len.min(m.len.saturating_sub(src));
                let r = h.files[1].copy_range_to(src, &h.files[2], dst, len);
                if n > 0 && src < dst + n && dst < src + n {
                    prop_assert_eq!(r.map_err(|e| e.errno()), Err(libc::EINVAL));
                } else {
                    prop_assert_eq!(r.unwrap(), n);
                    let data = m.get(src, n);
                    m.set(dst, &data);
                    if n > 0 {
                        m.len = m.len.max(dst + n);
                    }
                }
            }
            Op::Flush(i) => h.files[i].fsync().unwrap(),
            Op::Compact => {
                let fs = h.client.as_ref().unwrap().fs().unwrap();
                let ino = h.files[0].ino();
                kiseki_core::runtime::block_on(async {
                    fs.data().flush(ino, false).await?;
                    kiseki_core::data::compact::compact_file(fs.data(), ino).await
                })
                .unwrap();
            }
            Op::Reopen => h.reopen(),
        }
        h.check(&m, step, op)?;
    }
    h.reopen();
    h.check(&m, ops.len(), &Op::Reopen)?;
    // Data bytes, counters and records agree (fsck), and st_blocks counts data only.
    let client = h.client.as_ref().unwrap();
    let report = client.fs().unwrap().meta().check().unwrap();
    prop_assert!(report.is_clean(), "fsck: {:?}", report.problems);
    // Non-zero bytes in the (merged) windows the test writes to: all of them are data.
    let mut windows: Vec<(u64, u64)> = BASES
        .iter()
        .map(|&b| (b.saturating_sub(300_000), b + 400_000))
        .collect();
    windows.sort();
    let mut merged: Vec<(u64, u64)> = Vec::new();
    for (a, b) in windows {
        match merged.last_mut() {
            Some(last) if a <= last.1 => last.1 = last.1.max(b),
            _ => merged.push((a, b)),
        }
    }
    let data_bytes: u64 = merged
        .iter()
        .map(|&(a, b)| m.get(a, b - a).iter().filter(|&&x| x != 0).count() as u64)
        .sum();
    let blocks = h.files[0].fstat().unwrap().attr.blocks();
    prop_assert!(
        blocks * 512 >= data_bytes,
        "st_blocks {} below {} nonzero bytes",
        blocks,
        data_bytes
    );
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn contents_match_the_model(ops in prop::collection::vec(op(), 1..25)) {
        run(ops)?;
    }

    #[test]
    fn small_files_cross_the_inline_limit_both_ways(ops in prop::collection::vec(small_op(), 1..30)) {
        run(ops)?;
    }
}

/// How many of the slices a file's first chunk shows are inline, and how many are
/// block slices.
fn slice_kinds(c: &Client, f: &File) -> (usize, usize) {
    use kiseki_core::meta::records::{has_blocks, is_inline};
    let recs = c.fs().unwrap().meta().read_chunk(f.ino(), 0).unwrap();
    let shown = kiseki_core::meta::overlay::visible(&recs, 0, CHUNK_SIZE);
    let data: Vec<_> = shown.iter().filter(|p| has_blocks(p.id)).collect();
    let inline = data.iter().filter(|p| is_inline(p.id)).count();
    (inline, data.len() - inline)
}

#[test]
fn a_file_moves_between_inline_and_blocks_as_it_crosses_the_limit() {
    let h = Harness::new();
    let c = h.client.as_ref().unwrap();
    let f = &h.files[0];
    let fs = c.fs().unwrap();
    let compact = || {
        kiseki_core::runtime::block_on(kiseki_core::data::compact::compact_file(fs.data(), f.ino()))
            .unwrap()
    };
    let read_all = |want: &[u8]| {
        let mut buf = vec![0u8; want.len() + 10];
        let n = f.pread(&mut buf, 0).unwrap();
        assert_eq!(&buf[..n], want);
    };
    let mut model = pattern(1, 0, 1000);
    f.pwrite(&model, 0).unwrap();
    f.fsync().unwrap();
    assert_eq!(slice_kinds(c, f), (1, 0), "a 1000-byte file is inline");
    assert_eq!(fs.meta().statfs().unwrap().inline_space, 1000);
    let objects = kiseki_core::runtime::block_on(fs.data().check_objects(false)).unwrap();
    assert_eq!(objects.blocks, 0, "no object for an inline file");
    read_all(&model);

    // Past the limit: its data moves to blocks (the commit schedules the compaction
    // that does it; here it is run at once).
    let more = pattern(2, 1000, 100_000);
    f.pwrite(&more, 1000).unwrap();
    f.fsync().unwrap();
    model.extend_from_slice(&more);
    compact();
    assert_eq!(
        slice_kinds(c, f),
        (0, 1),
        "a 101,000-byte file is one block slice"
    );
    read_all(&model);

    // Truncated under it and compacted: inline again.
    f.ftruncate(3000).unwrap();
    model.truncate(3000);
    compact();
    assert_eq!(
        slice_kinds(c, f),
        (1, 0),
        "a 3000-byte file compacts inline"
    );
    read_all(&model);
    let report = fs.meta().check().unwrap();
    assert!(report.is_clean(), "fsck: {:?}", report.problems);
}

#[test]
fn many_small_writes_compact_automatically_and_read_the_same() {
    let mut h = Harness::new();
    let mut m = Model::default();
    let mut ops = Vec::new();
    for i in 0..300u64 {
        let off = (i * 7919) % 500_000;
        let op = Op::Write {
            h: (i % 3) as usize,
            off,
            len: 3000,
            seed: i as u8,
        };
        let data = pattern(i as u8, off, 3000);
        h.files[(i % 3) as usize].pwrite(&data, off).unwrap();
        h.files[0].fsync().unwrap();
        m.set(off, &data);
        m.len = m.len.max(off + 3000);
        ops.push(op);
    }
    let ino = h.files[0].ino();
    let fs = h.client.as_ref().unwrap().fs().unwrap();
    // Compaction runs in the background after commits; wait until it settled.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while fs.meta().read_chunk(ino, 0).unwrap().len()
        > kiseki_core::data::compact::COMPACT_THRESHOLD
    {
        assert!(
            std::time::Instant::now() < deadline,
            "chunk was not compacted"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    drop(fs);
    h.check(&m, 0, &ops[0]).unwrap();
    let data = h.client.as_ref().unwrap().fs().unwrap().data().clone();
    assert_eq!(
        data.pool.free_pages(),
        data.pool.total_pages(),
        "every page is back in the pool"
    );
    h.reopen();
    h.check(&m, 1, &ops[0]).unwrap();
}

#[test]
fn write_read_back_across_chunk_edge() {
    run(vec![
        Op::Write {
            h: 0,
            off: CHUNK_SIZE - 10,
            len: 20,
            seed: 3,
        },
        Op::Write {
            h: 1,
            off: CHUNK_SIZE - 5,
            len: 3,
            seed: 9,
        },
        Op::Flush(0),
        Op::Truncate(CHUNK_SIZE - 7),
        Op::Write {
            h: 2,
            off: CHUNK_SIZE + 10,
            len: 5,
            seed: 1,
        },
        Op::Reopen,
    ])
    .unwrap();
}

#[test]
fn a_read_compacts_a_chunk_left_fragmented() {
    // copy_file_range commits records without the writer, so nothing compacts them
    // until a read of the chunk finds the list too long.
    let h = Harness::new();
    let c = h.client.as_ref().unwrap();
    let open = |name: &str| c.open(name, libc::O_RDWR | libc::O_CREAT, 0o644).unwrap();
    let (src, dst) = (&open("/src"), &open("/dst"));
    let data = pattern(5, 0, 1 << 20);
    src.pwrite(&data, 0).unwrap();
    src.fsync().unwrap();
    for i in 0..150u64 {
        assert_eq!(
            src.copy_range_to(i * 4096, dst, i * 4096, 4096).unwrap(),
            4096
        );
    }
    let fs = c.fs().unwrap();
    let records = || fs.meta().read_chunk(dst.ino(), 0).unwrap().len();
    assert!(records() > kiseki_core::data::compact::COMPACT_THRESHOLD);
    let mut buf = vec![0u8; 150 * 4096];
    assert_eq!(dst.pread(&mut buf, 0).unwrap(), buf.len());
    assert!(buf[..] == data[..buf.len()]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while records() > kiseki_core::data::compact::COMPACT_THRESHOLD {
        assert!(
            std::time::Instant::now() < deadline,
            "the read did not compact the chunk: {} records",
            records()
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_eq!(dst.pread(&mut buf, 0).unwrap(), buf.len());
    assert!(buf[..] == data[..buf.len()]);
}
