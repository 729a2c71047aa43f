//! [`CachingResolver`]: TTL cache with stale-while-refresh, negative caching, LRU
//! eviction and single-flight coalescing over any parent resolver.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use super::hostport::host_key;
use super::pool;
use super::resolver::{Resolver, check_host};
use crate::poll::lock;
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
        let (flight, leader) = {
            let mut st = lock(&self.state);
            if let Some(answer) = self.cached(&mut st, &key, host) {
                return answer;
            }
            st.stats.misses += 1;
            match st.flights.get(&key).cloned() {
                Some(f) => {
                    st.stats.shared += 1;
                    (f, false)
                }
                None => {
                    let f = Arc::new(Flight::default());
                    st.flights.insert(key.clone(), f.clone());
                    st.stats.parent_lookups += 1;
                    (f, true)
                }
            }
        };
        if leader {
            let job = Job {
                parent: self.parent.clone(),
                cfg: self.cfg,
                state: self.state.clone(),
                key,
                host: host.to_string(),
                flight: Some(flight.clone()),
            };
            if deadline.is_none() {
                // Nobody to abandon: run here (the Job's Drop covers a panic).
                job.run();
            } else {
                pool::spawn(move || job.run());
            }
        }
        wait(&flight, deadline)
    }

    /// The answer from the cache, if it has a usable one (starting a refresh for a
    /// stale hit). Drops an entry that is past all use.
    fn cached(&self, st: &mut State, key: &str, host: &str) -> Option<Result<Vec<IpAddr>>> {
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
        if refresh {
            st.stats.parent_lookups += 1;
            let job = Job {
                parent: self.parent.clone(),
                cfg: self.cfg,
                state: self.state.clone(),
                key: key.to_string(),
                host: host.to_string(),
                flight: None,
            };
            pool::spawn(move || job.run());
        }
        Some(answer)
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
        let res = self.parent.lookup(&self.host);
        self.store(res);
    }

    fn store(&mut self, res: Result<Vec<IpAddr>>) {
        let now = Instant::now();
        {
            let mut st = lock(&self.state);
            let st = &mut *st;
            let entry = match &res {
                Ok(ips) => Some((Ok(ips.clone()), self.cfg.ttl)),
                Err(Error::Lookup { msg, .. }) if !self.cfg.negative_ttl.is_zero() => {
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
    /// (still coalesced) and the wait is abandoned at `deadline`.
    fn lookup_until(self: Arc<Self>, host: &str, deadline: Option<Instant>) -> Result<Vec<IpAddr>> {
        self.resolve(host, deadline)
    }
}
