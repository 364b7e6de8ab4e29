//! Fault injection for tests that drive real processes (a mount daemon, a C or Python
//! program), which cannot be handed a test double.
//!
//! `KISEKI_FAULTS=name=value[,name=value...]` in a process's environment turns seams
//! on; without it every seam is inert and costs one lookup of a cached value. Seams:
//!
//! | name          | value | effect                                                  |
//! |---------------|-------|---------------------------------------------------------|
//! | `slow-close`  | ms    | a client that begins to close waits this long first      |

use std::collections::HashMap;
use std::sync::OnceLock;
use std::time::Duration;

fn faults() -> &'static HashMap<String, String> {
    static FAULTS: OnceLock<HashMap<String, String>> = OnceLock::new();
    FAULTS.get_or_init(|| {
        std::env::var("KISEKI_FAULTS")
            .unwrap_or_default()
            .split(',')
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
            .collect()
    })
}

/// The delay the seam `name` asks for (a value in milliseconds), if it is on.
pub fn delay(name: &str) -> Option<Duration> {
    let ms: u64 = faults().get(name)?.parse().ok()?;
    Some(Duration::from_millis(ms))
}
