//! `kiseki mount`: validating the request, daemonizing (`-d`), serving the FUSE session,
//! and a clean stop on SIGTERM/SIGINT/SIGHUP or unmount.
//!
//! Background mode re-executes this binary with `KISEKI_DAEMON_CHILD=1` in a new
//! session, its stdout and stderr piped to the parent. The child mounts, then moves its
//! output to the log file and writes `ready` on the pipe; the parent returns 0 only on
//! that line, and otherwise prints what the child said and returns non-zero. So
//! `kiseki mount -d` (and `mount /mnt/k` through `mount.kiseki`) returns only once the
//! mount is really up.
//!
//! A running mount records its pid in [`pid_file`], which `kiseki umount` uses to wait
//! until the process has flushed, ended its session and exited.

use std::io::{BufRead, Read, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::Duration;

use fuser::{Config, MountOption, Session, SessionACL};
use kiseki_core::runtime::block_on;
use kiseki_core::vfs::{ClientOptions, Fs};

use crate::fuse::{CacheTimes, KisekiFuse};

pub type BoxError = Box<dyn std::error::Error>;

const DAEMON_ENV: &str = "KISEKI_DAEMON_CHILD";
const READY: &str = "ready";

/// Everything a mount needs, from the command line or the mount(8) helper form.
#[derive(Debug, Clone)]
pub struct MountPlan {
    /// `None`: the embedded default volume, formatted on first use.
    pub meta_url: Option<String>,
    pub mountpoint: PathBuf,
    pub client: ClientOptions,
    pub fuse_options: Vec<MountOption>,
    pub acl: SessionACL,
    pub ttl: CacheTimes,
    pub background: bool,
    /// Say where the daemon runs once it is up (`kiseki mount -d`); the mount(8)
    /// helper is silent on success, as mount helpers are.
    pub announce: bool,
    pub log: Option<PathBuf>,
    pub threads: usize,
}

impl MountPlan {
    pub fn new(meta_url: Option<String>, mountpoint: PathBuf) -> Self {
        MountPlan {
            meta_url,
            mountpoint,
            client: ClientOptions {
                metrics: Some(kiseki_core::metrics::DEFAULT_ADDR.to_string()),
                backup_meta: Some(kiseki_core::data::backup::DEFAULT_INTERVAL),
                ..Default::default()
            },
            fuse_options: Vec::new(),
            // A root mount is a shared file system: every user may use it (permissions
            // still apply), as JuiceFS does.
            // SAFETY: geteuid cannot fail.
            acl: if unsafe { libc::geteuid() } == 0 {
                SessionACL::All
            } else {
                SessionACL::Owner
            },
            ttl: CacheTimes {
                attr: Duration::from_secs(1),
                entry: Duration::from_secs(1),
                negative: Duration::ZERO,
            },
            background: false,
            announce: true,
            log: None,
            threads: 8,
        }
    }

    /// Applies one `-o` option: a kernel/FUSE option, a cache lifetime, or a client
    /// option (`cache-dir=`, `buffer-size=`, ...). Unknown options are errors.
    pub fn apply_option(&mut self, opt: &str) -> Result<(), String> {
        let kernel = match opt {
            "allow_other" | "allow-other" => {
                self.acl = SessionACL::All;
                return Ok(());
            }
            "allow_root" | "allow-root" => {
                self.acl = SessionACL::RootAndOwner;
                return Ok(());
            }
            // Always on (see `mount_syscall`); accepted so fstab lines carrying it work.
            "rw" | "default_permissions" => return Ok(()),
            "nosuid" => MountOption::NoSuid,
            "suid" => MountOption::Suid,
            "nodev" => MountOption::NoDev,
            "dev" => MountOption::Dev,
            "noexec" => MountOption::NoExec,
            "exec" => MountOption::Exec,
            "noatime" => MountOption::NoAtime,
            "atime" => MountOption::Atime,
            "sync" => MountOption::Sync,
            "async" => MountOption::Async,
            "dirsync" => MountOption::DirSync,
            _ => {
                if let Some(v) = opt.strip_prefix("fsname=") {
                    MountOption::FSName(v.into())
                } else if let Some(v) = opt.strip_prefix("subtype=") {
                    MountOption::Subtype(v.into())
                } else if let Some(v) = strip_key(opt, "attr-cache") {
                    self.ttl.attr = seconds(v)?;
                    return Ok(());
                } else if let Some(v) = strip_key(opt, "entry-cache") {
                    self.ttl.entry = seconds(v)?;
                    return Ok(());
                } else if let Some(v) = strip_key(opt, "negative-entry-cache") {
                    self.ttl.negative = seconds(v)?;
                    return Ok(());
                } else {
                    self.client.apply(opt).map_err(|e| e.to_string())?;
                    if self.client.caller.is_set() {
                        return Err(format!(
                            "{opt}: a mount acts as each calling process, not as one user"
                        ));
                    }
                    return Ok(());
                }
            }
        };
        self.fuse_options.retain(|o| !conflicts(o, &kernel));
        self.fuse_options.push(kernel);
        Ok(())
    }
}

/// The value of `key=value` where `_` and `-` are interchangeable in the key.
fn strip_key<'a>(opt: &'a str, key: &str) -> Option<&'a str> {
    let (k, v) = opt.split_once('=')?;
    (k.replace('_', "-") == key).then_some(v)
}

