//! The lookup worker pool under load: a worker never waits on the pool itself, jobs
//! whose caller has given up are not run, and the cache's single flight survives an
//! abandoned leader.
//!
//! A binary of its own because the pool is process-global: these tests need all of its
//! workers, so they run one at a time (`SERIAL`) and no other test shares the process.
//! Only in-memory resolvers are used; every wait is bounded.

use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, Condvar, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use reseau::Error;
use reseau::resolve::{CachingResolver, Resolver};

/// The pool's worker cap (`MAX_WORKERS` in src/resolve/pool.rs).
const WORKERS: usize = 64;

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn lo() -> Vec<IpAddr> {
    vec!["127.0.0.1".parse().unwrap()]
}

/// Polls `cond` until true or `limit` passes.
fn eventually(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + limit;
    while Instant::now() < end {
        if cond() {
            return true;
        }
        thread::sleep(Duration::from_millis(5));
    }
    cond()
}

/// Holds every caller until the test opens it (bounded, so a broken test cannot hang).
#[derive(Debug, Default)]
struct Gate {
    state: Mutex<(usize, bool)>,
    cv: Condvar,
}

impl Gate {
    fn pass(&self) {
        let mut st = self.state.lock().unwrap();
        st.0 += 1;
        self.cv.notify_all();
        let end = Instant::now() + Duration::from_secs(60);
        while !st.1 && Instant::now() < end {
            st = self
                .cv
                .wait_timeout(st, Duration::from_millis(100))
                .unwrap()
                .0;
        }
    }

    fn arrived(&self) -> usize {
        self.state.lock().unwrap().0
    }

    fn open(&self) {
        self.state.lock().unwrap().1 = true;
        self.cv.notify_all();
    }
}

/// Answers at once. Implements only `lookup`, so `lookup_until` with a deadline runs it
/// on the pool — the same path `SystemResolver` takes for `getaddrinfo`.
#[derive(Debug)]
struct Quick;

impl Resolver for Quick {
    fn lookup(&self, _host: &str) -> reseau::Result<Vec<IpAddr>> {
        Ok(lo())
    }
}

/// A cache parent that waits at a gate, then resolves through the pool, as
/// `SystemResolver::lookup` does (which waits without limit; 3 s here so that the old
/// deadlock shows up as failures instead of a hang).
#[derive(Debug)]
struct GatedViaPool {
    gate: Arc<Gate>,
}

impl Resolver for GatedViaPool {
    fn lookup(&self, host: &str) -> reseau::Result<Vec<IpAddr>> {
        self.gate.pass();
        let inner: Arc<dyn Resolver> = Arc::new(Quick);
        inner.lookup_until(host, Some(Instant::now() + Duration::from_secs(3)))
    }
}

/// Regression: a cache miss with a deadline runs its parent on a pool worker; a parent
/// that itself asks the pool (`SystemResolver`) used to queue behind the very jobs
/// holding every worker, so with >= 64 concurrent misses every lookup hung.
#[test]
fn pool_worker_never_waits_on_the_pool() {
    let _serial = serial();
    let gate = Arc::new(Gate::default());
    let cache = Arc::new(CachingResolver::new(Arc::new(GatedViaPool {
        gate: gate.clone(),
    })));
    let start = Instant::now();
    let callers: Vec<_> = (0..200)
        .map(|i| {
            let cache = cache.clone();
            thread::spawn(move || {
                let host = format!("h{i}.test");
                let deadline = Instant::now() + Duration::from_secs(30);
                cache.lookup_until(&host, Some(deadline))
            })
        })
        .collect();
    // Every worker is now inside a parent lookup.
    assert!(
        eventually(Duration::from_secs(20), || gate.arrived() >= WORKERS),
        "only {} parent lookups started",
        gate.arrived()
    );
    gate.open();
    let mut failed = Vec::new();
    for c in callers {
        if let Err(e) = c.join().unwrap() {
            failed.push(e);
        }
    }
    assert!(
        failed.is_empty(),
        "{} of 200 lookups failed, first: {:?}",
        failed.len(),
        failed.first()
    );
    assert_eq!(gate.arrived(), 200);
    assert_eq!(cache.stats().parent_lookups, 200);
    // The pool is still usable by anyone else.
    let fresh: Arc<dyn Resolver> = Arc::new(Quick);
    let t = Instant::now();
    let got = fresh.lookup_until("fresh.test", Some(t + Duration::from_secs(5)));
    assert_eq!(got.unwrap(), lo());
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    assert!(
        start.elapsed() < Duration::from_secs(40),
        "{:?}",
        start.elapsed()
    );
}

