//! The hit cache in front of moka: a sharded map from digest to cache entry, each entry with its
//! own expiry checked on read. A hit is a read lock and one keyed hash; moka stays behind it for
//! misses (which it collapses into one store read per key) and for its admission policy.
//!
//! Bounded like moka: each shard holds at most its share of the capacity, and an insert into a
//! full shard first drops that shard's expired entries, then an arbitrary one. The maps hash with
//! std's `RandomState` (SipHash keyed per process), so that nobody can choose keys whose digests
//! pile up in one bucket.

use std::collections::HashMap;
use std::collections::hash_map::RandomState;
use std::sync::RwLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::CacheEntry;
use crate::clock::monotonic_nanos;
use crate::hash::KeyDigest;

const SHARDS: usize = 64;

struct Slot {
    entry: CacheEntry,
    /// On [`monotonic_nanos`]'s clock.
    expires: u64,
}

/// What the cache says about every candidate digest of a key.
pub(super) enum Hot {
    /// A cached key.
    Key(std::sync::Arc<super::ResolvedKey>),
    /// Every candidate is cached as belonging to no key.
    NoKey,
}

pub(super) struct HotCache {
    shards: Box<[RwLock<HashMap<KeyDigest, Slot, RandomState>>]>,
    per_shard: usize,
    positive: u64,
    negative: u64,
    /// Bumped before and after every invalidation: an entry read from moka is only kept here if
    /// no invalidation overlapped the read (see [`HotCache::insert`]).
    epoch: AtomicU64,
}

impl HotCache {
    pub(super) fn new(capacity: u64, positive: Duration, negative: Duration) -> Self {
        let capacity = usize::try_from(capacity).unwrap_or(usize::MAX);
        let nanos = |d: Duration| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        Self {
            shards: (0..SHARDS).map(|_| RwLock::new(HashMap::default())).collect(),
            per_shard: capacity.div_ceil(SHARDS),
            positive: nanos(positive),
            negative: nanos(negative),
            epoch: AtomicU64::new(0),
        }
    }

    /// What entries' load times are stamped with: [`monotonic_nanos`].
    pub(super) fn now(&self) -> u64 {
        monotonic_nanos()
    }

    fn shard(&self, digest: &KeyDigest) -> &RwLock<HashMap<KeyDigest, Slot, RandomState>> {
        // Which shard is not a secret; the map inside hashes with a key of its own.
        &self.shards[usize::from(digest.0[0]) % SHARDS]
    }

    /// The key cached under one of `digests`, or `NoKey` when every one is cached as unknown;
    /// `None` when any is not cached (or expired at `now`, read from [`monotonic_nanos`]): ask
    /// moka.
    pub(super) fn get(&self, digests: &[KeyDigest], now: u64) -> Option<Hot> {
        for digest in digests {
            let shard = self.shard(digest).read().unwrap_or_else(|e| e.into_inner());
            match shard.get(digest) {
                Some(slot) if slot.expires > now => match &slot.entry {
                    CacheEntry::Key(r) => return Some(Hot::Key(r.clone())),
                    CacheEntry::NoKey(_) => {}
                },
                _ => return None,
            }
        }
        Some(Hot::NoKey)
    }

    /// The epoch to pass to [`HotCache::insert`], read before reading moka.
    pub(super) fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::SeqCst)
    }

    /// Caches `entry`, read from moka after `epoch` was read, unless an invalidation overlapped
    /// that read: it is inserted, then taken out again if the epoch moved meanwhile, so that an
    /// invalidation can never be undone by a reader that saw the old entry.
    pub(super) fn insert(&self, digest: KeyDigest, entry: CacheEntry, epoch: u64) {
        if self.epoch() != epoch {
            return;
        }
        // Expires when moka's copy does: counted from the load, not from this insert, so that
        // the cache's TTL still bounds how stale a hit can be.
        let expires = match &entry {
            CacheEntry::Key(r) => r.loaded.saturating_add(self.positive),
            CacheEntry::NoKey(loaded) => loaded.saturating_add(self.negative),
        };
        let now = self.now();
        if expires <= now {
            return;
        }
        {
            let mut shard = self.shard(&digest).write().unwrap_or_else(|e| e.into_inner());
            if shard.len() >= self.per_shard && !shard.contains_key(&digest) {
                shard.retain(|_, slot| slot.expires > now);
                if shard.len() >= self.per_shard
                    && let Some(victim) = shard.keys().next().copied()
                {
                    shard.remove(&victim);
                }
            }
            shard.insert(digest, Slot { entry, expires });
        }
        if self.epoch() != epoch {
            self.remove(&digest);
        }
    }

    fn remove(&self, digest: &KeyDigest) {
        self.shard(digest).write().unwrap_or_else(|e| e.into_inner()).remove(digest);
    }

    /// Starts an invalidation: readers that read moka from now on keep nothing here until
    /// [`HotCache::invalidated`].
    pub(super) fn invalidating(&self) {
        self.epoch.fetch_add(1, Ordering::SeqCst);
    }

    /// Ends an invalidation of `digest` (`None`: of everything), once moka no longer has it.
    pub(super) fn invalidated(&self, digest: Option<&KeyDigest>) {
        match digest {
            Some(d) => self.remove(d),
            None => {
                for shard in &self.shards {
                    shard.write().unwrap_or_else(|e| e.into_inner()).clear();
                }
            }
        }
        self.epoch.fetch_add(1, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest(n: u8) -> KeyDigest {
        let mut d = [n; 32];
        d[0] = n.wrapping_mul(7);
        KeyDigest(d)
    }

    #[test]
    fn entries_expire_with_their_load_and_invalidations_win_races() {
        let hot = HotCache::new(1000, Duration::from_secs(60), Duration::from_millis(1));
        let now = hot.now();
        hot.insert(digest(1), CacheEntry::NoKey(now), hot.epoch());
        assert!(matches!(hot.get(&[digest(1)], hot.now()), Some(Hot::NoKey)));
        std::thread::sleep(Duration::from_millis(3));
        assert!(
            hot.get(&[digest(1)], hot.now()).is_none(),
            "a negative entry lives as long as its TTL from its load"
        );
        hot.insert(digest(2), CacheEntry::NoKey(now), hot.epoch());
        assert!(
            hot.get(&[digest(2)], hot.now()).is_none(),
            "nor is an entry kept that was loaded too long ago"
        );

        // An entry read before an invalidation began is not kept.
        let epoch = hot.epoch();
        hot.invalidating();
        hot.insert(digest(3), CacheEntry::NoKey(u64::MAX / 2), epoch);
        assert!(hot.get(&[digest(3)], hot.now()).is_none());
        hot.invalidated(Some(&digest(3)));
        hot.insert(digest(3), CacheEntry::NoKey(u64::MAX / 2), hot.epoch());
        assert!(hot.get(&[digest(3), digest(3)], hot.now()).is_some());
        hot.invalidating();
        hot.invalidated(None);
        assert!(hot.get(&[digest(3)], hot.now()).is_none(), "invalidating everything empties the cache");
    }

    #[test]
    fn shards_hold_their_share_of_the_capacity() {
        let hot = HotCache::new(SHARDS as u64, Duration::from_secs(60), Duration::from_secs(60));
        for n in 0..=255 {
            hot.insert(digest(n), CacheEntry::NoKey(hot.now()), hot.epoch());
        }
        let held: usize = hot.shards.iter().map(|s| s.read().unwrap().len()).sum();
        assert!(held <= SHARDS, "{held} entries for a capacity of {SHARDS}");
        assert!(hot.get(&[digest(255)], hot.now()).is_some(), "the newest entry is kept");
    }
}
