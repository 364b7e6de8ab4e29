//! etcd engine: the first distributed back end (`etcd://host:port[,host:port...]/prefix`).
//!
//! Many clients on many hosts share one volume through a raft-replicated etcd cluster.
//! The schema above is unchanged; this module maps the optimistic [`KvTxn`] contract
//! onto etcd's multi-version store:
//!
//! - **Snapshot reads.** The first read of a transaction fixes a store revision `R`; every
//!   later read (point or range) asks for revision `R`, so a transaction sees one
//!   consistent state, as RocksDB's snapshot does. Writes are buffered in the
//!   transaction and seen by its own reads.
//! - **Commit** is one etcd `Txn`: for every key read, `mod_revision == ` the revision
//!   it had at `R` (0 for a key that was absent); for every key written but not read,
//!   `mod_revision <= R`. If all hold, the buffered puts and deletes apply atomically;
//!   otherwise nothing does and the caller sees [`KvError::Conflict`] and retries.
//! - **Ambiguous commits.** A commit whose reply is lost (leader killed, timeout) may or
//!   may not have applied. Every commit therefore also compares and rewrites a *fence
//!   slot*, a key only this client writes, with a fresh nonce. After a lost reply a
//!   fence transaction overwrites the slot if it still holds its previous revision: if
//!   that succeeds, the lost commit can never apply (its slot comparison now fails) and
//!   it is retried as a conflict; if it fails, the slot moved, which only the lost commit
//!   can have done, so it applied. Either way the outcome is known before `commit`
//!   returns, so a counter is never added twice and nothing is silently lost. Slots are
//!   pooled per client (one per concurrent commit) and deleted when the engine closes.
//! - **Limits.** etcd refuses a transaction with more than 128 comparisons or 128
//!   operations (`--max-txn-ops`) and requests over 1.5 MiB; the schema keeps each
//!   transaction within them (large deletions use [`KvTxn::delete_range`], one
//!   operation; bulk cleanups are paged). Range reads are paged here, so a large
//!   directory or session list is never one huge response.
//! - **Failures.** Connection loss and leader changes are retried, each attempt bounded
//!   by a short timeout, until a deadline; then the operation fails with
//!   [`KvError::Unavailable`] (EIO). A read at a revision etcd has compacted meanwhile
//!   is a conflict (the transaction restarts at a fresh revision).
//!
//! Durability: etcd acknowledges a write once a quorum has it in its raft log, synced
//! to disk, so every committed transaction survives the loss of a minority of members
//! and any client crash; [`KvEngine::sync`] has nothing left to do.
//!
//! Keys: volume key `k` is stored as `prefix \0 k`; fence slots live under
//! `prefix \x01 fence/`; so volumes under different prefixes never overlap (a prefix
//! cannot contain NUL) and a scan of the volume never sees slots.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use etcd_client::{
    Compare, CompareOp, ConnectOptions, DeleteOptions, GetOptions, KvClient, Txn, TxnOp,
    TxnOpResponse,
};

use super::{KvEngine, KvError, KvPair, KvResult, KvTxn, TxnMode};

/// etcd's default `--max-txn-ops`.
const MAX_TXN_OPS: usize = 128;
/// Keys per range request when scanning.
const SCAN_PAGE: usize = 512;
/// One attempt of one request.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(3);
/// How long connection loss or a leaderless cluster is retried before EIO.
const DEADLINE: Duration = Duration::from_secs(30);
/// How long `open` waits for a reachable cluster.
const CONNECT_DEADLINE: Duration = Duration::from_secs(10);
/// Retry deadline of every request once the client is closing.
const CLOSING_DEADLINE: Duration = Duration::from_secs(3);
/// Responses may be large (a page of big values); etcd itself caps requests at 1.5 MiB.
const MAX_DECODE: usize = 256 << 20;

/// A parsed `etcd://` meta URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdUrl {
    pub endpoints: Vec<String>,
    pub prefix: String,
}

