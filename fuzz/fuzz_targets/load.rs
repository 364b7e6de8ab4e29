//! `kiseki load`'s readers (Kiseki's JSON lines and JuiceFS's nested dump, told apart by
//! the first key): any input is loaded or refused with an errno, never a panic or a
//! blown stack, and whatever loads can be checked by fsck and dumped again.
//!
//! Input: the dump file's bytes.
#![no_main]

use kiseki_core::meta::kv::memory::MemoryKv;
use kiseki_core::meta::kv::KvEngine;
use kiseki_core::meta::{dump, Meta, MetaConfig};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let kv = MemoryKv::new();
    let mut input = data;
    match dump::load(&*kv, &mut input, &mut |_| {}) {
        Ok(_) => {
            let kv: std::sync::Arc<dyn KvEngine> = kv;
            let mut out = Vec::new();
            if let Ok(meta) = Meta::with_engine(kv.clone(), MetaConfig::default()) {
                let _ = meta.check();
                let _ = meta.dump(&mut out, false, &mut |_| {});
            }
        }
        Err(e) => {
            let n = e.errno();
            assert!((1..4096).contains(&n), "errno {n} of {e:?}");
        }
    }
});
