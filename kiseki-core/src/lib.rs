//! Kiseki: a POSIX filesystem over object storage and a transactional metadata engine.
//!
//! This crate is the whole filesystem; the FUSE mount, the C ABI and the Python package
//! are thin front-ends over it.

pub mod admin;
pub mod data;
pub mod defaults;
pub mod error;
pub mod faults;
pub mod meta;
pub mod metrics;
pub mod runtime;
pub mod size;
pub mod vfs;

pub use error::{Error, ErrorKind, Result};