impl EtcdUrl {
    /// `etcd://host:port[,host:port...]/prefix`; the prefix may contain `/` (nested
    /// names) but not NUL, and must not be empty, so that every volume is explicit.
    pub fn parse(url: &str) -> KvResult<Self> {
        let bad = |why: &str| KvError::BadUrl(format!("{url:?}: {why}"));
        let rest = url
            .strip_prefix("etcd://")
            .ok_or_else(|| bad("expected etcd://host:port[,host:port...]/prefix"))?;
        if rest.contains(['?', '#', '\0', '@']) {
            return Err(bad(
                "query strings, fragments, credentials and NUL are not supported",
            ));
        }
        let (hosts, prefix) = rest
            .split_once('/')
            .ok_or_else(|| bad("missing /prefix (the volume's name space in etcd)"))?;
        let prefix = prefix.trim_end_matches('/');
        if prefix.is_empty() {
            return Err(bad(
                "empty prefix: name the volume, e.g. etcd://host:2379/vol1",
            ));
        }
        let mut endpoints = Vec::new();
        for host in hosts.split(',') {
            let (name, port) = host
                .rsplit_once(':')
                .ok_or_else(|| bad(&format!("endpoint {host:?} has no :port")))?;
            if name.is_empty() || port.parse::<u16>().map_or(true, |p| p == 0) {
                return Err(bad(&format!("endpoint {host:?} is not host:port")));
            }
            endpoints.push(format!("http://{host}"));
        }
        Ok(EtcdUrl {
            endpoints,
            prefix: prefix.to_string(),
        })
    }
}

/// A key only this client writes; see the module docs.
struct Slot {
    key: Vec<u8>,
    /// Its mod_revision as last known (0: absent).
    rev: i64,
}

pub struct EtcdKv {
    rt: Option<tokio::runtime::Runtime>,
    kv: KvClient,
    /// `prefix \0`: prepended to every volume key.
    data: Vec<u8>,
    /// `prefix \x01 fence/ uuid /`: this client's fence slots.
    fence: Vec<u8>,
    slots: Mutex<Vec<Slot>>,
    next_slot: AtomicU64,
    /// The client is closing: requests retry for [`CLOSING_DEADLINE`] at most, so an
    /// unmount or SIGTERM with the cluster gone exits in seconds, not minutes.
    closing: std::sync::atomic::AtomicBool,
}

/// Why a request failed.
enum Failure {
    /// Worth retrying: connection loss, no leader, timeout, overload. For a commit the
    /// outcome is unknown.
    Transient(String),
    /// The snapshot revision was compacted away: restart the transaction.
    Compacted,
    /// Retrying cannot help (request too large, too many operations, permissions).
    Fatal(String),
}

fn classify(e: etcd_client::Error) -> Failure {
    use tonic::Code;
    match e {
        etcd_client::Error::GRpcStatus(s) => match s.code() {
            Code::OutOfRange if s.message().contains("compacted") => Failure::Compacted,
            Code::InvalidArgument
            | Code::OutOfRange
            | Code::PermissionDenied
            | Code::Unauthenticated
            | Code::FailedPrecondition
            | Code::Unimplemented
            | Code::NotFound
            | Code::AlreadyExists => Failure::Fatal(s.message().to_string()),
            _ => Failure::Transient(format!("{:?}: {}", s.code(), s.message())),
        },
        etcd_client::Error::TransportError(e) => Failure::Transient(e.to_string()),
        etcd_client::Error::IoError(e) => Failure::Transient(e.to_string()),
        other => Failure::Fatal(other.to_string()),
    }
}

