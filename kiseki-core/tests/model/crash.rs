//! Crash test: a child process applies a deterministic operation sequence to a RocksDB
//! volume, acknowledging each completed operation on stdout, and is killed with SIGKILL
//! at a random point. Reopening must show every acknowledged operation (and at most the
//! one in flight), a tree equal to the model's, and a clean consistency check with
//! exact counters.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::common::{apply, op_from_seed, tree, Model, Op};
use kiseki_core::meta::{FormatOptions, Meta, MetaConfig};
use rand::{Rng, SeedableRng};

const CHILD_ENV: &str = "KISEKI_CRASH_CHILD";
const OPS: usize = 5_000;

fn ops(seed: u64) -> Vec<Op> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    (0..OPS).map(|_| op_from_seed(&mut rng)).collect()
}

/// Runs only inside the child process (the parent re-executes this test binary).
#[test]
#[ignore = "the child of crash tests; run by them with --ignored"]
fn crash_child() {
    let Ok(spec) = std::env::var(CHILD_ENV) else {
        return;
    };
    let (url, seed) = spec.split_once('|').expect("url|seed");
    let meta = Meta::open(url, MetaConfig::default()).expect("child open");
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    for (i, op) in ops(seed.parse().unwrap()).iter().enumerate() {
        let _ = apply(&meta, op);
        writeln!(out, "ACK {i}").unwrap();
        out.flush().unwrap();
    }
    // Wait to be killed: a clean exit would run session cleanup and hide crash states.
    std::thread::sleep(Duration::from_secs(600));
}

#[test]
fn acknowledged_operations_survive_sigkill() {
    let mut rng = rand::thread_rng();
    for round in 0..6 {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("rocksdb://{}/meta", dir.path().display());
        let mut o = FormatOptions::new("crash");
        o.storage = "memory".into();
        Meta::format(&url, &o).unwrap();
        let seed: u64 = rng.gen();
        let kill_after = rng.gen_range(1..2_000);

        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "crash::crash_child",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, format!("{url}|{seed}"))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut acked = 0usize;
        while acked < kill_after {
            match lines.next() {
                Some(Ok(l)) if l.starts_with("ACK ") => {
                    acked = l[4..].parse::<usize>().unwrap() + 1
                }
                Some(Ok(_)) => {}
                _ => break,
            }
        }
        std::thread::sleep(Duration::from_micros(rng.gen_range(0..3000)));
        child.kill().unwrap(); // SIGKILL
        for l in lines.map_while(Result::ok) {
            if let Some(n) = l.strip_prefix("ACK ") {
                acked = n.parse::<usize>().unwrap() + 1;
            }
        }
        child.wait().unwrap();

        let meta = Meta::open(&url, MetaConfig::default()).unwrap();
        let got = tree(&meta);
        let all = ops(seed);
        let mut model = Model::default();
        for op in &all[..acked] {
            let _ = model.apply(op);
        }
        let at_ack = model.tree();
        let matches = if got == at_ack {
            true
        } else if acked < all.len() {
            let _ = model.apply(&all[acked]);
            got == model.tree()
        } else {
            false
        };
        assert!(
            matches,
            "round {round} seed {seed}: after {acked} acknowledged ops the tree differs from the model"
        );
        let report = meta.check().unwrap();
        assert!(
            report.is_clean(),
            "round {round} seed {seed}: {:?}",
            report.problems
        );
        eprintln!("round {round}: killed after {acked} acknowledged operations; state consistent");
    }
}

#[test]
fn model_replay_is_deterministic() {
    assert_eq!(ops(7), ops(7));
    let meta = crate::common::fresh("memory://");
    let mut model = Model::default();
    for op in &ops(7)[..300] {
        assert_eq!(apply(&meta, op), model.apply(op), "{op:?}");
    }
    assert_eq!(tree(&meta), model.tree());
}
