//! [`CachingResolver`]: TTL cache with stale-while-refresh, negative caching, LRU
//! eviction and single-flight coalescing over any parent resolver.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use super::hostport::host_key;
use super::pool::{self, Cancel, Task};
use super::resolver::{Resolver, check_host};
use crate::util::lock;
use crate::{Error, Result};

/// What the cache has done so far (for tests and metrics).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CacheStats {
    /// Answers served from a fresh entry.
    pub hits: u64,
    /// Answers served from an expired entry inside the stale window.
    pub stale_hits: u64,
    /// Failures served from a negative entry.
    pub negative_hits: u64,
    /// Lookups that found nothing usable (including those that joined a flight).
    pub misses: u64,
    /// Misses that joined a lookup already in flight instead of starting one.
    pub shared: u64,
    /// Lookups passed to the parent (misses that led a flight, and refreshes).
    pub parent_lookups: u64,
}

#[derive(Debug, Clone, Copy)]
struct Cfg {
    ttl: Duration,
    stale_ttl: Duration,
    negative_ttl: Duration,
    max_hosts: usize,
}

#[derive(Debug)]
struct Entry {
    /// `Err(msg)`: a cached [`Error::Lookup`].
    answer: std::result::Result<Vec<IpAddr>, String>,
    /// `None`: never (the ttl overflowed `Instant`).
    expires: Option<Instant>,
    /// Logical clock of the last use, for LRU eviction.
    used: u64,
    refreshing: bool,
}

/// One parent lookup that every concurrent miss of the same host waits for.
#[derive(Debug, Default)]
struct Flight {
    result: Mutex<Option<Result<Vec<IpAddr>>>>,
    done: Condvar,
    /// Until when some caller waits (`None`: one waits without limit): the queued
    /// job is skipped once this passes. Only moves later, under the state lock.
    until: Mutex<Option<Instant>>,
    /// Set by whoever runs the parent lookup (a queued job, or a pool worker that
    /// joined the flight and would otherwise wait on the queue).
    started: AtomicBool,
}

impl Flight {
    fn new(deadline: Option<Instant>) -> Flight {
        Flight {
            until: Mutex::new(deadline),
            ..Flight::default()
        }
    }

    /// Keeps the flight wanted until `deadline` too.
    fn extend(&self, deadline: Option<Instant>) {
        let mut until = lock(&self.until);
        *until = match (*until, deadline) {
            (Some(a), Some(b)) => Some(a.max(b)),
            _ => None,
        };
    }

    fn claim(&self) -> bool {
        !self.started.swap(true, Ordering::SeqCst)
    }
}

#[derive(Debug, Default)]
struct State {
    entries: HashMap<String, Entry>,
    flights: HashMap<String, Arc<Flight>>,
    clock: u64,
    stats: CacheStats,
}

type Shared = Arc<Mutex<State>>;

fn later(now: Instant, d: Duration) -> Option<Instant> {
    now.checked_add(d)
}

/// A cache in front of another resolver.
///
/// - **Fresh** entries (younger than [`ttl`](CachingResolver::ttl), default 30 s) are
///   answered from memory.
/// - **Stale** entries (expired less than [`stale_ttl`](CachingResolver::stale_ttl)
///   ago, default 0 = off) are still answered, and the first such answer starts one
///   background refresh.
/// - **Failures** ([`Error::Lookup`] only) are remembered for
///   [`negative_ttl`](CachingResolver::negative_ttl) (default 0 = off).
/// - At most [`max_hosts`](CachingResolver::max_hosts) names (default 1024) are kept;
///   the least recently used goes first.
/// - **Single flight**: concurrent lookups of a name that is not cached run the parent
///   once and all get its answer (errors included). With `ttl(Duration::ZERO)` this is
///   a pure coalescing layer.
///
/// Names are keyed case-insensitively without trailing dots.
///
/// ```
/// use std::net::IpAddr;
/// use std::sync::Arc;
/// use std::time::Duration;
/// use reseau::resolve::{CachingResolver, Resolver, StaticResolver};
///
/// let map = Arc::new(StaticResolver::new());
/// let lo: IpAddr = "127.0.0.1".parse().unwrap();
/// map.insert("svc.test", [lo]);
/// let cache = CachingResolver::new(map.clone()).ttl(Duration::from_secs(60));
/// assert_eq!(cache.lookup("svc.test")?, vec![lo]);
/// map.remove("svc.test");
/// assert_eq!(cache.lookup("svc.test")?, vec![lo]); // still cached
/// assert_eq!(cache.stats().hits, 1);
/// # Ok::<(), reseau::Error>(())
/// ```
#[derive(Debug)]
pub struct CachingResolver {
    parent: Arc<dyn Resolver>,
    cfg: Cfg,
    state: Shared,
}