fn seconds(v: &str) -> Result<Duration, String> {
    v.parse::<f64>()
        .ok()
        .filter(|s| s.is_finite() && *s >= 0.0 && *s < 1e9)
        .map(Duration::from_secs_f64)
        .ok_or_else(|| format!("{v:?} is not a number of seconds"))
}

/// Later options win over earlier ones they contradict (`-o suid -o nosuid`).
fn conflicts(old: &MountOption, new: &MountOption) -> bool {
    use MountOption::*;
    std::mem::discriminant(old) == std::mem::discriminant(new)
        || matches!(
            (old, new),
            (Suid, NoSuid)
                | (NoSuid, Suid)
                | (Dev, NoDev)
                | (NoDev, Dev)
                | (Exec, NoExec)
                | (NoExec, Exec)
                | (Atime, NoAtime)
                | (NoAtime, Atime)
                | (Sync, Async)
                | (Async, Sync)
        )
}

/// Where a mount at `mountpoint` records its pid.
pub fn pid_file(mountpoint: &Path) -> PathBuf {
    // SAFETY: geteuid cannot fail.
    let dir = if unsafe { libc::geteuid() } == 0 {
        PathBuf::from("/run/kiseki")
    } else if let Some(d) = std::env::var_os("XDG_RUNTIME_DIR").filter(|d| !d.is_empty()) {
        PathBuf::from(d).join("kiseki")
    } else {
        std::env::temp_dir().join(format!("kiseki-{}", unsafe { libc::geteuid() }))
    };
    let name: String = mountpoint
        .to_string_lossy()
        .chars()
        .map(|c| match c {
            '%' => "%25".to_string(),
            '/' => "%2F".to_string(),
            c => c.to_string(),
        })
        .collect();
    dir.join(format!("{name}.pid"))
}

fn default_log() -> PathBuf {
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } == 0 {
        return PathBuf::from("/var/log/kiseki.log");
    }
    let state = std::env::var_os("XDG_STATE_HOME")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/state")))
        .unwrap_or_else(std::env::temp_dir);
    state.join("kiseki/kiseki.log")
}

/// Checks what can be checked before anything is opened or created, so bad input
/// fails with one clear line and changes nothing.
fn validate(plan: &MountPlan) -> Result<PathBuf, BoxError> {
    let mp = &plan.mountpoint;
    let meta = std::fs::metadata(mp).map_err(|e| format!("mountpoint {}: {e}", mp.display()))?;
    if !meta.is_dir() {
        return Err(format!("mountpoint {} is not a directory", mp.display()).into());
    }
    let mp = std::fs::canonicalize(mp).map_err(|e| format!("mountpoint {}: {e}", mp.display()))?;
    if is_kiseki_mount(&mp) {
        return Err(format!("{} is already a kiseki mount", mp.display()).into());
    }
    Ok(mp)
}

