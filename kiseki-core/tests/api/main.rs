//! The path-level client and the data path through it, in one test binary (each test
//! binary links RocksDB, which is slow on two cores): block checksums and compression
//! (`checksums`), open flags and positions (`client`), clone by metadata (`clone`), dump and load (`dump`), commits in the background and
//! in groups (`commits`), POSIX rules as another caller (`posix_client`), file contents
//! against a model (`data_model`), the order of block syncs and durable commits
//! (`durability`), the metadata requests reads cost (`reads`), fsck --repair on
//! damaged volumes (`repair`), each object store
//! (`storage`), the trash (`trash`), upload bounds and packed small writes (`uploads`),
//! write-back staging (`writeback`), and a seeded simulation under injected faults
//! (`simulation`).

mod checksums;
mod client;
mod clone;
mod commits;
mod data_model;
mod dump;
mod durability;
mod posix_client;
mod reads;
mod repair;
mod simulation;
mod storage;
mod trash;
mod uploads;
mod writeback;