impl CachingResolver {
    /// A cache over `parent` with the default settings (ttl 30 s, no stale window, no
    /// negative caching, 1024 hosts).
    pub fn new(parent: Arc<dyn Resolver>) -> CachingResolver {
        CachingResolver {
            parent,
            cfg: Cfg {
                ttl: Duration::from_secs(30),
                stale_ttl: Duration::ZERO,
                negative_ttl: Duration::ZERO,
                max_hosts: 1024,
            },
            state: Shared::default(),
        }
    }

    /// How long an answer stays fresh.
    pub fn ttl(mut self, ttl: Duration) -> CachingResolver {
        self.cfg.ttl = ttl;
        self
    }

    /// How long after expiry an answer may still be served while one background
    /// refresh runs (0 = never serve stale answers).
    pub fn stale_ttl(mut self, stale_ttl: Duration) -> CachingResolver {
        self.cfg.stale_ttl = stale_ttl;
        self
    }

    /// How long a failed lookup ([`Error::Lookup`]) is remembered (0 = not at all).
    pub fn negative_ttl(mut self, negative_ttl: Duration) -> CachingResolver {
        self.cfg.negative_ttl = negative_ttl;
        self
    }

    /// How many names are kept at most (least recently used evicted first; 0 counts
    /// as 1).
    pub fn max_hosts(mut self, max_hosts: usize) -> CachingResolver {
        self.cfg.max_hosts = max_hosts.max(1);
        self
    }

    /// Counters so far.
    pub fn stats(&self) -> CacheStats {
        lock(&self.state).stats
    }

    /// How many names are cached now (fresh, stale or negative).
    pub fn len(&self) -> usize {
        lock(&self.state).entries.len()
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Forgets every cached answer (flights in progress still complete and store).
    pub fn clear(&self) {
        lock(&self.state).entries.clear();
    }

    fn resolve(&self, host: &str, deadline: Option<Instant>) -> Result<Vec<IpAddr>> {
        check_host(host)?;
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return Err(Error::DeadlineExceeded);
        }
        let key = host_key(host);
        let step = {
            let mut st = lock(&self.state);
            match self.cached(&mut st, &key, host) {
                Some(hit) => Err(hit),
                None => {
                    st.stats.misses += 1;
                    match st.flights.get(&key).cloned() {
                        Some(f) => {
                            st.stats.shared += 1;
                            f.extend(deadline);
                            Ok((f, false))
                        }
                        None => {
                            let f = Arc::new(Flight::new(deadline));
                            st.flights.insert(key.clone(), f.clone());
                            st.stats.parent_lookups += 1;
                            Ok((f, true))
                        }
                    }
                }
            }
        };
        let (flight, leader) = match step {
            Ok(joined) => joined,
            Err((answer, refresh)) => {
                // Submitted without the state lock: a refused job takes it to clean up.
                if let Some(job) = refresh {
                    pool::spawn(Box::new(job));
                }
                return answer;
            }
        };
        // A pool worker must not wait for a job queued on the pool: it runs the lookup
        // itself, even as a follower, unless the flight's job has started (`run` claims
        // the flight). Without a deadline there is nothing to abandon: run here too.
        let on_worker = pool::on_worker();
        if leader || on_worker {
            let job = self.job(key, host, Some(flight.clone()));
            if deadline.is_none() || on_worker {
                // The Job's Drop covers a panic.
                job.run();
            } else {
                pool::spawn(Box::new(job));
            }
        }
        wait(&flight, deadline)
    }

    /// The answer from the cache, if it has a usable one, with the refresh to start
    /// for a stale hit. Drops an entry that is past all use.
    fn cached(
        &self,
        st: &mut State,
        key: &str,
        host: &str,
    ) -> Option<(Result<Vec<IpAddr>>, Option<Job>)> {
        let now = Instant::now();
        st.clock += 1;
        let clock = st.clock;
        let e = st.entries.get_mut(key)?;
        let fresh = e.expires.is_none_or(|t| now <= t);
        let stale_ok = !fresh
            && e.answer.is_ok()
            && e.expires
                .and_then(|t| later(t, self.cfg.stale_ttl))
                .is_none_or(|t| now <= t);
        if !fresh && !stale_ok {
            st.entries.remove(key);
            return None;
        }
        e.used = clock;
        let answer = match &e.answer {
            Ok(ips) => Ok(ips.clone()),
            Err(msg) => Err(Error::Lookup {
                msg: msg.clone(),
                name: host.to_string(),
            }),
        };
        let refresh = stale_ok && !e.refreshing;
        if refresh {
            e.refreshing = true;
        }
        match (fresh, answer.is_ok()) {
            (true, true) => st.stats.hits += 1,
            (true, false) => st.stats.negative_hits += 1,
            _ => st.stats.stale_hits += 1,
        }
        let job = refresh.then(|| {
            st.stats.parent_lookups += 1;
            self.job(key.to_string(), host, None)
        });
        Some((answer, job))
    }