impl EtcdKv {
    pub fn open(url: &str) -> KvResult<Self> {
        let parsed = EtcdUrl::parse(url)?;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("kiseki-etcd")
            .enable_all()
            .build()
            .map_err(|e| KvError::Engine(format!("cannot start the etcd client runtime: {e}")))?;
        let endpoints = parsed.endpoints.clone();
        let options = ConnectOptions::new()
            .with_connect_timeout(Duration::from_secs(2))
            .with_timeout(ATTEMPT_TIMEOUT)
            .with_keep_alive(Duration::from_secs(5), Duration::from_secs(3))
            .with_require_leader(true);
        let client = rt
            .block_on(etcd_client::Client::connect(endpoints, Some(options)))
            .map_err(|e| KvError::Unavailable(format!("connecting to {url}: {e}")))?;
        let kv = client
            .kv_client()
            .max_decoding_message_size(MAX_DECODE)
            .max_encoding_message_size(MAX_DECODE);
        let mut data = parsed.prefix.clone().into_bytes();
        data.push(0);
        let mut fence = parsed.prefix.into_bytes();
        fence.push(1);
        fence.extend_from_slice(format!("fence/{}/", uuid::Uuid::new_v4().simple()).as_bytes());
        let engine = EtcdKv {
            rt: Some(rt),
            kv,
            data,
            fence,
            slots: Mutex::new(Vec::new()),
            next_slot: AtomicU64::new(0),
            closing: Default::default(),
        };
        // Fail now, with the endpoints in the message, rather than at the first use.
        engine
            .retrying_for(CONNECT_DEADLINE, "probe", |mut kv| async move {
                kv.get(b"\0".to_vec(), Some(GetOptions::new().with_count_only()))
                    .await
                    .map(|_| ())
            })
            .map_err(|e| match e {
                KvError::Unavailable(m) => {
                    KvError::Unavailable(format!("etcd at {url} is not reachable: {m}"))
                }
                other => other,
            })?;
        Ok(engine)
    }

    fn rt(&self) -> &tokio::runtime::Runtime {
        self.rt
            .as_ref()
            .expect("runtime lives as long as the engine")
    }

