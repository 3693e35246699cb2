//! The hit cache in front of moka: a sharded table from digest to cache entry, each entry with
//! its own expiry checked on read. A hit is a read lock, one keyed hash and, mostly, one cache
//! line of the table; moka stays behind it for misses (which it collapses into one store read per
//! key) and for its admission policy.
//!
//! Bounded like moka: each shard holds at most its share of the capacity, and an insert into a
//! full shard first drops that shard's expired entries, then an arbitrary one. The tables hash
//! with std's `RandomState` (SipHash keyed per process), so that nobody can choose keys whose
//! digests share a probe.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::sync::RwLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::CacheEntry;
use crate::clock::monotonic_nanos;
use crate::hash::KeyDigest;
use crate::ratelimit::LimiterHint;

const SHARDS: usize = 64;

struct Slot {
    digest: KeyDigest,
    entry: CacheEntry,
    /// The key's own limiters, read at the same time as the entry (see [`LimiterHint`]).
    hint: Option<LimiterHint>,
    /// On [`monotonic_nanos`]'s clock.
    expires: u64,
}

/// A bucket of a shard's table: a whole cache line holding one slot, so that a lookup reads one
/// line (a swiss table keeps its control bytes apart from its buckets: a second line per
/// lookup, and one that misses once the cache outgrows the CPU's caches).
#[derive(Default)]
#[repr(align(64))]
struct Bucket(Option<Slot>);

const _: () = assert!(std::mem::size_of::<Bucket>() == 64, "a bucket is one cache line");

/// A shard: open addressing with linear probing over [`Bucket`]s, at most half full, so that
/// a probe mostly stops at its first bucket and always finds an empty one.
struct Table {
    /// A power of two long.
    buckets: Box<[Bucket]>,
    len: usize,
}

impl Table {
    fn new() -> Self {
        Self::with_buckets(8)
    }

    fn with_buckets(n: usize) -> Self {
        Self { buckets: (0..n).map(|_| Bucket::default()).collect(), len: 0 }
    }

    fn mask(&self) -> usize {
        self.buckets.len() - 1
    }

    fn home(&self, hasher: &RandomState, digest: &KeyDigest) -> usize {
        // Truncating the hash is the point: its low bits pick the bucket.
        (hasher.hash_one(digest) as usize) & self.mask()
    }

    /// Where `digest`'s slot is.
    fn find(&self, hasher: &RandomState, digest: &KeyDigest) -> Option<usize> {
        let mask = self.mask();
        let mut i = self.home(hasher, digest);
        loop {
            match &self.buckets[i].0 {
                None => return None,
                Some(slot) if slot.digest == *digest => return Some(i),
                Some(_) => i = (i + 1) & mask,
            }
        }
    }

    fn get(&self, hasher: &RandomState, digest: &KeyDigest) -> Option<&Slot> {
        self.find(hasher, digest).and_then(|i| self.buckets[i].0.as_ref())
    }

    /// Puts `slot` in, replacing the slot of its digest.
    fn insert(&mut self, hasher: &RandomState, slot: Slot) {
        if let Some(i) = self.find(hasher, &slot.digest) {
            self.buckets[i].0 = Some(slot);
            return;
        }
        if (self.len + 1) * 2 > self.buckets.len() {
            self.rebuild(hasher, self.buckets.len() * 2, |_| true);
        }
        self.place(hasher, slot);
    }

    /// Puts a slot whose digest is not in the table into the first empty bucket of its probe.
    fn place(&mut self, hasher: &RandomState, slot: Slot) {
        let mask = self.mask();
        let mut i = self.home(hasher, &slot.digest);
        while self.buckets[i].0.is_some() {
            i = (i + 1) & mask;
        }
        self.buckets[i].0 = Some(slot);
        self.len += 1;
    }

    fn remove(&mut self, hasher: &RandomState, digest: &KeyDigest) {
        if let Some(i) = self.find(hasher, digest) {
            self.remove_at(hasher, i);
        }
    }

    /// Empties bucket `hole`, then moves back every later slot of the run that may sit there, so
    /// that no probe stops early at the gap.
    fn remove_at(&mut self, hasher: &RandomState, mut hole: usize) {
        if self.buckets[hole].0.take().is_none() {
            return;
        }
        self.len -= 1;
        let mask = self.mask();
        let mut j = hole;
        loop {
            j = (j + 1) & mask;
            let Some(slot) = &self.buckets[j].0 else { break };
            let home = self.home(hasher, &slot.digest);
            // The slot may move to the hole when the hole is on its probe, from `home` to `j`.
            if j.wrapping_sub(home) & mask >= j.wrapping_sub(hole) & mask {
                self.buckets[hole].0 = self.buckets[j].0.take();
                hole = j;
            }
        }
    }

    /// Drops an arbitrary slot: the first one found from `digest`'s home.
    fn evict_one(&mut self, hasher: &RandomState, digest: &KeyDigest) {
        let mask = self.mask();
        let start = self.home(hasher, digest);
        if let Some(i) =
            (0..self.buckets.len()).map(|n| (start + n) & mask).find(|&i| self.buckets[i].0.is_some())
        {
            self.remove_at(hasher, i);
        }
    }

    /// The same table in `buckets` buckets, with only the slots that `keep` keeps.
    fn rebuild(&mut self, hasher: &RandomState, buckets: usize, keep: impl Fn(&Slot) -> bool) {
        let old = std::mem::replace(self, Self::with_buckets(buckets));
        for slot in old.buckets.into_vec().into_iter().filter_map(|b| b.0) {
            if keep(&slot) {
                self.place(hasher, slot);
            }
        }
    }