    /// A parent lookup of `host` that stores under `key`: for `flight`, or a refresh.
    fn job(&self, key: String, host: &str, flight: Option<Arc<Flight>>) -> Job {
        Job {
            parent: self.parent.clone(),
            cfg: self.cfg,
            state: self.state.clone(),
            key,
            host: host.to_string(),
            flight,
        }
    }
}

/// Waits for a flight's answer until `deadline`.
fn wait(flight: &Flight, deadline: Option<Instant>) -> Result<Vec<IpAddr>> {
    let mut res = lock(&flight.result);
    loop {
        if let Some(r) = res.as_ref() {
            return match r {
                Ok(ips) => Ok(ips.clone()),
                Err(e) => Err(e.duplicate()),
            };
        }
        res = match deadline {
            None => flight.done.wait(res).unwrap_or_else(|e| e.into_inner()),
            Some(d) => {
                let left = d.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(Error::DeadlineExceeded);
                }
                flight
                    .done
                    .wait_timeout(res, left)
                    .unwrap_or_else(|e| e.into_inner())
                    .0
            }
        };
    }
}

/// One parent lookup: a flight (for misses) or a background refresh (`flight: None`).
/// Stores the answer when done; if dropped without finishing (the parent panicked) it
/// still releases the flight's waiters and the entry's `refreshing` mark.
struct Job {
    parent: Arc<dyn Resolver>,
    cfg: Cfg,
    state: Shared,
    key: String,
    host: String,
    flight: Option<Arc<Flight>>,
}

impl Job {
    fn run(mut self) {
        if let Some(f) = &self.flight
            && !f.claim()
        {
            // Somebody else runs (or ran) this flight's lookup.
            self.flight = None;
            return;
        }
        let res = self.parent.lookup(&self.host);
        self.store(res);
    }

    fn store(&mut self, res: Result<Vec<IpAddr>>) {
        let now = Instant::now();
        {
            let mut st = lock(&self.state);
            let st = &mut *st;
            // An answer that could never be served (ttl and stale window both 0) is
            // not kept: the cache is then a pure coalescing layer.
            let keep = !(self.cfg.ttl.is_zero() && self.cfg.stale_ttl.is_zero());
            let entry = match &res {
                Ok(ips) if keep => Some((Ok(ips.clone()), self.cfg.ttl)),
                // A full queue is an overload, not an answer about the name.
                Err(e @ Error::Lookup { msg, .. })
                    if !self.cfg.negative_ttl.is_zero() && !pool::is_queue_full(e) =>
                {
                    Some((Err(msg.clone()), self.cfg.negative_ttl))
                }
                _ => None,
            };
            match entry {
                Some((answer, ttl)) => {
                    st.clock += 1;
                    let e = Entry {
                        answer,
                        expires: later(now, ttl),
                        used: st.clock,
                        refreshing: false,
                    };
                    st.entries.insert(self.key.clone(), e);
                    evict(&mut st.entries, self.cfg.max_hosts);
                }
                None => {
                    // Nothing to store: a failed refresh leaves the stale entry to be
                    // served (and retried) until its window closes.
                    if let Some(e) = st.entries.get_mut(&self.key) {
                        e.refreshing = false;
                    }
                }
            }
            if let Some(f) = &self.flight
                && st.flights.get(&self.key).is_some_and(|g| Arc::ptr_eq(f, g))
            {
                st.flights.remove(&self.key);
            }
        }
        if let Some(f) = self.flight.take() {
            *lock(&f.result) = Some(res);
            f.done.notify_all();
        }
    }
}

impl Drop for Job {
    fn drop(&mut self) {
        // Reached with the flight still set only when `run` unwound.
        if self.flight.is_some() || std::thread::panicking() {
            let err = Error::Lookup {
                msg: "resolver panicked".to_string(),
                name: self.host.clone(),
            };
            self.store(Err(err));
        }
    }
}