    /// Runs a future on the engine's own runtime and waits for it. The engine is called
    /// synchronously, possibly from a thread of another runtime, where `block_on` would
    /// panic; a channel wait is safe anywhere.
    fn wait<T: Send + 'static>(
        &self,
        fut: impl Future<Output = T> + Send + 'static,
    ) -> KvResult<T> {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        self.rt().spawn(async move {
            let _ = tx.send(fut.await);
        });
        rx.recv()
            .map_err(|_| KvError::Engine("the etcd client runtime stopped".into()))
    }

    /// One request with per-attempt timeout, retried on transient failures until the
    /// deadline. Only for requests that are safe to repeat (reads, idempotent writes).
    fn retrying<T, F, Fut>(&self, what: &str, op: F) -> KvResult<T>
    where
        T: Send + 'static,
        F: Fn(KvClient) -> Fut,
        Fut: Future<Output = Result<T, etcd_client::Error>> + Send + 'static,
    {
        self.retrying_for(DEADLINE, what, op)
    }

    fn retrying_for<T, F, Fut>(&self, deadline: Duration, what: &str, op: F) -> KvResult<T>
    where
        T: Send + 'static,
        F: Fn(KvClient) -> Fut,
        Fut: Future<Output = Result<T, etcd_client::Error>> + Send + 'static,
    {
        let start = Instant::now();
        let mut attempt = 0u32;
        loop {
            let fut = op(self.kv.clone());
            let outcome = self.wait(async move {
                match tokio::time::timeout(ATTEMPT_TIMEOUT, fut).await {
                    Ok(Ok(v)) => Ok(v),
                    Ok(Err(e)) => Err(classify(e)),
                    Err(_) => Err(Failure::Transient("request timed out".into())),
                }
            })?;
            match outcome {
                Ok(v) => return Ok(v),
                Err(Failure::Compacted) => return Err(KvError::Conflict),
                Err(Failure::Fatal(m)) => return Err(KvError::Engine(format!("etcd {what}: {m}"))),
                Err(Failure::Transient(m)) => {
                    let deadline = if self.closing.load(Ordering::Relaxed) {
                        deadline.min(CLOSING_DEADLINE)
                    } else {
                        deadline
                    };
                    if start.elapsed() >= deadline {
                        return Err(KvError::Unavailable(format!(
                            "etcd {what} failed for {deadline:?}: {m}"
                        )));
                    }
                    attempt += 1;
                    tracing::info!("etcd {what} failed (attempt {attempt}), retrying: {m}");
                    std::thread::sleep(Duration::from_millis(50 * u64::from(attempt.min(10))));
                }
            }
        }
    }

    fn key(&self, k: &[u8]) -> Vec<u8> {
        let mut full = Vec::with_capacity(self.data.len() + k.len());
        full.extend_from_slice(&self.data);
        full.extend_from_slice(k);
        full
    }

    /// The end of the volume's key space (exclusive).
    fn data_end(&self) -> Vec<u8> {
        let mut end = self.data.clone();
        *end.last_mut().expect("prefix ends with NUL") = 1;
        end
    }

    fn take_slot(&self) -> Slot {
        if let Some(slot) = self.slots.lock().unwrap_or_else(|p| p.into_inner()).pop() {
            return slot;
        }
        let n = self.next_slot.fetch_add(1, Ordering::Relaxed);
        let mut key = self.fence.clone();
        key.extend_from_slice(n.to_string().as_bytes());
        Slot { key, rev: 0 }
    }

    fn put_slot(&self, slot: Slot) {
        self.slots
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(slot);
    }

    /// Sends a commit and learns its outcome, resolving lost replies with a fence (see
    /// the module docs). Returns whether the comparisons held (the writes applied).
    fn commit_txn(&self, compares: Vec<Compare>, ops: Vec<TxnOp>) -> KvResult<bool> {
        let mut slot = self.take_slot();
        let nonce = uuid::Uuid::new_v4().as_bytes().to_vec();
        let mut compares = compares;
        compares.push(Compare::mod_revision(
            slot.key.clone(),
            CompareOp::Equal,
            slot.rev,
        ));
        let mut ops = ops;
        ops.push(TxnOp::put(slot.key.clone(), nonce.clone(), None));
        let txn = Txn::new()
            .when(compares)
            .and_then(ops)
            .or_else(vec![TxnOp::get(slot.key.clone(), None)]);
        let mut kv = self.kv.clone();
        let sent = self.wait(async move {
            match tokio::time::timeout(ATTEMPT_TIMEOUT, kv.txn(txn)).await {
                Ok(Ok(resp)) => Ok(resp),
                Ok(Err(e)) => Err(classify(e)),
                Err(_) => Err(Failure::Transient("commit timed out".into())),
            }
        })?;
        match sent {
            Ok(resp) => {
                let applied = resp.succeeded();
                if applied {
                    slot.rev = resp.header().map_or(0, |h| h.revision());
                } else {
                    slot.rev = slot_revision(&resp);
                }
                self.put_slot(slot);
                Ok(applied)
            }
            Err(Failure::Fatal(m)) => {
                self.put_slot(slot);
                Err(KvError::Engine(format!("etcd commit: {m}")))
            }
            Err(Failure::Compacted) => {
                self.put_slot(slot);
                Err(KvError::Conflict)
            }
            Err(Failure::Transient(m)) => {
                tracing::info!("etcd commit outcome unknown ({m}); fencing it");
                self.fence_slot(slot, &nonce)
            }
        }
    }

    /// Settles a commit whose reply was lost. Returns whether it applied; a commit that
    /// did not apply never will (the slot moved past its comparison).
    fn fence_slot(&self, mut slot: Slot, nonce: &[u8]) -> KvResult<bool> {
        let fence_nonce = uuid::Uuid::new_v4().as_bytes().to_vec();
        let (key, rev) = (slot.key.clone(), slot.rev);
        let settled = self.retrying("fence", |mut kv| {
            let txn = Txn::new()
                .when(vec![Compare::mod_revision(
                    key.clone(),
                    CompareOp::Equal,
                    rev,
                )])
                .and_then(vec![TxnOp::put(key.clone(), fence_nonce.clone(), None)])
                .or_else(vec![TxnOp::get(key.clone(), None)]);
            async move { kv.txn(txn).await }
        });
        // On failure the slot's state is unknown; it is not returned to the pool, so
        // later commits use fresh slots.
        let resp = settled?;
        if resp.succeeded() {
            // Fenced: the lost commit cannot apply any more.
            slot.rev = resp.header().map_or(0, |h| h.revision());
            self.put_slot(slot);
            return Ok(false);
        }
        let (value, now) = slot_value(&resp);
        slot.rev = now;
        self.put_slot(slot);
        if value.as_deref() == Some(nonce) {
            Ok(true)
        } else {
            // Another fence of ours cannot exist; if the value is anything else, the
            // slot key was tampered with. Report it instead of guessing.
            Err(KvError::Engine(
                "etcd fence slot changed unexpectedly; commit outcome unknown".into(),
            ))
        }
    }
}

