//! A cache within a byte budget, the oldest insertion dropped first, with
//! a generation for readers that race invalidations.
//!
//! A reader that reads from the store notes [`FifoCache::generation`]
//! before it reads and keeps its answer with [`FifoCache::insert_if`]:
//! if an invalidation ([`FifoCache::remove`], [`FifoCache::retain`]) came
//! in between, the answer may be stale and is not kept. The search index's posting blocks and the body files' maps
//! use it.
//!
//! Invariant: `bytes` is the sum of the costs of the values held, never
//! above the budget; `order` lists each held key once, oldest first.

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;

/// Values by key within a byte budget (see the module comment).
pub struct FifoCache<K, V> {
    map: HashMap<K, V>,
    order: VecDeque<K>,
    bytes: usize,
    budget: usize,
    cost: fn(&V) -> usize,
    generation: u64,
}

impl<K: Hash + Eq + Clone, V> FifoCache<K, V> {
    /// An empty cache of at most `budget` bytes, a value costing `cost`.
    pub fn new(budget: usize, cost: fn(&V) -> usize) -> Self {
        FifoCache {
            map: HashMap::new(),
            order: VecDeque::new(),
            bytes: 0,
            budget,
            cost,
            generation: 0,
        }
    }

    pub fn get(&self, key: &K) -> Option<&V> {
        self.map.get(key)
    }

    /// Raised by every invalidation.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Keeps `value` under `key` (replacing what it held) unless an
    /// invalidation came since `generation` or the value alone is over the
    /// budget; drops the oldest values until the budget holds.
    pub fn insert_if(&mut self, generation: u64, key: K, value: V) {
        let cost = (self.cost)(&value);
        if generation != self.generation || cost > self.budget {
            return;
        }
        if let Some(old) = self.map.insert(key.clone(), value) {
            self.bytes -= (self.cost)(&old);
        } else {
            self.order.push_back(key);
        }
        self.bytes += cost;
        while self.bytes > self.budget {
            let Some(oldest) = self.order.pop_front() else {
                break;
            };
            if let Some(old) = self.map.remove(&oldest) {
                self.bytes -= (self.cost)(&old);
            }
        }
    }

    /// Drops `key`'s value, if any, and raises the generation.
    pub fn remove(&mut self, key: &K) {
        self.generation += 1;
        if let Some(old) = self.map.remove(key) {
            self.bytes -= (self.cost)(&old);
            self.order.retain(|k| k != key);
        }
    }

    /// Drops the values whose keys `keep` refuses, and raises the
    /// generation.
    pub fn retain(&mut self, mut keep: impl FnMut(&K) -> bool) {
        self.generation += 1;
        let (map, cost) = (&mut self.map, self.cost);
        let mut dropped = 0;
        self.order.retain(|k| {
            if keep(k) {
                return true;
            }
            if let Some(old) = map.remove(k) {
                dropped += cost(&old);
            }
            false
        });
        self.bytes -= dropped;
    }

    /// Values held (the tests' view).
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Bytes held, by the values' costs (the tests' view).
    #[cfg(test)]
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Keys in the insertion order (the tests' view).
    #[cfg(test)]
    pub fn order_len(&self) -> usize {
        self.order.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retain_drops_the_refused_keys_only_and_a_stale_read_is_not_kept() {
        let mut cache: FifoCache<u32, Vec<u8>> = FifoCache::new(100, Vec::len);
        for k in 0..6 {
            cache.insert_if(cache.generation(), k, vec![0; 10 + k as usize]);
        }
        let before = cache.generation();
        cache.retain(|k| k % 2 == 0);
        assert_eq!(cache.len(), 3);
        assert_eq!(cache.order_len(), 3);
        assert_eq!(cache.bytes(), 10 + 12 + 14);
        assert!(cache.get(&4).is_some() && cache.get(&5).is_none());
        cache.insert_if(before, 7, vec![0; 5]);
        assert!(cache.get(&7).is_none(), "read before the invalidation");
        // The budget still holds what was dropped: room for more again.
        for k in 10..14 {
            cache.insert_if(cache.generation(), k, vec![0; 16]);
        }
        assert_eq!(cache.len(), 7);
        assert_eq!(cache.bytes(), 36 + 64);
    }

    #[test]
    fn the_oldest_goes_first_and_a_stale_read_is_not_kept() {
        let mut cache: FifoCache<u32, Vec<u8>> = FifoCache::new(100, Vec::len);
        for k in 0..12 {
            cache.insert_if(cache.generation(), k, vec![0; 10]);
            assert!(cache.bytes() <= 100);
        }
        assert_eq!(cache.len(), 10);
        assert!(cache.get(&1).is_none() && cache.get(&11).is_some());
        // Replacing a value recounts its cost and keeps one place in order.
        cache.insert_if(cache.generation(), 11, vec![0; 30]);
        assert_eq!((cache.len(), cache.bytes(), cache.order_len()), (8, 100, 8));
        // Over the budget alone: not kept.
        cache.insert_if(cache.generation(), 99, vec![0; 101]);
        assert!(cache.get(&99).is_none());
        // A read that began before a removal keeps nothing.
        let started = cache.generation();
        cache.remove(&11);
        assert!(cache.get(&11).is_none());
        cache.insert_if(started, 11, vec![0; 10]);
        assert!(cache.get(&11).is_none());
        cache.retain(|_| false);
        assert_eq!((cache.len(), cache.bytes(), cache.order_len()), (0, 0, 0));
    }
}
