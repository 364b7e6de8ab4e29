//! Meta URL parsing: the `etcd://` URL parser, the engine dispatch of `open_engine` on
//! the URLs it rejects without opening anything, and `parse_size`.
//!
//! `open_engine` itself opens RocksDB directories and etcd connections, so it is only
//! called here for URLs it must reject before touching disk or network: no `://`, an
//! unknown scheme, a relative or query-carrying `rocksdb://` path, or an `etcd://` URL
//! that `EtcdUrl::parse` rejects. `memory://` is left out (each name creates a store).
#![no_main]

use kiseki_core::meta::kv::etcd::EtcdUrl;
use kiseki_core::meta::kv::{open_engine, KvError};
use kiseki_core::size::parse_size;
use libfuzzer_sys::fuzz_target;

fn check_errno(e: &KvError) {
    let n = e.errno();
    assert!((1..4096).contains(&n), "errno {n} of {e:?}");
}

fn etcd(url: &str) {
    match EtcdUrl::parse(url) {
        Ok(u) => {
            assert!(url.starts_with("etcd://"), "{url:?} parsed as {u:?}");
            assert!(!u.endpoints.is_empty(), "{url:?}: no endpoints");
            assert!(!u.prefix.is_empty(), "{url:?}: empty prefix");
            assert!(!u.prefix.contains('\0'), "{url:?}: NUL in prefix");
            assert!(!u.prefix.ends_with('/'), "{url:?}: prefix {:?}", u.prefix);
            // Printing the parsed URL back and parsing it again gives the same URL.
            let hosts: Vec<&str> = u
                .endpoints
                .iter()
                .map(|e| {
                    e.strip_prefix("http://")
                        .unwrap_or_else(|| panic!("{url:?}: endpoint {e:?}"))
                })
                .collect();
            for h in &hosts {
                let (name, port) = h.rsplit_once(':').expect("endpoint has a port");
                assert!(!name.is_empty(), "{url:?}: endpoint {h:?}");
                assert!(port.parse::<u16>().is_ok_and(|p| p > 0), "{url:?}: {h:?}");
            }
            let again = format!("etcd://{}/{}", hosts.join(","), u.prefix);
            match EtcdUrl::parse(&again) {
                Ok(v) => assert_eq!(v, u, "{url:?} reprinted as {again:?}"),
                Err(e) => panic!("{url:?} reprinted as {again:?} fails: {e}"),
            }
        }
        Err(e) => {
            assert!(matches!(e, KvError::BadUrl(_)), "{url:?}: {e:?}");
            check_errno(&e);
        }
    }
}

/// Whether `open_engine(url)` must fail without opening anything.
fn rejected_without_io(url: &str) -> bool {
    let Some((scheme, rest)) = url.split_once("://") else {
        return true;
    };
    match scheme {
        "rocksdb" => !rest.starts_with('/') || rest.contains(['?', '#']),
        "etcd" => EtcdUrl::parse(url).is_err(),
        "memory" => false,
        _ => true,
    }
}

fn dispatch(url: &str) {
    if !rejected_without_io(url) {
        return;
    }
    for create in [false, true] {
        match open_engine(url, create) {
            Ok(_) => panic!("{url:?} opened an engine"),
            Err(e) => {
                assert!(matches!(e, KvError::BadUrl(_)), "{url:?}: {e:?}");
                check_errno(&e);
            }
        }
    }
}

fn size(s: &str) {
    match parse_size(s) {
        Ok(n) => {
            // The number is the leading digits (after trimming) times a power of 1024.
            let t = s.trim();
            let digits = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
            let base: u64 = t[..digits]
                .parse()
                .expect("accepted sizes start with a number");
            if base != 0 {
                assert_eq!(n % base, 0, "{s:?} = {n}");
                let unit = n / base;
                assert!(
                    unit.is_power_of_two() && unit.trailing_zeros() % 10 == 0,
                    "{s:?}"
                );
            } else {
                assert_eq!(n, 0, "{s:?}");
            }
            assert_eq!(parse_size(&n.to_string()), Ok(n));
        }
        Err(e) => assert!(!e.is_empty()),
    }
}

fuzz_target!(|data: &[u8]| {
    let s = String::from_utf8_lossy(data);
    etcd(&s);
    // Steer a share of inputs into the etcd parser past its scheme check.
    if !s.starts_with("etcd://") {
        etcd(&format!("etcd://{s}"));
    }
    dispatch(&s);
    size(&s);
});
