//! This client's open-file table: how many handles each inode has open here.
//!
//! An unlinked inode stays alive while it is open (see `ops::remove`). The decision
//! "release now or keep for the open handles" and the registration of a new handle must
//! not interleave, so both run under the stripe lock of the inode (striped to keep
//! unrelated files from contending).

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use super::types::Ino;

const STRIPES: usize = 64;

pub struct OpenFiles {
    stripes: Vec<Mutex<HashMap<Ino, u32>>>,
}

impl Default for OpenFiles {
    fn default() -> Self {
        OpenFiles {
            stripes: (0..STRIPES).map(|_| Mutex::new(HashMap::new())).collect(),
        }
    }
}

impl OpenFiles {
    pub fn lock(&self, ino: Ino) -> MutexGuard<'_, HashMap<Ino, u32>> {
        self.stripes[(ino.0 as usize) % STRIPES]
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }
}
