//! A real 3-member etcd cluster on loopback ports for tests (Debian's `etcd-server`).
//!
//! Each cluster lives in its own temporary directory with its own ports and is killed
//! when dropped. The members are started from one long-lived thread with
//! `PR_SET_PDEATHSIG`, so they also die with the test process if it is killed or a
//! static cluster is never dropped. Without `etcd` installed the tests that need it
//! skip, unless `KISEKI_REQUIRE_ETCD=1` (set by the test command) makes that a failure.

use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

pub struct Member {
    pub name: String,
    pub client_port: u16,
    pub peer_port: u16,
    child: Option<Child>,
}

pub struct EtcdCluster {
    /// Removed when the cluster is dropped (and, for the shared cluster that never is,
    /// by the next test process: see [`shared`]).
    pub dir: PathBuf,
    pub members: Vec<Member>,
    initial: String,
}

/// Whether etcd is installed; panics when it must be and is not.
pub fn etcd_available() -> bool {
    let ok = Command::new("etcd")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok && std::env::var_os("KISEKI_REQUIRE_ETCD").is_some() {
        panic!("KISEKI_REQUIRE_ETCD is set but `etcd` is not installed (apt-get install etcd-server etcd-client)");
    }
    if !ok {
        eprintln!("skipping: etcd is not installed");
    }
    ok
}

type Spawn = (Command, mpsc::Sender<std::io::Result<Child>>);

/// Spawns children from a thread that lives as long as the process, so that the
/// parent-death signal fires only when the whole test process ends.
fn spawn(cmd: Command) -> std::io::Result<Child> {
    static SPAWNER: OnceLock<Mutex<mpsc::Sender<Spawn>>> = OnceLock::new();
    let sender = SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<Spawn>();
        std::thread::spawn(move || {
            for (mut cmd, reply) in rx {
                // SAFETY: prctl is async-signal-safe.
                unsafe {
                    cmd.pre_exec(|| {
                        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                        Ok(())
                    });
                }
                let _ = reply.send(cmd.spawn());
            }
        });
        Mutex::new(tx)
    });
    let (tx, rx) = mpsc::channel();
    sender
        .lock()
        .unwrap()
        .send((cmd, tx))
        .expect("spawner thread");
    rx.recv().expect("spawner reply")
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

impl EtcdCluster {
    /// Starts a cluster of `n` members and waits until it serves writes.
    pub fn start(n: usize) -> EtcdCluster {
        let dir = tempfile::Builder::new()
            .prefix("kiseki-etcd-")
            .tempdir()
            .expect("tempdir")
            .keep();
        Self::start_in(dir, n)
    }

    fn start_in(dir: PathBuf, n: usize) -> EtcdCluster {
        let members: Vec<Member> = (0..n)
            .map(|i| Member {
                name: format!("e{i}"),
                client_port: free_port(),
                peer_port: free_port(),
                child: None,
            })
            .collect();
        let initial = members
            .iter()
            .map(|m| format!("{}=http://127.0.0.1:{}", m.name, m.peer_port))
            .collect::<Vec<_>>()
            .join(",");
        let mut cluster = EtcdCluster {
            dir,
            members,
            initial,
        };
        for i in 0..n {
            cluster.launch(i);
        }
        cluster.wait_healthy(Duration::from_secs(30));
        cluster
    }

