//! Option strings: `ClientOptions::parse` (the C/Python `connect` options and the
//! mount's `-o` options) and `FormatOptions::parse` followed by `format::validate`.
//!
//! Input: `name \n format-options \n client-options`; with fewer lines the whole input
//! is each of them.
#![no_main]

use kiseki_core::meta::format::{validate, MAX_BLOCK_SIZE, MIN_BLOCK_SIZE};
use kiseki_core::meta::FormatOptions;
use kiseki_core::vfs::ClientOptions;
use libfuzzer_sys::fuzz_target;

fn check_err(what: &str, input: &str, e: &kiseki_core::Error) {
    let n = e.errno();
    assert!(
        (1..4096).contains(&n),
        "{what} {input:?}: errno {n} of {e:?}"
    );
}

fn client(s: &str) {
    match ClientOptions::parse(s) {
        Ok(o) => {
            if let Some(m) = o.caller.umask {
                assert!(m <= 0o777, "{s:?}: umask {m:o}");
            }
            if let Some(t) = o.session_ttl {
                assert!((1..=86_400).contains(&t.as_secs()), "{s:?}: ttl {t:?}");
            }
            // Applying the items one by one gives the same result.
            let mut one = ClientOptions::default();
            for item in s.split(',').map(str::trim).filter(|i| !i.is_empty()) {
                one.apply(item)
                    .unwrap_or_else(|e| panic!("{s:?}: item {item:?}: {e}"));
            }
            assert_eq!(format!("{one:?}"), format!("{o:?}"), "{s:?}");
        }
        Err(e) => check_err("client options", s, &e),
    }
}

fn format(name: &str, options: &str) {
    let o = match FormatOptions::parse(name, options) {
        Ok(o) => o,
        Err(e) => return check_err("format options", options, &e),
    };
    assert_eq!(o.name, name);
    match validate(&o) {
        Ok(f) => {
            assert_eq!(f.name, name);
            assert!(f.block_size.is_power_of_two(), "{options:?}");
            assert!((MIN_BLOCK_SIZE..=MAX_BLOCK_SIZE).contains(&f.block_size));
            assert!(matches!(f.storage.as_str(), "fs" | "s3" | "memory"));
            assert!(matches!(f.compression.as_str(), "none" | "lz4" | "zstd"));
            assert!(f.storage == "memory" || !f.bucket.is_empty());
            // What validation accepts is a format record that reads back as itself.
            let enc = kiseki_core::meta::records::encode_format(&f);
            assert_eq!(
                kiseki_core::meta::records::decode_format(&enc).ok(),
                Some(f)
            );
        }
        Err(e) => check_err("validate", options, &e),
    }
}

fuzz_target!(|data: &[u8]| {
    let s = String::from_utf8_lossy(data);
    let mut parts = s.splitn(3, '\n');
    match (parts.next(), parts.next(), parts.next()) {
        (Some(name), Some(fmt), Some(cli)) => {
            format(name, fmt);
            client(cli);
        }
        _ => {
            format(&s, &s);
            format("fuzz", &s);
            client(&s);
        }
    }
});