/// Whether `mp` (canonical) is the mount point of a kiseki FUSE mount.
pub fn is_kiseki_mount(mp: &Path) -> bool {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return false;
    };
    let want = mp.to_string_lossy();
    info.lines().any(|l| {
        let fields: Vec<&str> = l.split(' ').collect();
        let sep = fields.iter().position(|f| *f == "-");
        match (fields.get(4), sep.and_then(|s| fields.get(s + 1))) {
            (Some(point), Some(fstype)) => {
                unescape_mountinfo(point) == want && fstype.starts_with("fuse.kiseki")
            }
            _ => false,
        }
    })
}

fn unescape_mountinfo(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Runs a mount: in the foreground, or as a daemon that is up when this returns.
pub fn mount(plan: MountPlan) -> Result<ExitCode, BoxError> {
    let mp = validate(&plan)?;
    let child = std::env::var_os(DAEMON_ENV).is_some();
    if plan.background && !child {
        return spawn_daemon(&plan, &mp);
    }
    serve(plan, mp, child)
}

/// Starts the daemon and waits for it to report the mount up (or its failure).
fn spawn_daemon(plan: &MountPlan, mp: &Path) -> Result<ExitCode, BoxError> {
    let exe = std::env::current_exe()?;
    let mut args = std::env::args_os();
    let argv0 = args.next().unwrap_or_else(|| exe.clone().into_os_string());
    let mut cmd = Command::new(&exe);
    cmd.arg0(argv0)
        .args(args)
        .env(DAEMON_ENV, "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // SAFETY: setsid is async-signal-safe; the child leaves the caller's session so a
    // closing terminal does not hang it up.
    unsafe {
        cmd.pre_exec(|| {
            libc::setsid();
            Ok(())
        });
    }
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot start the mount daemon: {e}"))?;
    let stdout = child.stdout.take().expect("piped");
    let mut line = String::new();
    let _ = std::io::BufReader::new(stdout).read_line(&mut line);
    if line.trim() == READY {
        let log = plan.log.clone().unwrap_or_else(default_log);
        if !plan.announce {
            return Ok(ExitCode::SUCCESS);
        }
        eprintln!(
            "kiseki: mounted at {} (pid {}, log {})",
            mp.display(),
            child.id(),
            log.display()
        );
        return Ok(ExitCode::SUCCESS);
    }
    let mut err = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut err);
    }
    let status = child.wait()?;
    let err = err.trim();
    if err.is_empty() {
        Err(format!("the mount daemon exited ({status}) before the mount was up").into())
    } else {
        // The child already wrote "kiseki: <reason>".
        eprintln!("{err}");
        Ok(ExitCode::FAILURE)
    }
}

