//! The descriptor table of one `kiseki_fs`: small non-negative ints naming open files
//! and directory streams.
//!
//! A descriptor is `generation << SLOT_BITS | slot`. Closing a slot bumps its
//! generation, and freed slots are reused oldest first, so a stale descriptor (closed,
//! or from another table) fails the generation check with EBADF instead of reaching
//! whatever reuses its slot. The first descriptors of a table are 0, 1, 2, ... as in a
//! process; only reused slots give larger numbers.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use kiseki_core::meta::DirEntry;
use kiseki_core::vfs::{Dir, File};

use crate::error::{Fail, Result};

const SLOT_BITS: u32 = 20;
const MAX_SLOTS: usize = 1 << SLOT_BITS;
/// Generations wrap within 11 bits so every descriptor stays a positive `int`.
const GEN_MASK: u32 = (1 << 11) - 1;

/// A directory stream and the entries of its current page not returned yet.
pub(crate) struct DirStream {
    pub dir: Dir,
    pub pending: Mutex<VecDeque<DirEntry>>,
}

#[derive(Clone)]
pub(crate) enum Open {
    File(Arc<File>),
    Dir(Arc<DirStream>),
}

struct Slot {
    generation: u32,
    open: Option<Open>,
}

#[derive(Default)]
struct Slots {
    slots: Vec<Slot>,
    free: VecDeque<usize>,
}

#[derive(Default)]
pub(crate) struct Table {
    inner: Mutex<Slots>,
}

fn bad(fd: i32) -> Fail {
    Fail::new(libc::EBADF, format!("descriptor {fd} is not open"))
}

impl Table {
    fn lock(&self) -> std::sync::MutexGuard<'_, Slots> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn insert(&self, open: Open) -> Result<i32> {
        let mut t = self.lock();
        let slot = match t.free.pop_front() {
            Some(s) => s,
            None if t.slots.len() < MAX_SLOTS => {
                t.slots.push(Slot {
                    generation: 0,
                    open: None,
                });
                t.slots.len() - 1
            }
            None => {
                return Err(Fail::new(
                    libc::EMFILE,
                    format!("{MAX_SLOTS} descriptors are open"),
                ))
            }
        };
        let s = &mut t.slots[slot];
        s.open = Some(open);
        Ok(((s.generation & GEN_MASK) << SLOT_BITS) as i32 | slot as i32)
    }

    fn index(&self, fd: i32) -> Result<(usize, u32)> {
        if fd < 0 {
            return Err(bad(fd));
        }
        let fd = fd as u32;
        Ok(((fd & (MAX_SLOTS as u32 - 1)) as usize, fd >> SLOT_BITS))
    }

    pub fn get(&self, fd: i32) -> Result<Open> {
        let (slot, generation) = self.index(fd)?;
        let t = self.lock();
        match t.slots.get(slot) {
            Some(Slot {
                generation: g,
                open: Some(o),
            }) if g & GEN_MASK == generation => Ok(o.clone()),
            _ => Err(bad(fd)),
        }
    }

    pub fn file(&self, fd: i32) -> Result<Arc<File>> {
        match self.get(fd)? {
            Open::File(f) => Ok(f),
            Open::Dir(_) => Err(Fail::new(
                libc::EISDIR,
                format!("descriptor {fd} is a directory stream"),
            )),
        }
    }

    pub fn dir(&self, fd: i32) -> Result<Arc<DirStream>> {
        match self.get(fd)? {
            Open::Dir(d) => Ok(d),
            // As readdir(3) and closedir(3) say for anything but a directory stream.
            Open::File(_) => Err(Fail::new(
                libc::EBADF,
                format!("descriptor {fd} is not a directory stream"),
            )),
        }
    }

    /// Removes `fd`; the caller closes what it named.
    pub fn remove(&self, fd: i32) -> Result<Open> {
        let (slot, generation) = self.index(fd)?;
        let mut t = self.lock();
        let open = match t.slots.get_mut(slot) {
            Some(s) if s.generation & GEN_MASK == generation && s.open.is_some() => {
                s.generation = s.generation.wrapping_add(1);
                s.open.take()
            }
            _ => None,
        };
        let open = open.ok_or_else(|| bad(fd))?;
        t.free.push_back(slot);
        Ok(open)
    }

    /// Everything still open (for disconnect).
    pub fn drain(&self) -> Vec<Open> {
        let mut t = self.lock();
        let mut out = Vec::new();
        let mut freed = Vec::new();
        for (i, s) in t.slots.iter_mut().enumerate() {
            if let Some(o) = s.open.take() {
                s.generation = s.generation.wrapping_add(1);
                out.push(o);
                freed.push(i);
            }
        }
        t.free.extend(freed);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiseki_core::meta::FormatOptions;
    use kiseki_core::vfs::{Client, ClientOptions};

    fn client() -> Client {
        let url = "memory://ffi-table";
        let mut o = FormatOptions::new("table");
        o.storage = "memory".into();
        Client::format(url, &o).unwrap();
        Client::connect(Some(url), &ClientOptions::default()).unwrap()
    }

    fn open(c: &Client, name: &str) -> Open {
        let f = c.open(name, libc::O_RDWR | libc::O_CREAT, 0o644).unwrap();
        Open::File(Arc::new(f))
    }

    #[test]
    fn stale_descriptors_fail_the_generation_check() {
        let c = client();
        let t = Table::default();
        let a = t.insert(open(&c, "/a")).unwrap();
        let b = t.insert(open(&c, "/b")).unwrap();
        assert_eq!((a, b), (0, 1), "fresh tables hand out small descriptors");
        t.remove(a).unwrap();
        assert_eq!(t.get(a).err().map(|f| f.errno), Some(libc::EBADF));
        assert_eq!(t.remove(a).err().map(|f| f.errno), Some(libc::EBADF));
        // The freed slot is reused under a new generation: the old number stays dead.
        let a2 = t.insert(open(&c, "/c")).unwrap();
        assert_eq!(a2 & ((1 << SLOT_BITS) - 1), 0);
        assert_ne!(a2, a);
        assert!(a2 > 0);
        assert_eq!(t.get(a).err().map(|f| f.errno), Some(libc::EBADF));
        assert!(t.get(a2).is_ok());
        for fd in [-1, i32::MIN, 5, 1 << SLOT_BITS | 1] {
            assert_eq!(t.get(fd).err().map(|f| f.errno), Some(libc::EBADF), "{fd}");
        }
        assert_eq!(t.dir(b).err().map(|f| f.errno), Some(libc::EBADF));
        assert_eq!(t.drain().len(), 2);
        assert!(t.get(b).is_err());
    }
}
