//! The committed header must be what cbindgen generates from this crate now.

#[test]
fn header_is_fresh() {
    let generated = include_str!(concat!(env!("OUT_DIR"), "/kiseki.h"));
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../include/kiseki.h");
    if std::env::var_os("KISEKI_BLESS_HEADER").is_some() {
        std::fs::write(path, generated).expect("write include/kiseki.h");
        return;
    }
    let committed = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        committed == generated,
        "include/kiseki.h is stale: regenerate it with \
         `KISEKI_BLESS_HEADER=1 cargo test --release -p kiseki-ffi header_is_fresh` and commit it"
    );
}
