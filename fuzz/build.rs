//! RocksDB needs libstdc++. librocksdb-sys links it only when it compiles RocksDB
//! itself; scripts/fuzz.sh instead links the static library the main build already
//! compiled (`ROCKSDB_LIB_DIR`, `ROCKSDB_STATIC`), which saves rebuilding the C++ with
//! the fuzz targets' compiler flags. A link argument comes after every library on the
//! linker line, so `--as-needed` keeps it.
fn main() {
    println!("cargo:rustc-link-arg-bins=-lstdc++");
}
