//! The metadata engine against a reference model, on every engine, and the crash
//! tests that kill a client at random points: namespace operations (`model`, `crash`),
//! file contents (`data_crash`), and etcd's transaction contract and multi-client
//! behaviour (`etcd`). One test binary (each links RocksDB).

mod common;
mod crash;
mod data_crash;
mod etcd;
mod model;
