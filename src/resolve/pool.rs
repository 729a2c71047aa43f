//! The lookup worker pool: blocking lookups run here so the caller can stop waiting at
//! a deadline (the worker finishes in the background and its answer is dropped).
//!
//! Elastic rather than fixed: an abandoned lookup keeps its worker busy until libc (or a
//! custom resolver) returns, so a fixed set of 4 could be starved by a few stuck names.
//! Workers are spawned on demand up to [`MAX_WORKERS`] and exit after [`IDLE`] unused.

use std::collections::VecDeque;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use crate::{Error, Result};

type Job = Box<dyn FnOnce() + Send + 'static>;

/// Above this many workers, jobs queue (Go caps concurrent cgo lookups too).
const MAX_WORKERS: usize = 64;
/// An idle worker exits after this long.
const IDLE: Duration = Duration::from_secs(30);

struct State {
    queue: VecDeque<Job>,
    workers: usize,
    idle: usize,
}

struct Pool {
    state: Mutex<State>,
    cv: Condvar,
}

static POOL: Pool = Pool {
    state: Mutex::new(State {
        queue: VecDeque::new(),
        workers: 0,
        idle: 0,
    }),
    cv: Condvar::new(),
};

fn lock() -> MutexGuard<'static, State> {
    // Jobs run outside the lock and are unwind-caught, so poisoning cannot leave the
    // state inconsistent.
    crate::poll::lock(&POOL.state)
}

/// Queues `job`; spawns a worker when no idle one will pick it up.
pub(crate) fn spawn(job: impl FnOnce() + Send + 'static) {
    let mut st = lock();
    st.queue.push_back(Box::new(job));
    if st.idle < st.queue.len() && st.workers < MAX_WORKERS {
        let started = thread::Builder::new()
            .name("reseau-resolver".into())
            .spawn(worker);
        match started {
            Ok(_) => st.workers += 1,
            Err(_) if st.workers == 0 => {
                // No thread at all: run here rather than never (loses abandonment only).
                let job = st.queue.pop_back().expect("just pushed");
                drop(st);
                let _ = catch_unwind(AssertUnwindSafe(job));
                return;
            }
            Err(_) => {}
        }
    }
    drop(st);
    POOL.cv.notify_one();
}

fn worker() {
    loop {
        let job = {
            let mut st = lock();
            loop {
                if let Some(job) = st.queue.pop_front() {
                    break job;
                }
                st.idle += 1;
                let (g, res) = POOL
                    .cv
                    .wait_timeout(st, IDLE)
                    .unwrap_or_else(|e| e.into_inner());
                st = g;
                st.idle -= 1;
                if res.timed_out() && st.queue.is_empty() {
                    st.workers -= 1;
                    return;
                }
            }
        };
        // A panicking resolver must not take the worker (and its count) with it; the
        // waiter sees its reply channel disconnect.
        let _ = catch_unwind(AssertUnwindSafe(job));
    }
}

/// Runs `f` on the pool and waits for its answer until `deadline` (`None` = no limit).
///
/// # Errors
/// `f`'s error; [`Error::DeadlineExceeded`] when the deadline passes first (also when it
/// has already passed: then `f` is not started); [`Error::Lookup`] `resolver panicked`
/// (name = `name`) if `f` panicked.
pub(crate) fn run_until<T: Send + 'static>(
    name: &str,
    deadline: Option<Instant>,
    f: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    if deadline.is_some_and(|d| Instant::now() >= d) {
        return Err(Error::DeadlineExceeded);
    }
    let (tx, rx) = mpsc::sync_channel(1);
    // Capacity 1: the worker never blocks on a reply nobody waits for any more.
    spawn(move || {
        let _ = tx.send(f());
    });
    let panicked = || Error::Lookup {
        msg: "resolver panicked".to_string(),
        name: name.to_string(),
    };
    match deadline {
        None => rx.recv().unwrap_or_else(|_| Err(panicked())),
        Some(d) => match rx.recv_timeout(d.saturating_duration_since(Instant::now())) {
            Ok(res) => res,
            Err(RecvTimeoutError::Timeout) => Err(Error::DeadlineExceeded),
            Err(RecvTimeoutError::Disconnected) => Err(panicked()),
        },
    }
}
