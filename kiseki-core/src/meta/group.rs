//! Group commit: data commits of several files that arrive while another is running
//! are made together, in one engine transaction, as a database groups its log writes.
//!
//! The first caller to find no commit running becomes the leader: it takes up to
//! [`GROUP_MAX`] queued commits (oldest first) and runs them as one batch; the others
//! wait for their result. A batch costs one engine round trip and, when any of its
//! commits must be durable, one WAL sync, instead of one each: what files closed
//! together by a multi-threaded writer (a checkpoint's shards, a dataset's files) or an
//! etcd volume (a round trip through raft per transaction) gain.
//!
//! WAL syncs (fsync's) are grouped the same way, without a bound: one sync that starts
//! after a request arrived covers it, whoever asked for it.
//!
//! Grouping never changes an outcome. The batch runs each commit's body in turn inside
//! the transaction (each sees the ones before it, as if they had committed first), so
//! a conflict retries the batch as a whole; when the batch fails for any other reason,
//! every commit of it is run again on its own, so one file's error (its inode gone, the
//! quota reached) is its alone and the rest commit as they would have without it.

use std::collections::{HashMap, VecDeque};
use std::sync::{Condvar, Mutex, MutexGuard};

use crate::error::{Error, Result};

/// Most commits in one batch: each touches a handful of keys, and etcd refuses a
/// transaction of more than 128 operations.
pub(crate) const GROUP_MAX: usize = 8;

struct State<R, T> {
    queue: VecDeque<(u64, R)>,
    results: HashMap<u64, Result<T>>,
    leading: bool,
    next_ticket: u64,
}

/// A queue of requests of type `R`, committed in batches, each answered with a `T`.
pub(crate) struct Group<R, T> {
    state: Mutex<State<R, T>>,
    done: Condvar,
    max: usize,
}

impl<R, T> Default for Group<R, T> {
    fn default() -> Self {
        Self::with_max(GROUP_MAX)
    }
}

impl<R, T> Group<R, T> {
    /// A group whose batches hold at most `max` requests.
    pub fn with_max(max: usize) -> Self {
        Group {
            max,
            state: Mutex::new(State {
                queue: VecDeque::new(),
                results: HashMap::new(),
                leading: false,
                next_ticket: 0,
            }),
            done: Condvar::new(),
        }
    }
}

/// Gives every ticket of a batch a result even if running it panicked, so that its
/// waiters wake up, and hands the leadership on.
struct Leading<'a, R, T> {
    group: &'a Group<R, T>,
    tickets: Vec<u64>,
}

impl<R, T> Drop for Leading<'_, R, T> {
    fn drop(&mut self) {
        let mut st = self.group.lock();
        for t in self.tickets.drain(..) {
            st.results.entry(t).or_insert_with(|| {
                Err(Error::Io(std::io::Error::other(
                    "a grouped metadata commit panicked",
                )))
            });
        }
        st.leading = false;
        drop(st);
        self.group.done.notify_all();
    }
}

impl<R, T> Group<R, T> {
    fn lock(&self) -> MutexGuard<'_, State<R, T>> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Commits `req` alone or with others queued meanwhile; `run` commits a batch and
    /// returns one result per request, in order.
    pub fn submit(&self, req: R, run: impl Fn(Vec<R>) -> Vec<Result<T>>) -> Result<T> {
        let mut st = self.lock();
        let ticket = st.next_ticket;
        st.next_ticket += 1;
        st.queue.push_back((ticket, req));
        loop {
            if let Some(r) = st.results.remove(&ticket) {
                return r;
            }
            if st.leading {
                st = self.done.wait(st).unwrap_or_else(|p| p.into_inner());
                continue;
            }
            st.leading = true;
            let take = st.queue.len().min(self.max);
            let (tickets, batch): (Vec<u64>, Vec<R>) = st.queue.drain(..take).unzip();
            drop(st);
            let mut leading = Leading {
                group: self,
                tickets: tickets.clone(),
            };
            let results = run(batch);
            debug_assert_eq!(results.len(), tickets.len());
            {
                let mut st = self.lock();
                for (t, r) in tickets.into_iter().zip(results) {
                    st.results.insert(t, r);
                }
            }
            leading.tickets.clear();
            drop(leading);
            st = self.lock();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    #[test]
    fn concurrent_commits_share_batches_and_each_gets_its_own_result() {
        let group = Arc::new(Group::<u64, u64>::default());
        let batches = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..32u64)
            .map(|i| {
                let (group, batches) = (group.clone(), batches.clone());
                std::thread::spawn(move || {
                    group.submit(i, |batch| {
                        batches.fetch_add(1, Ordering::SeqCst);
                        assert!(batch.len() <= GROUP_MAX);
                        std::thread::sleep(std::time::Duration::from_millis(5));
                        batch
                            .into_iter()
                            .map(|n| {
                                if n % 5 == 0 {
                                    Err(Error::NotFound(n.to_string()))
                                } else {
                                    Ok(n)
                                }
                            })
                            .collect()
                    })
                })
            })
            .collect();
        for (i, t) in threads.into_iter().enumerate() {
            match t.join().unwrap() {
                Ok(n) => assert_eq!(n, i as u64),
                Err(e) => {
                    assert_eq!(i % 5, 0);
                    assert!(matches!(e, Error::NotFound(ref s) if *s == i.to_string()));
                }
            }
        }
        // 32 callers against 5 ms batches: most of them shared one.
        assert!(batches.load(Ordering::SeqCst) < 32);
    }

    #[test]
    fn a_panicking_batch_fails_its_requests_and_frees_the_group() {
        let group = Arc::new(Group::<u64, u64>::default());
        let g = group.clone();
        let panicked = std::thread::spawn(move || {
            let _ = g.submit(1, |_| panic!("commit bug"));
        })
        .join();
        assert!(panicked.is_err());
        let r = group.submit(2, |b| b.into_iter().map(Ok).collect());
        assert_eq!(r.unwrap(), 2);
    }
}
