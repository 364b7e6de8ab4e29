//! The `kiseki._kiseki` Python extension module (built out by its own issue; see README).
