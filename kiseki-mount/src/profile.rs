//! `kiseki profile MOUNTPOINT|LOGFILE`: the operations that take the most total time,
//! from a mount's access log read live (a table per interval) or from a saved log.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::mount::BoxError;

/// Per operation: calls, total seconds, failures.
type Profile = HashMap<String, (u64, f64, u64)>;

/// Adds one access-log line (`time [caller] op (args): result <seconds>`).
fn add(p: &mut Profile, line: &str) {
    if line.starts_with('#') {
        return;
    }
    let Some((_, rest)) = line.split_once("] ") else {
        return;
    };
    let Some(op) = rest.split(' ').next() else {
        return;
    };
    let Some(secs) = rest
        .rsplit_once('<')
        .and_then(|(_, t)| t.trim_end().strip_suffix('>'))
        .and_then(|t| t.parse::<f64>().ok())
    else {
        return;
    };
    let failed = !rest.contains("): OK <");
    let e = p.entry(op.to_string()).or_default();
    e.0 += 1;
    e.1 += secs;
    e.2 += u64::from(failed);
}

fn table(p: &Profile) -> String {
    let mut rows: Vec<(&String, &(u64, f64, u64))> = p.iter().collect();
    rows.sort_by(|a, b| b.1 .1.total_cmp(&a.1 .1).then_with(|| a.0.cmp(b.0)));
    let all: f64 = rows.iter().map(|r| r.1 .1).sum();
    let mut out = format!(
        "{:<16} {:>10} {:>8} {:>12} {:>10} {:>6}\n",
        "operation", "calls", "failed", "total ms", "avg us", "time%"
    );
    for (op, &(n, secs, failed)) in rows {
        out += &format!(
            "{op:<16} {n:>10} {failed:>8} {:>12.1} {:>10.1} {:>6.1}\n",
            secs * 1e3,
            secs * 1e6 / n.max(1) as f64,
            if all > 0.0 { secs * 100.0 / all } else { 0.0 }
        );
    }
    out
}

pub fn profile(path: &Path, interval: f64, count: u64) -> Result<ExitCode, BoxError> {
    let meta = std::fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if !meta.is_dir() {
        // A saved log: one table.
        let f = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let mut p = Profile::new();
        for line in BufReader::new(f).lines() {
            add(&mut p, &line?);
        }
        print!("{}", table(&p));
        return Ok(ExitCode::SUCCESS);
    }
    if !(interval.is_finite() && (0.1..=3600.0).contains(&interval)) {
        return Err(format!("--interval {interval}: seconds, 0.1 to 3600").into());
    }
    let log = path.join(".accesslog");
    let f = std::fs::File::open(&log).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            format!(
                "{}: not a kiseki mount point (no .accesslog)",
                path.display()
            )
        } else {
            format!("{}: {e}", log.display())
        }
    })?;
    let p = Arc::new(Mutex::new(Profile::new()));
    {
        let p = p.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(f).lines() {
                let Ok(line) = line else { break };
                add(&mut p.lock().unwrap_or_else(|e| e.into_inner()), &line);
            }
        });
    }
    let mut shown = 0;
    while count == 0 || shown < count {
        std::thread::sleep(Duration::from_secs_f64(interval));
        let t = table(&p.lock().unwrap_or_else(|e| e.into_inner()));
        if count == 0 {
            // Live: redraw in place on a terminal.
            print!("\x1b[2J\x1b[H");
        }
        println!("{}", t);
        shown += 1;
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_add_up_per_operation() {
        let mut p = Profile::new();
        add(&mut p, "2026.12.02 09:45:19.341687 [uid:0,gid:0,pid:1] lookup (1,f): No such file or directory (os error 2) <0.000114>");
        add(
            &mut p,
            "2026.12.02 09:45:19.342522 [uid:0,gid:0,pid:1] write (fh=2,0,6): OK <0.000100>",
        );
        add(
            &mut p,
            "2026.12.02 09:45:19.342522 [uid:0,gid:0,pid:1] write (fh=2,6,6): OK <0.000300>",
        );
        add(&mut p, "#");
        add(&mut p, "garbage");
        assert_eq!(p["lookup"], (1, 0.000114, 1));
        let w = p["write"];
        assert_eq!((w.0, w.2), (2, 0));
        assert!((w.1 - 0.0004).abs() < 1e-9);
        let t = table(&p);
        let lines: Vec<&str> = t.lines().collect();
        assert!(lines[1].starts_with("write"), "most total time first:\n{t}");
    }
}
