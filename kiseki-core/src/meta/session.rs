//! Client sessions: registration, heartbeats and the cleanup of dead clients.
//!
//! Every read-write client registers a session (`SE` key) with an expiry that a
//! heartbeat thread pushes forward. Inodes a client keeps alive after their last unlink
//! (open-unlinked files) are recorded against its session (`SS` keys). When a session
//! ends cleanly those inodes are released; when a client dies, the next client that
//! notices the expired session releases them instead. With an exclusive engine
//! (RocksDB) any session found at start-up belongs to a dead process and is cleaned at
//! once.

use std::sync::{Arc, Weak};
use std::thread;

use super::counters;
use super::keys;
use super::kv::{prefix_end, KvEngine, TxnMode};
use super::ops::release_tx;
use super::records::{self, SessionInfo};
use super::txn::run_txn;
use super::types::Ino;
use super::{Meta, MetaConfig};
use crate::error::{Error, Result};

/// Records per cleanup transaction: each costs two operations, and etcd allows 128.
const CLEANUP_PAGE: usize = 50;

pub(super) fn register(kv: &dyn KvEngine, config: &MetaConfig) -> Result<u64> {
    let now = config.clock.now();
    run_txn(kv, TxnMode::ReadWrite { durable: false }, |tx| {
        // Read in the transaction: a `kiseki destroy` marking the volume meanwhile makes
        // this registration conflict, and its retry refuse.
        match tx.get(keys::SETTING)? {
            Some(v) if records::decode_format(&v)?.destroying => {
                return Err(Error::Busy(
                    "the volume is being destroyed (run kiseki destroy again to finish)".into(),
                ))
            }
            Some(_) => {}
            None => {
                return Err(Error::Format(
                    "no volume is formatted at this meta URL".into(),
                ))
            }
        }
        let sid = tx.incr_by(&keys::counter(counters::NEXT_SESSION), 1)? as u64;
        let info = SessionInfo {
            sid,
            host: hostname(),
            pid: std::process::id(),
            client: config.client.clone(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            started: now,
            expires: now + config.session_ttl.as_secs() as i64,
        };
        tx.put(&keys::session(sid), &records::encode_session(&info))?;
        Ok(sid)
    })
}

pub(crate) fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname NUL-terminates on success.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return "unknown".into();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

/// Starts the heartbeat thread. It holds only a weak reference, so dropping the last
/// `Arc<Meta>` ends it.
pub(super) fn spawn_heartbeat(meta: &Arc<Meta>) {
    let weak: Weak<Meta> = Arc::downgrade(meta);
    let interval = (meta.config.session_ttl / 3).max(std::time::Duration::from_millis(100));
    let spawned = thread::Builder::new()
        .name("kiseki-heartbeat".into())
        .spawn(move || loop {
            thread::park_timeout(interval);
            let Some(meta) = weak.upgrade() else { return };
            if meta.closed.load(std::sync::atomic::Ordering::SeqCst) {
                return;
            }
            if let Err(e) = meta.heartbeat() {
                tracing::warn!("session {} heartbeat failed: {e}", meta.sid);
            }
            // On a shared engine, clients that died are noticed by the living: every
            // heartbeat also cleans sessions whose expiry passed.
            if !meta.kv.exclusive() {
                if let Err(e) = meta.clean_stale_sessions() {
                    tracing::warn!("cleaning dead sessions: {e}");
                }
            }
            meta.expire_trash_if_due();
        });
    match spawned {
        Ok(t) => *meta.heartbeat.lock().unwrap_or_else(|p| p.into_inner()) = Some(t),
        Err(e) => tracing::warn!("cannot start the session heartbeat thread: {e}"),
    }
}

impl Meta {
    /// Pushes this session's expiry forward (re-registering it if a peer removed it
    /// after a long stall).
    pub fn heartbeat(&self) -> Result<()> {
        self.writable()?;
        let now = self.config.clock.now();
        let ttl = self.config.session_ttl.as_secs() as i64;
        let sid = self.sid;
        let client = self.config.client.clone();
        self.write(|tx| {
            let key = keys::session(sid);
            let mut info = match tx.get(&key)? {
                Some(v) => records::decode_session(&v)?,
                None => SessionInfo {
                    sid,
                    host: hostname(),
                    pid: std::process::id(),
                    client: client.clone(),
                    version: env!("CARGO_PKG_VERSION").to_string(),
                    started: now,
                    expires: now,
                },
            };
            info.expires = now + ttl;
            tx.put(&key, &records::encode_session(&info))?;
            Ok(())
        })
    }

    /// The session `sid` if it is registered and has not expired.
    pub fn live_session(&self, sid: u64) -> Result<Option<SessionInfo>> {
        let now = self.config.clock.now();
        self.read(|tx| {
            Ok(match tx.get(&keys::session(sid))? {
                Some(v) => Some(records::decode_session(&v)?).filter(|s| s.expires >= now),
                None => None,
            })
        })
    }

    /// All sessions registered in the volume.
    pub fn sessions(&self) -> Result<Vec<SessionInfo>> {
        self.read(|tx| {
            let end = prefix_end(keys::SESSION_PREFIX);
            tx.scan(keys::SESSION_PREFIX, &end, usize::MAX)?
                .into_iter()
                .map(|(_, v)| records::decode_session(&v))
                .collect()
        })
    }

    /// Releases what dead sessions left behind (open-unlinked inodes) and removes them.
    /// Returns how many sessions were cleaned.
    pub fn clean_stale_sessions(&self) -> Result<usize> {
        let now = self.config.clock.now();
        let exclusive = self.kv.exclusive();
        let stale: Vec<u64> = self.read(|tx| {
            let end = prefix_end(keys::SESSION_PREFIX);
            let mut stale = Vec::new();
            for (k, v) in tx.scan(keys::SESSION_PREFIX, &end, usize::MAX)? {
                let Some(sid) = keys::parse_session(&k) else {
                    continue;
                };
                if sid == self.sid {
                    continue;
                }
                let expired = match records::decode_session(&v) {
                    Ok(info) => info.expires < now,
                    Err(_) => true,
                };
                if exclusive || expired {
                    stale.push(sid);
                }
            }
            Ok(stale)
        })?;
        for &sid in &stale {
            tracing::info!("cleaning up dead session {sid}");
            self.release_session_locks(sid)?;
            self.release_session_inodes(sid)?;
            // Blocks of slices the dead client uploaded but never committed are swept
            // by the data layer (see `Meta::orphan_sweeps`).
            self.remove_session(sid, true, false)?;
        }
        Ok(stale.len())
    }

    /// Deletes a session's slice reservations and then its record, paged (a long-lived
    /// client holds many reservations, and a remote engine limits the operations of one
    /// transaction). With `sweep`, each reservation becomes an orphan sweep job first:
    /// the session died and may have uploaded blocks it never committed.
    fn remove_session(&self, sid: u64, sweep: bool, durable: bool) -> Result<()> {
        let page_tx = |tx: &mut dyn super::kv::KvTxn| {
            let prefix = keys::slice_reservation_prefix(sid);
            let page = tx.scan(&prefix, &prefix_end(&prefix), CLEANUP_PAGE)?;
            for (k, v) in &page {
                let start = k
                    .get(10..18)
                    .and_then(|b| b.try_into().ok())
                    .map(u64::from_be_bytes);
                if let (true, Some(start)) = (sweep, start) {
                    let end = v
                        .as_slice()
                        .try_into()
                        .map(u64::from_le_bytes)
                        .unwrap_or(start);
                    tx.put(&keys::orphan_sweep(start, end), b"")?;
                }
                tx.delete(k)?;
            }
            let done = page.len() < CLEANUP_PAGE;
            if done {
                tx.delete(&keys::session(sid))?;
            }
            Ok(done)
        };
        loop {
            let done = if durable {
                self.write_durable(page_tx)?
            } else {
                self.write(page_tx)?
            };
            if done {
                return Ok(());
            }
        }
    }

    fn release_session_inodes(&self, sid: u64) -> Result<()> {
        let held: Vec<Ino> = self.read(|tx| {
            let prefix = keys::sustained_prefix(sid);
            let end = prefix_end(&prefix);
            Ok(tx
                .scan(&prefix, &end, usize::MAX)?
                .iter()
                .filter_map(|(k, _)| keys::parse_sustained(k).map(|(_, ino)| ino))
                .collect())
        })?;
        for ino in held {
            let _guard = self.open.lock(ino);
            self.write(|tx| release_tx(tx, sid, ino))?;
        }
        Ok(())
    }
}

/// Ends this client's session cleanly.
/// The caller has flushed every writer: all slices of this session are committed or
/// queued for deletion, so its reservations can go.
pub(super) fn end(meta: &Meta) -> Result<()> {
    meta.release_session_locks(meta.sid)?;
    meta.release_session_inodes(meta.sid)?;
    meta.remove_session(meta.sid, false, true)
}