/// A cache parent that waits at a gate, then looks `same.test` up in a shared cache.
#[derive(Debug)]
struct GatedViaCache {
    gate: Arc<Gate>,
    inner: Arc<CachingResolver>,
}

impl Resolver for GatedViaCache {
    fn lookup(&self, _host: &str) -> reseau::Result<Vec<IpAddr>> {
        self.gate.pass();
        let deadline = Instant::now() + Duration::from_secs(3);
        self.inner.clone().lookup_until("same.test", Some(deadline))
    }
}

/// A pool worker that joins a cache flight whose job still waits in the queue runs the
/// lookup itself instead of waiting for a worker (possibly itself) to get to it.
#[test]
fn pool_worker_runs_a_queued_flight_itself() {
    let _serial = serial();
    let gate = Arc::new(Gate::default());
    let inner = Arc::new(CachingResolver::new(Arc::new(Quick)));
    let outer = Arc::new(CachingResolver::new(Arc::new(GatedViaCache {
        gate: gate.clone(),
        inner: inner.clone(),
    })));
    let callers: Vec<_> = (0..100)
        .map(|i| {
            let outer = outer.clone();
            thread::spawn(move || {
                let deadline = Instant::now() + Duration::from_secs(30);
                outer.lookup_until(&format!("o{i}.test"), Some(deadline))
            })
        })
        .collect();
    assert!(
        eventually(Duration::from_secs(20), || gate.arrived() >= WORKERS),
        "only {} parent lookups started",
        gate.arrived()
    );
    // Its job queues behind the 36 outer misses still waiting.
    let leader = {
        let inner = inner.clone();
        thread::spawn(move || {
            inner.lookup_until("same.test", Some(Instant::now() + Duration::from_secs(30)))
        })
    };
    assert!(eventually(Duration::from_secs(10), || inner.stats().misses == 1));
    gate.open();
    for c in callers {
        assert_eq!(c.join().unwrap().ok(), Some(lo()));
    }
    assert_eq!(leader.join().unwrap().ok(), Some(lo()));
    assert_eq!(inner.stats().parent_lookups, 1);
}

/// Sleeps `delay` per lookup; counts lookups started and finished.
#[derive(Debug)]
struct Slow {
    delay: Duration,
    started: AtomicUsize,
    finished: AtomicUsize,
}

impl Slow {
    fn new(delay: Duration) -> Arc<Slow> {
        Arc::new(Slow {
            delay,
            started: AtomicUsize::new(0),
            finished: AtomicUsize::new(0),
        })
    }

    fn started(&self) -> usize {
        self.started.load(Ordering::SeqCst)
    }

    /// Waits until no lookup is running, then returns how many ran.
    fn settled(&self) -> usize {
        assert!(
            eventually(Duration::from_secs(10), || self.started()
                == self.finished.load(Ordering::SeqCst)),
            "lookups still running"
        );
        self.started()
    }
}

impl Resolver for Slow {
    fn lookup(&self, _host: &str) -> reseau::Result<Vec<IpAddr>> {
        self.started.fetch_add(1, Ordering::SeqCst);
        thread::sleep(self.delay);
        self.finished.fetch_add(1, Ordering::SeqCst);
        Ok(lo())
    }
}