fn slot_value(resp: &etcd_client::TxnResponse) -> (Option<Vec<u8>>, i64) {
    for op in resp.op_responses() {
        if let TxnOpResponse::Get(get) = op {
            return match get.kvs().first() {
                Some(kv) => (Some(kv.value().to_vec()), kv.mod_revision()),
                None => (None, 0),
            };
        }
    }
    (None, 0)
}

fn slot_revision(resp: &etcd_client::TxnResponse) -> i64 {
    slot_value(resp).1
}

impl Drop for EtcdKv {
    fn drop(&mut self) {
        // Best effort: remove this client's fence slots (a crashed client leaves a few
        // small keys behind; they are harmless).
        let begin = self.fence.clone();
        let mut end = self.fence.clone();
        *end.last_mut().expect("fence prefix ends with /") += 1;
        let mut kv = self.kv.clone();
        let _ = self.wait(async move {
            let _ = tokio::time::timeout(
                Duration::from_secs(2),
                kv.delete(begin, Some(DeleteOptions::new().with_range(end))),
            )
            .await;
        });
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

impl KvEngine for EtcdKv {
    fn name(&self) -> &'static str {
        "etcd"
    }

    fn exclusive(&self) -> bool {
        false
    }

    fn closing(&self) {
        self.closing.store(true, Ordering::Relaxed);
    }

    fn begin(&self, mode: TxnMode) -> KvResult<Box<dyn KvTxn + '_>> {
        Ok(Box::new(EtcdTxn {
            kv: self,
            mode,
            rev: None,
            reads: HashMap::new(),
            writes: BTreeMap::new(),
            deleted_ranges: Vec::new(),
        }))
    }

    fn sync(&self) -> KvResult<()> {
        // Acknowledged writes are already on a quorum's disks.
        Ok(())
    }
}

struct EtcdTxn<'a> {
    kv: &'a EtcdKv,
    mode: TxnMode,
    /// The snapshot revision, fixed by the first read.
    rev: Option<i64>,
    /// Keys read (unprefixed) and their mod_revision at the snapshot (0: absent).
    reads: HashMap<Vec<u8>, i64>,
    /// Buffered writes (None: delete).
    writes: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
    /// Buffered range deletions `[begin, end)`.
    deleted_ranges: Vec<(Vec<u8>, Vec<u8>)>,
}

impl EtcdTxn<'_> {
    fn in_deleted_range(&self, key: &[u8]) -> bool {
        self.deleted_ranges
            .iter()
            .any(|(b, e)| key >= b.as_slice() && (e.is_empty() || key < e.as_slice()))
    }

    /// Records the revision of the first read.
    fn pin(&mut self, header_rev: i64) {
        if self.rev.is_none() {
            self.rev = Some(header_rev);
        }
    }

    /// One page of the store (at the snapshot) in `[begin, end)`.
    fn fetch(&mut self, begin: &[u8], end: &[u8], limit: usize) -> KvResult<(Vec<KvPair>, bool)> {
        let key = self.kv.key(begin);
        let end = if end.is_empty() {
            self.kv.data_end()
        } else {
            self.kv.key(end)
        };
        let rev = self.rev.unwrap_or(0);
        let strip = self.kv.data.len();
        let resp = self.kv.retrying("range read", |mut kv| {
            let (key, end) = (key.clone(), end.clone());
            async move {
                kv.get(
                    key,
                    Some(
                        GetOptions::new()
                            .with_range(end)
                            .with_limit(limit as i64)
                            .with_revision(rev),
                    ),
                )
                .await
            }
        })?;
        self.pin(resp.header().map_or(0, |h| h.revision()));
        let pairs = resp
            .kvs()
            .iter()
            .map(|kv| (kv.key()[strip..].to_vec(), kv.value().to_vec()))
            .collect();
        Ok((pairs, resp.more()))
    }
}