/// Mounts and serves until unmounted; then flushes and ends the session.
fn serve(plan: MountPlan, mp: PathBuf, daemon_child: bool) -> Result<ExitCode, BoxError> {
    // Every thread started from here on inherits the blocked mask, so only the
    // signal thread sees SIGTERM/SIGINT/SIGHUP.
    let signals = block_stop_signals();
    let meta_url = match &plan.meta_url {
        Some(u) => u.clone(),
        None => kiseki_core::defaults::ensure_default_volume()?.0.meta_url,
    };
    let fs = Fs::connect(
        Some(&meta_url),
        &plan.client,
        &format!("mount {}", mp.display()),
    )?;
    let source = redact(&meta_url);
    let mut config = Config::default();
    config.acl = plan.acl;
    config.n_threads = Some(plan.threads.max(1));
    config.clone_fd = true;
    let handler = KisekiFuse::new(fs.clone(), plan.ttl);
    let notifier = handler.notifier_slot();
    // As root, mount(2) directly so the mount table says `fuse.kiseki`; otherwise
    // fusermount3 (through fuser) does it, also with the subtype.
    // SAFETY: geteuid cannot fail.
    let mounted = if unsafe { libc::geteuid() } == 0 {
        mount_syscall(&mp, &source, &plan).and_then(|fd| {
            let mut unmounter = Unmounter::Syscall(mp.clone());
            match Session::from_fd(handler, fd, plan.acl, config.clone()) {
                Ok(s) => Ok((s, unmounter)),
                Err(e) => {
                    // Mounted but the handshake failed: do not leave a dead mount.
                    let _ = unmounter.unmount();
                    Err(e)
                }
            }
        })
    } else {
        let mut options = vec![
            MountOption::FSName(source.clone()),
            MountOption::Subtype("kiseki".into()),
            MountOption::DefaultPermissions,
        ];
        if plan.client.read_only {
            options.push(MountOption::RO);
        }
        options.extend(plan.fuse_options.iter().cloned());
        config.mount_options = options;
        Session::new(handler, &mp, &config).map(|mut s| {
            let u = Unmounter::Fuser(s.unmount_callable());
            (s, u)
        })
    };
    let (session, mut unmounter) = match mounted {
        Ok(s) => s,
        Err(e) => {
            let _ = block_on(fs.shutdown());
            return Err(format!("cannot mount at {}: {e}", mp.display()).into());
        }
    };
    let _ = notifier.set(session.notifier());
    let pid_path = pid_file(&mp);
    write_pid(&pid_path);
    {
        let fs = fs.clone();
        let mp = mp.clone();
        std::thread::Builder::new()
            .name("kiseki-signals".into())
            .spawn(move || {
                let mut stopping = false;
                loop {
                    let sig = wait_signal(&signals);
                    if stopping {
                        tracing::warn!("signal {sig} again: flushing and exiting now");
                        let _ = block_on(fs.shutdown());
                        std::process::exit(1);
                    }
                    stopping = true;
                    tracing::info!("signal {sig}: unmounting {}", mp.display());
                    // Requests in flight stop retrying an unreachable engine now: the
                    // unmount waits for them.
                    fs.begin_close();
                    if let Err(e) = unmounter.unmount() {
                        tracing::warn!("unmounting {}: {e}", mp.display());
                    }
                }
            })?;
    }
    if daemon_child {
        detach_output(plan.log.as_deref().unwrap_or(&default_log()))?;
        // A daemon must not keep the directory it was started from busy.
        std::env::set_current_dir("/")?;
    }
    tracing::info!("mounted {} at {}", redact(&meta_url), mp.display());
    if let Some(a) = kiseki_core::metrics::served() {
        tracing::info!("metrics at http://{a}/metrics");
    }
    let served = session.run();
    let closed = block_on(fs.shutdown());
    let _ = std::fs::remove_file(&pid_path);
    drop(fs);
    served.map_err(|e| format!("FUSE session: {e}"))?;
    closed?;
    tracing::info!("unmounted {}", mp.display());
    Ok(ExitCode::SUCCESS)
}

/// How the signal thread takes the mount down: a lazy detach, so open files keep
/// working and the session ends after the last one closes.
enum Unmounter {
    Syscall(PathBuf),
    Fuser(fuser::SessionUnmounter),
}

impl Unmounter {
    fn unmount(&mut self) -> std::io::Result<()> {
        match self {
            Unmounter::Syscall(mp) => {
                let c = std::ffi::CString::new(mp.as_os_str().as_encoded_bytes())?;
                // SAFETY: `c` is a valid NUL-terminated path.
                if unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) } == 0 {
                    Ok(())
                } else {
                    Err(std::io::Error::last_os_error())
                }
            }
            Unmounter::Fuser(u) => u.unmount(),
        }
    }
}

