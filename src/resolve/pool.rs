//! The lookup worker pool: blocking lookups run here so the caller can stop waiting at
//! a deadline (the worker finishes in the background and its answer is dropped).
//!
//! Elastic rather than fixed: an abandoned lookup keeps its worker busy until libc (or a
//! custom resolver) returns, so a fixed set of 4 could be starved by a few stuck names.
//! Workers are spawned on demand up to [`MAX_WORKERS`] and exit after [`IDLE`] unused.
//!
//! Three rules keep it live under load:
//! - **A worker never waits on the pool.** Code already running on a worker that asks
//!   for pool work ([`run_until`], a cache miss) runs it inline. Otherwise layered
//!   resolvers (a cache over the system resolver) fill every worker with jobs waiting
//!   for jobs queued behind them, and every later lookup hangs.
//! - **Nobody waiting, nothing run.** A [`Task`] knows until when its result is wanted
//!   ([`Task::due`]); a worker cancels instead of starting a task whose time has
//!   passed, so abandoned lookups do not delay live ones.
//! - **Bounded queue.** At most [`QUEUE_CAP`] tasks wait; past that (after dropping
//!   expired ones) a new task is refused at once with [`Error::Lookup`]
//!   [`QUEUE_FULL`]: under that much backlog a fast, clear failure beats a wait that
//!   would end at the caller's deadline anyway.

use std::cell::Cell;
use std::collections::VecDeque;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::mpsc::{self, RecvTimeoutError, SyncSender};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use crate::{Error, Result};

/// Above this many workers, tasks queue (Go caps concurrent cgo lookups too).
pub(crate) const MAX_WORKERS: usize = 64;
/// Tasks allowed to wait for a worker: 16 rounds of a full pool.
pub(crate) const QUEUE_CAP: usize = 16 * MAX_WORKERS;
/// The [`Error::Lookup`] message of a task refused because the queue is full.
pub(crate) const QUEUE_FULL: &str = "resolver queue full";
/// An idle worker exits after this long.
const IDLE: Duration = Duration::from_secs(30);

/// Why a task is given back without being run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Cancel {
    /// Its [`due`](Task::due) time passed before a worker got to it.
    Expired,
    /// The queue was full when it was submitted.
    Full,
}

/// A unit of pool work.
pub(crate) trait Task: Send + 'static {
    /// Until when somebody waits for the result (`None`: until it is done). Read when
    /// a worker picks the task up and when a full queue is purged; may move later
    /// while the task waits (a cache flight gains a patient waiter).
    fn due(&self) -> Option<Instant>;
    /// Does the work, on a worker.
    fn run(self: Box<Self>);
    /// Gives the task up without running it (on a worker, or on the submitting thread
    /// for [`Cancel::Full`]); never called with the pool's lock held.
    fn cancel(self: Box<Self>, why: Cancel);
}

thread_local! {
    static ON_WORKER: Cell<bool> = const { Cell::new(false) };
}

/// Whether the current thread is a pool worker (which must never wait on the pool).
pub(crate) fn on_worker() -> bool {
    ON_WORKER.get()
}

/// The [`Error::Lookup`] for a task refused by a full queue.
pub(crate) fn queue_full(name: &str) -> Error {
    Error::Lookup {
        msg: QUEUE_FULL.to_string(),
        name: name.to_string(),
    }
}

/// Whether `e` is a refusal by a full queue (an overload, never cached).
pub(crate) fn is_queue_full(e: &Error) -> bool {
    matches!(e, Error::Lookup { msg, .. } if msg == QUEUE_FULL)
}

fn expired(due: Option<Instant>, now: Instant) -> bool {
    due.is_some_and(|d| now >= d)
}

fn cancel_caught(task: Box<dyn Task>, why: Cancel) {
    let _ = catch_unwind(AssertUnwindSafe(|| task.cancel(why)));
}

struct State {
    queue: VecDeque<Box<dyn Task>>,
    workers: usize,
    idle: usize,
}

/// A pool; the crate uses the one [`POOL`], tests build small ones.
struct Pool {
    state: Mutex<State>,
    cv: Condvar,
    max_workers: usize,
    cap: usize,
}

static POOL: Pool = Pool::new(MAX_WORKERS, QUEUE_CAP);