impl KvTxn for EtcdTxn<'_> {
    fn get(&mut self, key: &[u8]) -> KvResult<Option<Vec<u8>>> {
        if let Some(w) = self.writes.get(key) {
            return Ok(w.clone());
        }
        if self.in_deleted_range(key) {
            return Ok(None);
        }
        let full = self.kv.key(key);
        let rev = self.rev.unwrap_or(0);
        let resp = self.kv.retrying("read", |mut kv| {
            let full = full.clone();
            async move {
                kv.get(full, Some(GetOptions::new().with_revision(rev)))
                    .await
            }
        })?;
        self.pin(resp.header().map_or(0, |h| h.revision()));
        let (value, mod_rev) = match resp.kvs().first() {
            Some(kv) => (Some(kv.value().to_vec()), kv.mod_revision()),
            None => (None, 0),
        };
        if matches!(self.mode, TxnMode::ReadWrite { .. }) {
            self.reads.entry(key.to_vec()).or_insert(mod_rev);
        }
        Ok(value)
    }

    fn batch_get(&mut self, keys: &[Vec<u8>]) -> KvResult<Vec<Option<Vec<u8>>>> {
        // The first read pins the snapshot; the rest go out concurrently at it.
        let mut out = Vec::with_capacity(keys.len());
        let mut pending = Vec::new();
        for (i, key) in keys.iter().enumerate() {
            if self.rev.is_none() || self.writes.contains_key(key) || self.in_deleted_range(key) {
                out.push(Some(self.get(key)?));
            } else {
                out.push(None);
                pending.push(i);
            }
        }
        if pending.is_empty() {
            return Ok(out.into_iter().map(|v| v.flatten()).collect());
        }
        let rev = self.rev.unwrap_or(0);
        let fulls: Vec<Vec<u8>> = pending.iter().map(|&i| self.kv.key(&keys[i])).collect();
        let results = self.kv.retrying("batch read", |kv| {
            let fulls = fulls.clone();
            async move {
                let gets = fulls.into_iter().map(|k| {
                    let mut kv = kv.clone();
                    async move { kv.get(k, Some(GetOptions::new().with_revision(rev))).await }
                });
                futures::future::try_join_all(gets).await
            }
        })?;
        let tracked = matches!(self.mode, TxnMode::ReadWrite { .. });
        for (&i, resp) in pending.iter().zip(results) {
            let (value, mod_rev) = match resp.kvs().first() {
                Some(kv) => (Some(kv.value().to_vec()), kv.mod_revision()),
                None => (None, 0),
            };
            if tracked {
                self.reads.entry(keys[i].clone()).or_insert(mod_rev);
            }
            out[i] = Some(value);
        }
        Ok(out.into_iter().map(|v| v.flatten()).collect())
    }

    fn scan(&mut self, begin: &[u8], end: &[u8], limit: usize) -> KvResult<Vec<KvPair>> {
        let mut out: Vec<KvPair> = Vec::new();
        if limit == 0 {
            return Ok(out);
        }
        // Buffered writes in range, merged over the store's pages.
        let local: Vec<(Vec<u8>, Option<Vec<u8>>)> = self
            .writes
            .range(begin.to_vec()..)
            .take_while(|(k, _)| end.is_empty() || k.as_slice() < end)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let mut local = local.into_iter().peekable();
        let mut cursor = begin.to_vec();
        let mut store_done = false;
        let mut page: std::collections::VecDeque<KvPair> = Default::default();
        loop {
            if page.is_empty() && !store_done {
                let want = (limit - out.len()).clamp(1, SCAN_PAGE);
                let (pairs, more) = self.fetch(&cursor, end, want)?;
                store_done = !more || pairs.is_empty();
                if let Some((last, _)) = pairs.last() {
                    cursor = last.clone();
                    cursor.push(0);
                }
                page.extend(pairs);
            }
            let next_store = page.front().map(|(k, _)| k.clone());
            let next_local = local.peek().map(|(k, _)| k.clone());
            let take_local = match (&next_store, &next_local) {
                (None, None) => break,
                (Some(_), None) => false,
                (None, Some(_)) => true,
                (Some(s), Some(l)) => l <= s,
            };
            if take_local {
                let (k, v) = local.next().expect("peeked");
                if next_store.as_ref() == Some(&k) {
                    page.pop_front();
                }
                if let Some(v) = v {
                    out.push((k, v));
                }
            } else {
                let (k, v) = page.pop_front().expect("peeked");
                if !self.in_deleted_range(&k) {
                    out.push((k, v));
                }
            }
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }

    fn put(&mut self, key: &[u8], value: &[u8]) -> KvResult<()> {
        if self.in_deleted_range(key) {
            // etcd rejects a put inside a range the same transaction deletes.
            return Err(KvError::Engine(
                "put into a range deleted in the same transaction".into(),
            ));
        }
        self.writes.insert(key.to_vec(), Some(value.to_vec()));
        Ok(())
    }

    fn delete(&mut self, key: &[u8]) -> KvResult<()> {
        if !self.in_deleted_range(key) {
            self.writes.insert(key.to_vec(), None);
        }
        Ok(())
    }

    fn delete_range(&mut self, begin: &[u8], end: &[u8]) -> KvResult<()> {
        let (b, e) = (begin.to_vec(), end.to_vec());
        self.writes
            .retain(|k, _| k < &b || (!e.is_empty() && k >= &e));
        self.deleted_ranges.push((b, e));
        Ok(())
    }

    fn commit(self: Box<Self>) -> KvResult<()> {
        if !matches!(self.mode, TxnMode::ReadWrite { .. })
            || (self.writes.is_empty() && self.deleted_ranges.is_empty())
        {
            return Ok(());
        }
        let kv = self.kv;
        let mut compares = Vec::with_capacity(self.reads.len() + self.writes.len());
        for (key, rev) in &self.reads {
            compares.push(Compare::mod_revision(kv.key(key), CompareOp::Equal, *rev));
        }
        if let Some(rev) = self.rev {
            // Blind writes: nobody may have written the key since our snapshot.
            for key in self.writes.keys().filter(|k| !self.reads.contains_key(*k)) {
                compares.push(Compare::mod_revision(kv.key(key), CompareOp::Less, rev + 1));
            }
        }
        let mut ops = Vec::with_capacity(self.writes.len() + self.deleted_ranges.len());
        for (b, e) in &self.deleted_ranges {
            let end = if e.is_empty() {
                kv.data_end()
            } else {
                kv.key(e)
            };
            ops.push(TxnOp::delete(
                kv.key(b),
                Some(DeleteOptions::new().with_range(end)),
            ));
        }
        for (key, value) in &self.writes {
            ops.push(match value {
                Some(v) => TxnOp::put(kv.key(key), v.clone(), None),
                None => TxnOp::delete(kv.key(key), None),
            });
        }
        // One comparison and one operation are the fence slot's.
        if compares.len() + 1 > MAX_TXN_OPS || ops.len() + 1 > MAX_TXN_OPS {
            return Err(KvError::Engine(format!(
                "transaction too large for etcd: {} comparisons, {} operations (limit {})",
                compares.len() + 1,
                ops.len() + 1,
                MAX_TXN_OPS
            )));
        }
        if kv.commit_txn(compares, ops)? {
            Ok(())
        } else {
            Err(KvError::Conflict)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A single-member etcd on free loopback ports, killed on drop.
    struct Server {
        child: std::process::Child,
        dir: tempfile::TempDir,
        port: u16,
    }

    impl Server {
        fn start() -> Option<Server> {
            let installed = std::process::Command::new("etcd")
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success());
            if !installed {
                assert!(
                    std::env::var_os("KISEKI_REQUIRE_ETCD").is_none(),
                    "etcd is required"
                );
                return None;
            }
            let free = || {
                std::net::TcpListener::bind("127.0.0.1:0")
                    .unwrap()
                    .local_addr()
                    .unwrap()
                    .port()
            };
            let (port, peer) = (free(), free());
            let dir = tempfile::tempdir().unwrap();
            let client = format!("http://127.0.0.1:{port}");
            let peer = format!("http://127.0.0.1:{peer}");
            let child = std::process::Command::new("etcd")
                .arg("--data-dir")
                .arg(dir.path())
                .args([
                    "--listen-client-urls",
                    &client,
                    "--advertise-client-urls",
                    &client,
                ])
                .args([
                    "--listen-peer-urls",
                    &peer,
                    "--initial-advertise-peer-urls",
                    &peer,
                ])
                .args(["--initial-cluster", &format!("default={peer}")])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap();
            Some(Server { child, dir, port })
        }
    }

    impl Drop for Server {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
            let _ = &self.dir;
        }
    }

    /// The fence settles a commit whose reply was lost both ways: it reports a commit
    /// that applied as applied, and one that had not applied yet can never apply.
    #[test]
    fn fences_settle_lost_commits_exactly() {
        let Some(server) = Server::start() else {
            return;
        };
        let kv = EtcdKv::open(&format!("etcd://127.0.0.1:{}/fence", server.port)).unwrap();
        // Warm a slot with one ordinary commit.
        assert!(kv
            .commit_txn(vec![], vec![TxnOp::put(kv.key(b"a"), "1", None)])
            .unwrap());
        let send = |slot: &Slot, nonce: &[u8], key: &[u8]| {
            let txn = Txn::new()
                .when(vec![Compare::mod_revision(
                    slot.key.clone(),
                    CompareOp::Equal,
                    slot.rev,
                )])
                .and_then(vec![
                    TxnOp::put(kv.key(key), "x", None),
                    TxnOp::put(slot.key.clone(), nonce.to_vec(), None),
                ]);
            let mut client = kv.kv.clone();
            kv.wait(async move { client.txn(txn).await.unwrap().succeeded() })
                .unwrap()
        };

        // Applied, reply lost: the fence finds our nonce.
        let slot = kv.take_slot();
        let rev = slot.rev;
        assert!(send(&slot, b"n1", b"applied"));
        assert!(kv
            .fence_slot(
                Slot {
                    key: slot.key.clone(),
                    rev
                },
                b"n1"
            )
            .unwrap());

        // Not applied yet: the fence wins, and the delayed original then fails.
        let slot = kv.take_slot();
        assert!(!kv
            .fence_slot(
                Slot {
                    key: slot.key.clone(),
                    rev: slot.rev
                },
                b"n2"
            )
            .unwrap());
        assert!(!send(&slot, b"n2", b"late"));
        let mut r = kv.begin(TxnMode::ReadOnly).unwrap();
        assert!(r.get(b"applied").unwrap().is_some());
        assert!(r.get(b"late").unwrap().is_none());
    }

    #[test]
    fn urls_parse_and_bad_ones_are_refused() {
        let u = EtcdUrl::parse("etcd://127.0.0.1:2379,h2:23792/team/vol1/").unwrap();
        assert_eq!(
            u.endpoints,
            vec!["http://127.0.0.1:2379", "http://h2:23792"]
        );
        assert_eq!(u.prefix, "team/vol1");
        for bad in [
            "etcd://",
            "etcd://h:2379",
            "etcd://h:2379/",
            "etcd://h/vol",
            "etcd://h:0/vol",
            "etcd://h:99999/vol",
            "etcd://:2379/vol",
            "etcd://h:2379,/vol",
            "etcd://h:2379/vol?x=1",
            "etcd://u:p@h:2379/vol",
        ] {
            assert!(
                matches!(EtcdUrl::parse(bad), Err(KvError::BadUrl(_))),
                "{bad} accepted"
            );
        }
    }
}