    fn launch(&mut self, i: usize) {
        let m = &self.members[i];
        let data: PathBuf = self.dir.join(&m.name);
        let log =
            std::fs::File::create(self.dir.join(format!("{}.log", m.name))).expect("log file");
        let client = format!("http://127.0.0.1:{}", m.client_port);
        let peer = format!("http://127.0.0.1:{}", m.peer_port);
        let mut cmd = Command::new("etcd");
        cmd.args(["--name", &m.name])
            .arg("--data-dir")
            .arg(&data)
            .args(["--listen-client-urls", &client])
            .args(["--advertise-client-urls", &client])
            .args(["--listen-peer-urls", &peer])
            .args(["--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &self.initial])
            .args(["--initial-cluster-token", "kiseki-test"])
            .args(["--initial-cluster-state", "new"])
            // Fast elections keep the leader-failure tests short.
            .args(["--heartbeat-interval", "50", "--election-timeout", "500"])
            .args(["--auto-compaction-mode", "revision"])
            .args(["--auto-compaction-retention", "10000"])
            .stdout(Stdio::null())
            .stderr(log);
        let child = spawn(cmd).expect("start etcd");
        self.members[i].child = Some(child);
    }

    /// `host:port,...` of every member.
    pub fn endpoints(&self) -> String {
        self.members
            .iter()
            .map(|m| format!("127.0.0.1:{}", m.client_port))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// A meta URL for a volume under `prefix` in this cluster.
    pub fn url(&self, prefix: &str) -> String {
        format!("etcd://{}/{prefix}", self.endpoints())
    }

    fn etcdctl(&self, endpoints: &str, args: &[&str]) -> Option<String> {
        let out = Command::new("etcdctl")
            .env("ETCDCTL_API", "3")
            .args([
                "--endpoints",
                endpoints,
                "--command-timeout=2s",
                "--dial-timeout=1s",
            ])
            .args(args)
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }

    fn live_endpoints(&self) -> String {
        self.members
            .iter()
            .filter(|m| m.child.is_some())
            .map(|m| format!("127.0.0.1:{}", m.client_port))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Waits until a write through the live members succeeds.
    pub fn wait_healthy(&self, timeout: Duration) {
        let start = Instant::now();
        loop {
            if self
                .etcdctl(&self.live_endpoints(), &["put", "kiseki-test-probe", "1"])
                .is_some()
            {
                return;
            }
            if start.elapsed() > timeout {
                let logs: String = self
                    .members
                    .iter()
                    .map(|m| {
                        std::fs::read_to_string(self.dir.join(format!("{}.log", m.name)))
                            .unwrap_or_default()
                    })
                    .collect();
                panic!("etcd cluster not healthy after {timeout:?}:\n{logs}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The index of the current leader.
    pub fn leader(&self) -> usize {
        let start = Instant::now();
        loop {
            for (i, m) in self.members.iter().enumerate() {
                if m.child.is_none() {
                    continue;
                }
                let ep = format!("127.0.0.1:{}", m.client_port);
                if let Some(json) = self.etcdctl(&ep, &["endpoint", "status", "-w", "json"]) {
                    // The ids are uint64: compare them as text, not as JSON numbers.
                    let field = |name: &str| {
                        json.split(&format!("\"{name}\":")).nth(1).map(|s| {
                            s.chars()
                                .take_while(|c| c.is_ascii_digit())
                                .collect::<String>()
                        })
                    };
                    if let (Some(member), Some(leader)) = (field("member_id"), field("leader")) {
                        if !member.is_empty() && member == leader {
                            return i;
                        }
                    }
                }
            }
            assert!(start.elapsed() < Duration::from_secs(20), "no etcd leader");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Kills member `i` with SIGKILL.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.members[i].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Freezes (SIGSTOP) or thaws (SIGCONT) member `i`: requests it already took neither
    /// fail nor complete, the hardest case for a client to settle.
    pub fn freeze(&mut self, i: usize, frozen: bool) {
        if let Some(child) = &self.members[i].child {
            let sig = if frozen { libc::SIGSTOP } else { libc::SIGCONT };
            // SAFETY: signalling our own child.
            unsafe { libc::kill(child.id() as i32, sig) };
        }
    }

    /// Restarts a killed member with its data.
    pub fn restart(&mut self, i: usize) {
        assert!(self.members[i].child.is_none(), "member {i} is running");
        self.launch(i);
    }
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        for i in 0..self.members.len() {
            self.kill(i);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// One cluster shared by the tests of a test binary (each uses its own prefix).
/// Statics are never dropped, so its directory is named after the process and removed
/// by a later test process once that process is gone.
pub fn shared() -> &'static EtcdCluster {
    static CLUSTER: OnceLock<EtcdCluster> = OnceLock::new();
    CLUSTER.get_or_init(|| {
        let tmp = std::env::temp_dir();
        if let Ok(entries) = std::fs::read_dir(&tmp) {
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if let Some(pid) = name.strip_prefix("kiseki-etcd-shared-") {
                    if !PathBuf::from(format!("/proc/{pid}")).exists() {
                        let _ = std::fs::remove_dir_all(e.path());
                    }
                }
            }
        }
        let dir = tmp.join(format!("kiseki-etcd-shared-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("cluster dir");
        EtcdCluster::start_in(dir, 3)
    })
}

/// A fresh, unique volume prefix.
pub fn unique_prefix(tag: &str) -> String {
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    format!(
        "{tag}-{}-{}",
        std::process::id(),
        N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    )
}