impl Pool {
    const fn new(max_workers: usize, cap: usize) -> Pool {
        Pool {
            state: Mutex::new(State {
                queue: VecDeque::new(),
                workers: 0,
                idle: 0,
            }),
            cv: Condvar::new(),
            max_workers,
            cap,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Tasks run and are cancelled outside the lock, unwind-caught, so poisoning
        // cannot leave the state inconsistent.
        crate::util::lock(&self.state)
    }

    /// Queues `task` (spawning a worker when no idle one will pick it up), or cancels
    /// it with [`Cancel::Full`] when the queue is full even without expired tasks.
    fn submit(&'static self, task: Box<dyn Task>) {
        let mut st = self.lock();
        let mut dead = Vec::new();
        if st.queue.len() >= self.cap {
            let now = Instant::now();
            let (gone, live): (VecDeque<_>, VecDeque<_>) =
                st.queue.drain(..).partition(|t| expired(t.due(), now));
            st.queue = live;
            dead.extend(gone);
        }
        let refused = if st.queue.len() >= self.cap {
            Some(task)
        } else {
            st.queue.push_back(task);
            None
        };
        let mut inline = None;
        if refused.is_none() && st.idle < st.queue.len() && st.workers < self.max_workers {
            let started = thread::Builder::new()
                .name("reseau-resolver".into())
                .spawn(move || self.worker());
            match started {
                Ok(_) => st.workers += 1,
                // No thread at all: run here rather than never (loses abandonment only).
                Err(_) if st.workers == 0 => inline = st.queue.pop_back(),
                Err(_) => {}
            }
        }
        drop(st);
        self.cv.notify_one();
        for t in dead {
            cancel_caught(t, Cancel::Expired);
        }
        if let Some(t) = refused {
            t.cancel(Cancel::Full);
        }
        if let Some(t) = inline {
            let _ = catch_unwind(AssertUnwindSafe(|| t.run()));
        }
    }

    fn worker(&self) {
        ON_WORKER.set(true);
        loop {
            let task = {
                let mut st = self.lock();
                loop {
                    if let Some(task) = st.queue.pop_front() {
                        break task;
                    }
                    st.idle += 1;
                    let (g, res) = self
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
            if expired(task.due(), Instant::now()) {
                cancel_caught(task, Cancel::Expired);
            } else {
                let _ = catch_unwind(AssertUnwindSafe(|| task.run()));
            }
        }
    }
}

/// Queues `task` on the pool (see [`Task::cancel`] for when it is not run).
pub(crate) fn spawn(task: Box<dyn Task>) {
    POOL.submit(task);
}

/// [`run_until`]'s task: `f`, and the channel its waiter listens on.
struct Call<T, F> {
    deadline: Option<Instant>,
    name: String,
    f: F,
    tx: SyncSender<Result<T>>,
}

impl<T, F> Task for Call<T, F>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T> + Send + 'static,
{
    fn due(&self) -> Option<Instant> {
        self.deadline
    }

    fn run(self: Box<Self>) {
        let Call { f, tx, .. } = *self;
        // Capacity 1: the worker never blocks on a reply nobody waits for any more.
        let _ = tx.send(f());
    }

    fn cancel(self: Box<Self>, why: Cancel) {
        let err = match why {
            Cancel::Expired => Error::DeadlineExceeded,
            Cancel::Full => queue_full(&self.name),
        };
        let _ = self.tx.try_send(Err(err));
    }
}

fn panicked(name: &str) -> Error {
    Error::Lookup {
        msg: "resolver panicked".to_string(),
        name: name.to_string(),
    }
}

/// Runs `f` on the pool and waits for its answer until `deadline` (`None` = no limit).
/// On a pool worker `f` runs inline instead (the deadline is then checked only
/// before): a worker waiting on the pool could wait on a job queued behind itself.
///
/// # Errors
/// `f`'s error; [`Error::DeadlineExceeded`] when the deadline passes first (also when it
/// has already passed: then `f` is not started); [`Error::Lookup`] `resolver panicked`
/// (name = `name`) if `f` panicked; [`Error::Lookup`] [`QUEUE_FULL`] when the queue is
/// full.
pub(crate) fn run_until<T: Send + 'static>(
    name: &str,
    deadline: Option<Instant>,
    f: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    if expired(deadline, Instant::now()) {
        return Err(Error::DeadlineExceeded);
    }
    if on_worker() {
        return catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|_| Err(panicked(name)));
    }
    let (tx, rx) = mpsc::sync_channel(1);
    spawn(Box::new(Call {
        deadline,
        name: name.to_string(),
        f,
        tx,
    }));
    match deadline {
        None => rx.recv().unwrap_or_else(|_| Err(panicked(name))),
        Some(d) => match rx.recv_timeout(d.saturating_duration_since(Instant::now())) {
            Ok(res) => res,
            Err(RecvTimeoutError::Timeout) => Err(Error::DeadlineExceeded),
            Err(RecvTimeoutError::Disconnected) => Err(panicked(name)),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::mpsc::Receiver;

    /// A task that reports what happened to it, optionally waiting for a go signal.
    struct Probe {
        due: Option<Instant>,
        go: Option<Receiver<()>>,
        done: SyncSender<std::result::Result<(), Cancel>>,
        on_worker: Arc<AtomicUsize>,
    }

    impl Task for Probe {
        fn due(&self) -> Option<Instant> {
            self.due
        }
        fn run(self: Box<Self>) {
            if on_worker() {
                self.on_worker.fetch_add(1, Ordering::SeqCst);
            }
            if let Some(go) = &self.go {
                let _ = go.recv_timeout(Duration::from_secs(20));
            }
            let _ = self.done.send(Ok(()));
        }
        fn cancel(self: Box<Self>, why: Cancel) {
            let _ = self.done.send(Err(why));
        }
    }

    fn small_pool(workers: usize, cap: usize) -> &'static Pool {
        Box::leak(Box::new(Pool::new(workers, cap)))
    }

    /// Blocks every worker of `pool`; dropping the senders releases them.
    fn block_workers(
        pool: &'static Pool,
        n: usize,
        done: &SyncSender<std::result::Result<(), Cancel>>,
        on_worker: &Arc<AtomicUsize>,
    ) -> Vec<mpsc::Sender<()>> {
        (0..n)
            .map(|_| {
                let (go_tx, go) = mpsc::channel();
                pool.submit(Box::new(Probe {
                    due: None,
                    go: Some(go),
                    done: done.clone(),
                    on_worker: on_worker.clone(),
                }));
                go_tx
            })
            .collect()
    }

    #[test]
    fn full_queue_refuses_at_once_and_expired_tasks_are_skipped() {
        let pool = small_pool(2, 3);
        let (done, results) = mpsc::sync_channel(64);
        let on_worker = Arc::new(AtomicUsize::new(0));
        let gos = block_workers(pool, 2, &done, &on_worker);
        let probe = |due| {
            Box::new(Probe {
                due,
                go: None,
                done: done.clone(),
                on_worker: on_worker.clone(),
            })
        };
        // Both workers are blocked (or about to pick a blocker): fill the queue.
        let end = Instant::now() + Duration::from_secs(20);
        loop {
            let busy = {
                let st = pool.lock();
                st.workers == 2 && st.queue.is_empty()
            };
            if busy {
                break;
            }
            assert!(Instant::now() < end, "workers never started");
            thread::sleep(Duration::from_millis(2));
        }
        let far = Some(Instant::now() + Duration::from_secs(30));
        // Long enough to be still live when the queue first fills on a slow machine.
        let soon = Instant::now() + Duration::from_millis(500);
        pool.submit(probe(Some(soon)));
        pool.submit(probe(far));
        pool.submit(probe(far));
        let t = Instant::now();
        pool.submit(probe(far));
        assert_eq!(
            results.recv_timeout(Duration::from_secs(5)),
            Ok(Err(Cancel::Full))
        );
        assert!(t.elapsed() < Duration::from_secs(2));
        // Once `soon` has expired, a full queue drops it to make room.
        while Instant::now() < soon {
            thread::sleep(Duration::from_millis(5));
        }
        pool.submit(probe(far));
        assert_eq!(
            results.recv_timeout(Duration::from_secs(5)),
            Ok(Err(Cancel::Expired))
        );
        drop(gos);
        let mut ran = 0;
        for _ in 0..5 {
            let r = results.recv_timeout(Duration::from_secs(20));
            assert_eq!(r, Ok(Ok(())));
            ran += 1;
        }
        assert_eq!(ran, 5);
        assert_eq!(on_worker.load(Ordering::SeqCst), 5);
    }

    #[test]
    fn worker_skips_a_task_whose_waiter_left() {
        let pool = small_pool(1, 8);
        let (done, results) = mpsc::sync_channel(8);
        let on_worker = Arc::new(AtomicUsize::new(0));
        let gos = block_workers(pool, 1, &done, &on_worker);
        pool.submit(Box::new(Probe {
            due: Some(Instant::now() + Duration::from_millis(10)),
            go: None,
            done: done.clone(),
            on_worker: on_worker.clone(),
        }));
        thread::sleep(Duration::from_millis(20));
        drop(gos);
        assert_eq!(
            results.recv_timeout(Duration::from_secs(20)),
            Ok(Ok(())),
            "the blocker"
        );
        assert_eq!(
            results.recv_timeout(Duration::from_secs(20)),
            Ok(Err(Cancel::Expired))
        );
    }

    #[test]
    fn run_until_on_a_worker_runs_inline() {
        let pool = small_pool(1, 8);
        let (done, results) = mpsc::sync_channel(1);
        pool.submit(Box::new(Call {
            deadline: None,
            name: "n".into(),
            f: move || {
                // Would wait on the global pool from a worker: inline instead, on
                // this very thread.
                let me = thread::current().id();
                run_until(
                    "n",
                    Some(Instant::now() + Duration::from_secs(20)),
                    move || Ok(thread::current().id() == me),
                )
            },
            tx: done,
        }));
        assert_eq!(
            results.recv_timeout(Duration::from_secs(20)).unwrap().ok(),
            Some(true)
        );
        assert!(!on_worker());
    }
}
