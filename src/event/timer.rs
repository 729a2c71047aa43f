//! The per-loop timer heap: one binary heap of deadlines, cancelled lazily.
//!
//! Nothing is ever removed from the middle of the heap. An entry names what it is for
//! (a connection slot and generation plus a sequence number, or a listener) and is
//! checked against the owner's current state when it pops; a stale entry is dropped
//! then. A rolling idle timeout therefore costs no heap operation per read or write:
//! its single entry, when it pops early, is pushed again at the moved deadline.

use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;
use std::time::{Duration, Instant};

/// How far away a deadline too distant to represent is put: never, in practice.
const FAR: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// `now + d` for a timer entry, saturating: a huge `d` (`Duration::MAX`) gives an entry
/// that never fires instead of an `Instant` overflow panic on the loop.
pub(crate) fn deadline(now: Instant, d: Duration) -> Instant {
    now.checked_add(d).unwrap_or_else(|| now + FAR)
}

/// What a timer entry is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// The connection's one-shot user timer with this id.
    User(u64),
    /// The connection's rolling idle timeout.
    Idle,
    /// Happy Eyeballs: start the next attempt (valid while the dial's sequence matches).
    Attempt(u64),
    /// The client's connection timeout (connect and first TLS handshake).
    ConnectTimeout,
    /// A TLS handshake's `handshake_timeout` (valid while the sequence matches).
    Handshake(u64),
    /// A graceful close waited long enough for the peer's FIN.
    Linger,
}

/// Whom a timer entry belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Owner {
    /// Connection slot and its generation.
    Conn { slot: u32, epoch: u32, kind: Kind },
    /// A listener (after an accept error backoff).
    Listener(usize),
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    at: Instant,
    seq: u64,
    owner: Owner,
}

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        self.at == other.at && self.seq == other.seq
    }
}
impl Eq for Entry {}
impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Entry {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

/// A min-heap of deadlines; ties fire in insertion order.
#[derive(Debug, Default)]
pub(crate) struct Timers {
    heap: BinaryHeap<Reverse<Entry>>,
    seq: u64,
}

impl Timers {
    pub(crate) fn push(&mut self, at: Instant, owner: Owner) {
        self.seq += 1;
        self.heap.push(Reverse(Entry {
            at,
            seq: self.seq,
            owner,
        }));
    }

    /// How long the loop may sleep before the earliest entry is due.
    pub(crate) fn timeout(&self, now: Instant) -> Option<Duration> {
        self.heap
            .peek()
            .map(|Reverse(e)| e.at.saturating_duration_since(now))
    }

    /// The earliest entry due at `now`, removed.
    pub(crate) fn pop_due(&mut self, now: Instant) -> Option<(Instant, Owner)> {
        match self.heap.peek() {
            Some(Reverse(e)) if e.at <= now => {
                let e = self.heap.pop().expect("peeked").0;
                Some((e.at, e.owner))
            }
            _ => None,
        }
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.heap.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pops_in_deadline_then_insertion_order() {
        let mut t = Timers::default();
        let now = Instant::now();
        let l = Owner::Listener;
        t.push(now + Duration::from_millis(5), l(1));
        t.push(now, l(2));
        t.push(now, l(3));
        assert_eq!(t.timeout(now), Some(Duration::ZERO));
        assert_eq!(t.pop_due(now).map(|e| e.1), Some(l(2)));
        assert_eq!(t.pop_due(now).map(|e| e.1), Some(l(3)));
        assert_eq!(t.pop_due(now), None);
        let later = now + Duration::from_millis(5);
        assert_eq!(t.pop_due(later).map(|e| e.1), Some(l(1)));
        assert_eq!(t.len(), 0);
    }
}
