//! Generates the C header from the crate's `extern "C"` items into `OUT_DIR`. The
//! committed `include/kiseki.h` must equal it: the `header_is_fresh` test fails
//! otherwise (run it with `KISEKI_BLESS_HEADER=1` to rewrite the committed copy).

fn main() {
    let dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let out = std::env::var("OUT_DIR").expect("cargo sets OUT_DIR");
    println!("cargo:rerun-if-changed=src");
    println!("cargo:rerun-if-changed=cbindgen.toml");
    let config = cbindgen::Config::from_file(format!("{dir}/cbindgen.toml"))
        .expect("kiseki-ffi/cbindgen.toml is readable and valid");
    cbindgen::Builder::new()
        .with_crate(&dir)
        .with_config(config)
        .generate()
        .expect("cbindgen can parse kiseki-ffi")
        .write_to_file(format!("{out}/kiseki.h"));
}
