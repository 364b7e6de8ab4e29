//! libkiseki: the C ABI over kiseki-core (built out by its own issue; see README).
