//! Small crate-wide helpers that belong to no layer.

use std::sync::{Mutex, MutexGuard};

/// Locks a mutex, ignoring poisoning: every mutex in the crate guards data that stays
/// valid whatever panicked while it was held (counters, queues, caches), so a panic in
/// one user callback must not turn every later call into a second panic.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