/// `n` concurrent lookups through `r`, each given up after 20 ms; all must time out.
fn abandon_many(r: &Arc<dyn Resolver>, n: usize) {
    let barrier = Arc::new(Barrier::new(n));
    let callers: Vec<_> = (0..n)
        .map(|i| {
            let r = r.clone();
            let barrier = barrier.clone();
            thread::Builder::new()
                .stack_size(128 * 1024)
                .spawn(move || {
                    barrier.wait();
                    let deadline = Instant::now() + Duration::from_millis(20);
                    r.lookup_until(&format!("a{i}.test"), Some(deadline))
                })
                .unwrap()
        })
        .collect();
    for c in callers {
        let res = c.join().unwrap();
        assert!(matches!(res, Err(Error::DeadlineExceeded)), "{res:?}");
    }
}

/// 640 lookups through `wrap(slow)` abandoned after 20 ms, then a fresh one with a
/// 500 ms budget: it must succeed, and most abandoned lookups must never reach `slow`.
fn abandoned_then_fresh(wrap: impl FnOnce(Arc<Slow>) -> Arc<dyn Resolver>) {
    let _serial = serial();
    let slow = Slow::new(Duration::from_millis(100));
    let r = wrap(slow.clone());
    abandon_many(&r, 640);
    let t = Instant::now();
    let got = r.lookup_until("fresh.test", Some(t + Duration::from_millis(500)));
    let took = t.elapsed();
    assert_eq!(got.ok(), Some(lo()), "fresh lookup failed after {took:?}");
    // Only jobs a worker picked up within their 20 ms ran: one per worker here (65
    // with the fresh one), a few rounds while a loaded machine is slow to submit them
    // all; the old pool ran all 641.
    let ran = slow.settled();
    assert!(ran <= 4 * WORKERS + 1, "{ran} of 641 lookups ran");
}

/// Regression: lookups whose callers had given up still ran, in order, ahead of live
/// ones: after 640 abandoned 100 ms lookups a fresh one with a 500 ms budget timed out.
#[test]
fn abandoned_lookups_do_not_run() {
    abandoned_then_fresh(|slow| slow);
}

/// The same through a cache: abandoned misses do not run their parent either.
#[test]
fn abandoned_cache_misses_do_not_run() {
    abandoned_then_fresh(|slow| Arc::new(CachingResolver::new(slow)));
}

/// A cache miss whose leader gave up before a worker was free still runs for a caller
/// that joined the flight with a longer deadline.
#[test]
fn cache_flight_outlives_an_abandoned_leader() {
    let _serial = serial();
    let gate = Arc::new(Gate::default());
    let blockers: Vec<_> = (0..WORKERS)
        .map(|_| {
            let gate = gate.clone();
            let r: Arc<dyn Resolver> = Arc::new(Blocking(gate));
            thread::spawn(move || {
                r.lookup_until("b.test", Some(Instant::now() + Duration::from_secs(30)))
            })
        })
        .collect();
    assert!(
        eventually(Duration::from_secs(20), || gate.arrived() >= WORKERS),
        "only {} workers busy",
        gate.arrived()
    );
    let slow = Slow::new(Duration::ZERO);
    let cache = Arc::new(CachingResolver::new(slow.clone()));
    let leader = cache
        .clone()
        .lookup_until("x.test", Some(Instant::now() + Duration::from_millis(20)));
    assert!(matches!(leader, Err(Error::DeadlineExceeded)), "{leader:?}");
    let follower = {
        let cache = cache.clone();
        thread::spawn(move || {
            cache.lookup_until("x.test", Some(Instant::now() + Duration::from_secs(20)))
        })
    };
    assert!(eventually(Duration::from_secs(10), || cache.stats().shared == 1));
    gate.open();
    assert_eq!(follower.join().unwrap().unwrap(), lo());
    assert_eq!(slow.settled(), 1);
    for b in blockers {
        assert_eq!(b.join().unwrap().unwrap(), lo());
    }
}

/// Waits at a gate, then answers.
#[derive(Debug)]
struct Blocking(Arc<Gate>);

impl Resolver for Blocking {
    fn lookup(&self, _host: &str) -> reseau::Result<Vec<IpAddr>> {
        self.0.pass();
        Ok(lo())
    }
}