    fn clear(&mut self) {
        *self = Self::new();
    }
}

/// What the cache says about every candidate digest of a key.
pub(super) enum Hot {
    /// A cached key.
    Key(std::sync::Arc<super::ResolvedKey>),
    /// Every candidate is cached as belonging to no key.
    NoKey,
}

pub(super) struct HotCache {
    shards: Box<[RwLock<Table>]>,
    /// Keyed per process (SipHash), so that nobody can choose keys whose digests share a probe.
    hasher: RandomState,
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
            shards: (0..SHARDS).map(|_| RwLock::new(Table::new())).collect(),
            hasher: RandomState::new(),
            per_shard: capacity.div_ceil(SHARDS).max(1),
            positive: nanos(positive),
            negative: nanos(negative),
            epoch: AtomicU64::new(0),
        }
    }

    /// What entries' load times are stamped with: [`monotonic_nanos`].
    pub(super) fn now(&self) -> u64 {
        monotonic_nanos()
    }

    fn shard(&self, digest: &KeyDigest) -> &RwLock<Table> {
        // Which shard is not a secret; the table inside hashes with a key of its own.
        &self.shards[usize::from(digest.0[0]) % SHARDS]
    }

    /// The key cached under one of `digests`, or `NoKey` when every one is cached as unknown;
    /// `None` when any is not cached (or expired at `now`, read from [`monotonic_nanos`]): ask
    /// moka.
    pub(super) fn get(&self, digests: &[KeyDigest], now: u64) -> Option<Hot> {
        for digest in digests {
            let shard = self.shard(digest).read().unwrap_or_else(|e| e.into_inner());
            match shard.get(&self.hasher, digest) {
                Some(slot) if slot.expires > now => match &slot.entry {
                    CacheEntry::Key(r) => {
                        // Both lines are known here: start on the limiters' before the clone's
                        // locked increment of the entry's count, which waits for earlier reads.
                        if let Some(hint) = &slot.hint {
                            hint.touch();
                        }
                        return Some(Hot::Key(r.clone()));
                    }
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
        let hint = match &entry {
            CacheEntry::Key(r) => r.held[0].hint(),
            CacheEntry::NoKey(_) => None,
        };
        {
            let hasher = &self.hasher;
            let mut shard = self.shard(&digest).write().unwrap_or_else(|e| e.into_inner());
            if shard.len >= self.per_shard && shard.find(hasher, &digest).is_none() {
                let live = |slot: &Slot| slot.expires > now;
                if shard.buckets.iter().any(|b| b.0.as_ref().is_some_and(|s| !live(s))) {
                    let buckets = shard.buckets.len();
                    shard.rebuild(hasher, buckets, live);
                }
                if shard.len >= self.per_shard {
                    shard.evict_one(hasher, &digest);
                }
            }
            shard.insert(hasher, Slot { digest, entry, hint, expires });
        }
        if self.epoch() != epoch {
            self.remove(&digest);
        }
    }

    fn remove(&self, digest: &KeyDigest) {
        self.shard(digest).write().unwrap_or_else(|e| e.into_inner()).remove(&self.hasher, digest);
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
    fn a_table_finds_what_it_holds_after_removals_and_growth() {
        let hasher = RandomState::new();
        let mut table = Table::new();
        let digest = |n: u32| {
            let mut d = [0; 32];
            d[..4].copy_from_slice(&n.to_le_bytes());
            KeyDigest(d)
        };
        let slot = |n: u32| Slot {
            digest: digest(n),
            entry: CacheEntry::NoKey(u64::from(n)),
            hint: None,
            expires: 1,
        };
        for n in 0..2000 {
            table.insert(&hasher, slot(n));
        }
        assert_eq!(table.len, 2000);
        assert!(table.buckets.len() >= 4000, "at most half full");
        // Removing from the middle of probe runs must not hide the slots after them.
        for n in (0..2000).filter(|n| n % 3 == 0) {
            table.remove(&hasher, &digest(n));
        }
        for n in 0..2000 {
            let found = table.get(&hasher, &digest(n)).map(|s| match s.entry {
                CacheEntry::NoKey(v) => v,
                CacheEntry::Key(_) => unreachable!(),
            });
            assert_eq!(found, (n % 3 != 0).then_some(u64::from(n)), "digest {n}");
        }
        assert_eq!(table.len, 2000 - 667);
        table.insert(&hasher, Slot { expires: 2, ..slot(1) });
        assert_eq!(table.get(&hasher, &digest(1)).map(|s| s.expires), Some(2), "an insert replaces");
        assert_eq!(table.len, 2000 - 667);
        for n in 0..2000 {
            table.evict_one(&hasher, &digest(n));
        }
        assert_eq!(table.len, 0);
        assert!(table.buckets.iter().all(|b| b.0.is_none()));
    }

    #[test]
    fn shards_hold_their_share_of_the_capacity() {
        let hot = HotCache::new(SHARDS as u64, Duration::from_secs(60), Duration::from_secs(60));
        for n in 0..=255 {
            hot.insert(digest(n), CacheEntry::NoKey(hot.now()), hot.epoch());
        }
        let held: usize = hot.shards.iter().map(|s| s.read().unwrap().len).sum();
        assert!(held <= SHARDS, "{held} entries for a capacity of {SHARDS}");
        assert!(hot.get(&[digest(255)], hot.now()).is_some(), "the newest entry is kept");
    }
}