/// mount(2) of a FUSE file system of type `fuse.kiseki` at `mp`; returns the
/// `/dev/fuse` descriptor to serve it on.
fn mount_syscall(
    mp: &Path,
    source: &str,
    plan: &MountPlan,
) -> std::io::Result<std::os::fd::OwnedFd> {
    use std::os::fd::AsRawFd;
    let dev = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/fuse")
        .map_err(|e| std::io::Error::new(e.kind(), format!("/dev/fuse: {e}")))?;
    // Like ext4 and JuiceFS, a root mount honours setuid bits and device nodes unless
    // `nosuid` / `nodev` ask otherwise.
    let mut flags: libc::c_ulong = 0;
    // The kernel checks permissions against the attributes it caches, on every path
    // it takes without asking us (cached entries, FIFO and device opens, access(2));
    // the core checks again every operation that reaches it (docs/SEMANTICS.md).
    let mut data = format!(
        "fd={},rootmode=40000,user_id={},group_id={},default_permissions",
        dev.as_raw_fd(),
        // SAFETY: getuid/getgid cannot fail.
        unsafe { libc::getuid() },
        unsafe { libc::getgid() }
    );
    if plan.client.read_only {
        flags |= libc::MS_RDONLY;
    }
    if plan.acl != SessionACL::Owner {
        // The kernel only knows allow_other; fuser filters requests for allow_root.
        data.push_str(",allow_other");
    }
    for o in &plan.fuse_options {
        match o {
            MountOption::Suid => flags &= !libc::MS_NOSUID,
            MountOption::NoSuid => flags |= libc::MS_NOSUID,
            MountOption::Dev => flags &= !libc::MS_NODEV,
            MountOption::NoDev => flags |= libc::MS_NODEV,
            MountOption::Exec => flags &= !libc::MS_NOEXEC,
            MountOption::NoExec => flags |= libc::MS_NOEXEC,
            MountOption::Atime => flags &= !libc::MS_NOATIME,
            MountOption::NoAtime => flags |= libc::MS_NOATIME,
            MountOption::Sync => flags |= libc::MS_SYNCHRONOUS,
            MountOption::Async => flags &= !libc::MS_SYNCHRONOUS,
            MountOption::DirSync => flags |= libc::MS_DIRSYNC,
            _ => {}
        }
    }
    let source = std::ffi::CString::new(source.replace('\0', ""))?;
    let target = std::ffi::CString::new(mp.as_os_str().as_encoded_bytes())?;
    let data = std::ffi::CString::new(data)?;
    // SAFETY: every pointer is a valid NUL-terminated string for the call.
    let r = unsafe {
        libc::mount(
            source.as_ptr(),
            target.as_ptr(),
            c"fuse.kiseki".as_ptr(),
            flags,
            data.as_ptr().cast(),
        )
    };
    if r != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(dev.into())
}

/// The meta URL without a password, for the mount table.
fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("****"));
            u.to_string()
        }
        _ => url.to_string(),
    }
}

fn write_pid(path: &Path) {
    if let Some(dir) = path.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    if let Err(e) = std::fs::write(path, format!("{}\n", std::process::id())) {
        tracing::warn!("cannot write {}: {e}", path.display());
    }
}

/// Daemon child, mount up: output goes to the log from now on, and the parent hears
/// `ready`.
fn detach_output(log: &Path) -> Result<(), BoxError> {
    use std::os::fd::AsRawFd;
    if let Some(dir) = log.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .map_err(|e| format!("log file {}: {e}", log.display()))?;
    let mut out = std::io::stdout().lock();
    // SAFETY: dup2 onto the standard descriptors of this process.
    unsafe { libc::dup2(file.as_raw_fd(), 2) };
    writeln!(out, "{READY}")?;
    out.flush()?;
    unsafe { libc::dup2(file.as_raw_fd(), 1) };
    Ok(())
}

fn block_stop_signals() -> libc::sigset_t {
    // SAFETY: plain signal-mask manipulation on a local set.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for s in [libc::SIGTERM, libc::SIGINT, libc::SIGHUP] {
            libc::sigaddset(&mut set, s);
        }
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        set
    }
}

fn wait_signal(set: &libc::sigset_t) -> i32 {
    let mut sig = 0;
    // SAFETY: `set` is initialised; sigwait only writes `sig`.
    unsafe { libc::sigwait(set, &mut sig) };
    sig
}

/// The pid of the mount at `mp`, from its pid file (`kiseki umount` waits for it).
pub fn read_pid(mp: &Path) -> Option<i32> {
    std::fs::read_to_string(pid_file(mp))
        .ok()?
        .trim()
        .parse()
        .ok()
}
