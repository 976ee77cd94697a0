//! One async mutex per key, created on demand and dropped with its last user, so requests for
//! the same container run one after another (a failing ADD's cleanup would otherwise remove
//! the port and veth a concurrent ADD of the same container had just made) while requests for
//! different containers still run in parallel. The map holds only keys someone holds or waits
//! for, so it is bounded by the requests in flight.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::OwnedMutexGuard;

#[derive(Default)]
struct Entry {
    lock: Arc<tokio::sync::Mutex<()>>,
    /// Holders and waiters; the entry goes when this drops to zero.
    users: usize,
}

type Map = Arc<Mutex<HashMap<String, Entry>>>;

/// A set of per-key locks.
#[derive(Clone, Default)]
pub struct KeyedLocks {
    map: Map,
}

/// Exclusive use of one key until dropped.
pub struct KeyGuard {
    // Declared first so it is released before the claim can remove the entry: a newcomer
    // then never gets a fresh mutex while this one is still held.
    _guard: OwnedMutexGuard<()>,
    _claim: Claim,
}

/// A registered interest in a key: counted while waiting and while holding, so the entry
/// outlives every waiter, including one whose request is cancelled mid-wait.
struct Claim {
    map: Map,
    key: String,
}

impl Drop for Claim {
    fn drop(&mut self) {
        let mut map = self.map.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(e) = map.get_mut(&self.key) {
            e.users -= 1;
            if e.users == 0 {
                map.remove(&self.key);
            }
        }
    }
}

impl KeyedLocks {
    /// Waits until nobody else holds `key`, then holds it until the guard is dropped.
    pub async fn lock(&self, key: &str) -> KeyGuard {
        let lock = {
            let mut map = self.map.lock().unwrap_or_else(PoisonError::into_inner);
            let e = map.entry(key.to_string()).or_default();
            e.users += 1;
            e.lock.clone()
        };
        let claim = Claim {
            map: self.map.clone(),
            key: key.to_string(),
        };
        KeyGuard {
            _guard: lock.lock_owned().await,
            _claim: claim,
        }
    }

    /// How many keys are held or waited for.
    pub fn len(&self) -> usize {
        self.map
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// Whether no key is held or waited for.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::Future;
    use std::pin::pin;
    use std::task::{Context, Poll, Waker};

    fn poll_once<F: Future>(f: std::pin::Pin<&mut F>) -> Poll<F::Output> {
        f.poll(&mut Context::from_waker(Waker::noop()))
    }

    #[tokio::test]
    async fn same_key_waits_other_keys_do_not() {
        let locks = KeyedLocks::default();
        let a = locks.lock("c1").await;
        let mut second = pin!(locks.lock("c1"));
        assert!(poll_once(second.as_mut()).is_pending(), "c1 is held");
        let other = locks.lock("c2").await;
        assert_eq!(locks.len(), 2);
        drop(a);
        let b = match poll_once(second.as_mut()) {
            Poll::Ready(g) => g,
            Poll::Pending => panic!("c1 was released but the waiter did not get it"),
        };
        drop((b, other));
        assert!(locks.is_empty(), "released keys must leave the map");
    }

    #[tokio::test]
    async fn a_cancelled_waiter_leaves_nothing_behind() {
        let locks = KeyedLocks::default();
        let held = locks.lock("c1").await;
        {
            let mut waiter = pin!(locks.lock("c1"));
            assert!(poll_once(waiter.as_mut()).is_pending());
            drop(held);
            // Released, the waiter is woken but dropped before it takes the lock.
        }
        assert!(locks.is_empty(), "{} keys left", locks.len());
        let again = locks.lock("c1").await;
        assert_eq!(locks.len(), 1);
        drop(again);
        assert!(locks.is_empty());
    }
}