impl Task for Job {
    /// A refresh is wanted until done; a flight as long as one of its callers waits.
    fn due(&self) -> Option<Instant> {
        self.flight.as_ref().and_then(|f| *lock(&f.until))
    }

    fn run(self: Box<Self>) {
        Job::run(*self);
    }

    fn cancel(mut self: Box<Self>, why: Cancel) {
        // Decide under the state lock, which a joining caller holds while it extends
        // `until`: either it joined in time and the lookup runs here (on a worker), or
        // the flight is retired and a later caller starts a new one.
        let mut st = lock(&self.state);
        if why == Cancel::Expired && self.due().is_none_or(|d| Instant::now() < d) {
            drop(st);
            return Job::run(*self);
        }
        if let Some(f) = &self.flight {
            if !f.claim() {
                // A worker that joined runs the lookup and will store the answer.
                self.flight = None;
                return;
            }
            if st.flights.get(&self.key).is_some_and(|g| Arc::ptr_eq(f, g)) {
                st.flights.remove(&self.key);
            }
        }
        drop(st);
        let err = match why {
            Cancel::Full => pool::queue_full(&self.host),
            Cancel::Expired => Error::DeadlineExceeded,
        };
        self.store(Err(err));
    }
}

/// Drops least recently used entries until at most `max` remain.
fn evict(entries: &mut HashMap<String, Entry>, max: usize) {
    while entries.len() > max {
        let Some(oldest) = entries
            .iter()
            .min_by_key(|(_, e)| e.used)
            .map(|(k, _)| k.clone())
        else {
            return;
        };
        entries.remove(&oldest);
    }
}

impl Resolver for CachingResolver {
    /// # Errors
    /// The parent's error (shared by every coalesced caller), or a cached
    /// [`Error::Lookup`] while its negative ttl runs.
    fn lookup(&self, host: &str) -> Result<Vec<IpAddr>> {
        self.resolve(host, None)
    }

    /// Cache hits answer at once; a miss runs the parent on the lookup worker pool
    /// (still coalesced) and the wait is abandoned at `deadline`. The parent lookup is
    /// skipped if every caller of the flight has given up before a worker is free; on
    /// a pool worker (a nested resolver) it runs in place.
    ///
    /// # Errors
    /// As [`lookup`](CachingResolver::lookup), plus [`Error::DeadlineExceeded`] when
    /// the deadline passes first and [`Error::Lookup`] `resolver queue full` when the
    /// pool is overloaded (shared by the flight, never negatively cached).
    fn lookup_until(self: Arc<Self>, host: &str, deadline: Option<Instant>) -> Result<Vec<IpAddr>> {
        self.resolve(host, deadline)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resolve::StaticResolver;

    fn cache_with_flight(until: Option<Instant>) -> (CachingResolver, Arc<Flight>, Box<Job>) {
        let map = Arc::new(StaticResolver::new());
        map.insert("a.test", ["127.0.0.1".parse().unwrap()]);
        let cache = CachingResolver::new(map).negative_ttl(Duration::from_secs(60));
        let key = host_key("a.test");
        let flight = Arc::new(Flight::new(until));
        lock(&cache.state)
            .flights
            .insert(key.clone(), flight.clone());
        let job = Box::new(cache.job(key, "a.test", Some(flight.clone())));
        (cache, flight, job)
    }

    #[test]
    fn refused_flight_fails_its_callers_without_caching() {
        let (cache, flight, job) = cache_with_flight(None);
        job.cancel(Cancel::Full);
        let err = wait(&flight, None).unwrap_err();
        assert!(pool::is_queue_full(&err), "{err:?}");
        assert!(cache.is_empty(), "an overload is not a negative answer");
        assert!(lock(&cache.state).flights.is_empty());
        assert_eq!(cache.lookup("a.test").unwrap().len(), 1);
    }

    #[test]
    fn expired_flight_is_retired_unless_a_caller_still_waits() {
        let past = Instant::now();
        let (cache, flight, job) = cache_with_flight(Some(past));
        job.cancel(Cancel::Expired);
        assert!(matches!(wait(&flight, None), Err(Error::DeadlineExceeded)));
        assert!(cache.is_empty());
        assert!(lock(&cache.state).flights.is_empty());

        let (cache, flight, job) = cache_with_flight(Some(past));
        flight.extend(Some(Instant::now() + Duration::from_secs(60)));
        job.cancel(Cancel::Expired);
        assert_eq!(wait(&flight, None).unwrap().len(), 1);
        assert_eq!(cache.len(), 1);

        let (_cache, flight, job) = cache_with_flight(Some(past));
        flight.extend(None);
        assert_eq!(job.due(), None);
    }
}
