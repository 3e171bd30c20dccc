//! The two-generation caches hyperdht storage uses (xache and record-cache), with the
//! timer-driven collection replayed lazily from the time of each access, so they need no
//! timer of their own and run under virtual time.

use std::collections::HashMap;
use std::hash::Hash;
use std::time::{Duration, Instant};

use rand::Rng;

/// The collection schedule both caches share: every ⌈2/3·max_age⌉ the newest generation
/// becomes the oldest and the oldest is dropped, unless a size-triggered collection just
/// happened.
#[derive(Debug, Clone)]
struct Schedule {
    tick: Option<Duration>,
    next: Option<Instant>,
    collected_early: bool,
}

impl Schedule {
    fn new(max_age: Duration) -> Self {
        let tick = (!max_age.is_zero()).then(|| max_age * 2 / 3);
        Schedule {
            tick,
            next: None,
            collected_early: false,
        }
    }

    /// How many collections are due by `now` (capped at 2: two empty everything).
    fn due(&mut self, now: Instant) -> u32 {
        let Some(tick) = self.tick else {
            return 0;
        };
        let next = *self.next.get_or_insert(now + tick);
        if now < next {
            return 0;
        }
        let mut n = 0;
        let mut t = next;
        while t <= now && n < 3 {
            if !std::mem::take(&mut self.collected_early) {
                n += 1;
            }
            t += tick;
        }
        self.next = Some(if t <= now { now + tick } else { t });
        n.min(2)
    }
}

/// Measures an entry's size in bytes.
type Weigher<V> = fn(&V) -> usize;

/// A map whose entries live one to two collection periods unless read or rewritten.
#[derive(Debug, Clone)]
pub struct GenCache<K, V> {
    max_size: usize,
    byte_limit: Option<(usize, Weigher<V>)>,
    latest_bytes: usize,
    latest: HashMap<K, V>,
    oldest: HashMap<K, V>,
    schedule: Schedule,
}

impl<K: Hash + Eq + Clone, V: Clone> GenCache<K, V> {
    /// A cache collecting early at `max_size` entries in its newest generation.
    pub fn new(max_size: usize, max_age: Duration) -> Self {
        GenCache {
            max_size,
            byte_limit: None,
            latest_bytes: 0,
            latest: HashMap::new(),
            oldest: HashMap::new(),
            schedule: Schedule::new(max_age),
        }
    }

    /// Also collects early once the newest generation holds `max_bytes` as measured by
    /// `weigh`, so the cache never holds much more than twice that.
    pub fn with_byte_limit(mut self, max_bytes: usize, weigh: Weigher<V>) -> Self {
        self.byte_limit = Some((max_bytes, weigh));
        self
    }

    fn advance(&mut self, now: Instant) {
        for _ in 0..self.schedule.due(now) {
            self.collect();
        }
    }

    fn collect(&mut self) {
        self.oldest = std::mem::take(&mut self.latest);
        self.latest_bytes = 0;
    }

    fn weigh(&self, v: &V) -> usize {
        self.byte_limit.map_or(0, |(_, w)| w(v))
    }

    /// Number of entries.
    pub fn len(&mut self, now: Instant) -> usize {
        self.advance(now);
        self.latest.len() + self.oldest.len()
    }

    /// Whether the cache is empty.
    pub fn is_empty(&mut self, now: Instant) -> bool {
        self.len(now) == 0
    }

    /// Reads an entry, refreshing it.
    pub fn get(&mut self, now: Instant, k: &K) -> Option<V> {
        self.advance(now);
        if let Some(v) = self.latest.get(k) {
            return Some(v.clone());
        }
        let v = self.oldest.remove(k)?;
        self.latest_bytes += self.weigh(&v);
        self.latest.insert(k.clone(), v.clone());
        self.collect_if_full();
        Some(v)
    }

    /// Writes an entry.
    pub fn set(&mut self, now: Instant, k: K, v: V) {
        self.advance(now);
        self.oldest.remove(&k);
        self.latest_bytes += self.weigh(&v);
        if let Some(old) = self.latest.insert(k, v) {
            self.latest_bytes -= self.weigh(&old);
        }
        self.collect_if_full();
    }

    fn collect_if_full(&mut self) {
        let bytes_full = self
            .byte_limit
            .is_some_and(|(max, _)| self.latest_bytes >= max);
        if self.latest.len() >= self.max_size || bytes_full {
            self.collect();
            self.schedule.collected_early = true;
        }
    }

    /// Removes an entry.
    pub fn remove(&mut self, now: Instant, k: &K) -> Option<V> {
        self.advance(now);
        if let Some(v) = self.latest.remove(k) {
            self.latest_bytes -= self.weigh(&v);
            return Some(v);
        }
        self.oldest.remove(k)
    }
}

type Records = HashMap<[u8; 32], Vec<([u8; 32], Vec<u8>)>>;

/// Peer records per topic, keyed by the peer's public key, in two generations.
#[derive(Debug, Clone)]
pub struct RecordCache {
    max_size: usize,
    fresh: Records,
    fresh_len: usize,
    stale: Records,
    schedule: Schedule,
}

impl RecordCache {
    /// A cache collecting early when more than `max_size` records are fresh.
    pub fn new(max_size: usize, max_age: Duration) -> Self {
        RecordCache {
            max_size,
            fresh: HashMap::new(),
            fresh_len: 0,
            stale: HashMap::new(),
            schedule: Schedule::new(max_age),
        }
    }

    fn advance(&mut self, now: Instant) {
        for _ in 0..self.schedule.due(now) {
            self.collect();
        }
    }

    fn collect(&mut self) {
        self.stale = std::mem::take(&mut self.fresh);
        self.fresh_len = 0;
    }

    /// Adds (or refreshes) `public_key`'s record under `topic`.
    pub fn add(&mut self, now: Instant, topic: [u8; 32], public_key: [u8; 32], record: Vec<u8>) {
        self.advance(now);
        remove_from(&mut self.stale, &topic, &public_key);
        let set = self.fresh.entry(topic).or_default();
        match set.iter_mut().find(|(pk, _)| *pk == public_key) {
            Some(entry) => entry.1 = record,
            None => {
                set.push((public_key, record));
                self.fresh_len += 1;
                if self.fresh_len > self.max_size {
                    self.collect();
                    self.schedule.collected_early = true;
                }
            }
        }
    }

    /// Removes `public_key`'s record under `topic`.
    pub fn remove(&mut self, now: Instant, topic: &[u8; 32], public_key: &[u8; 32]) {
        self.advance(now);
        if remove_from(&mut self.fresh, topic, public_key) {
            self.fresh_len -= 1;
        }
        remove_from(&mut self.stale, topic, public_key);
    }

    /// Up to `n` records under `topic`, picked at random.
    pub fn get(&mut self, now: Instant, topic: &[u8; 32], n: usize) -> Vec<Vec<u8>> {
        self.advance(now);
        let mut all: Vec<&Vec<u8>> = self
            .fresh
            .get(topic)
            .into_iter()
            .chain(self.stale.get(topic))
            .flatten()
            .map(|(_, r)| r)
            .collect();
        let mut rng = rand::thread_rng();
        let mut out = Vec::with_capacity(n.min(all.len()));
        while out.len() < n && !all.is_empty() {
            let i = rng.gen_range(0..all.len());
            out.push(all.swap_remove(i).clone());
        }
        out
    }
}

fn remove_from(records: &mut Records, topic: &[u8; 32], public_key: &[u8; 32]) -> bool {
    let Some(set) = records.get_mut(topic) else {
        return false;
    };
    let Some(i) = set.iter().position(|(pk, _)| pk == public_key) else {
        return false;
    };
    set.swap_remove(i);
    if set.is_empty() {
        records.remove(topic);
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    const AGE: Duration = Duration::from_secs(60);

    #[test]
    fn entries_live_one_to_two_periods_unless_touched() {
        let t0 = Instant::now();
        let mut c = GenCache::new(100, AGE);
        c.set(t0, 1, "a");
        assert_eq!(c.get(t0 + Duration::from_secs(41), &1), Some("a"));
        // Read at 41 s moved it to the newest generation: it survives the next collection.
        assert_eq!(c.get(t0 + Duration::from_secs(81), &1), Some("a"));
        assert_eq!(c.get(t0 + Duration::from_secs(200), &1), None);
    }

    #[test]
    fn size_limit_collects_early() {
        let t0 = Instant::now();
        let mut c = GenCache::new(3, AGE);
        for i in 0..3 {
            c.set(t0, i, i);
        }
        c.set(t0, 10, 10);
        assert_eq!(c.len(t0), 4, "the old generation is still readable");
        for i in 20..23 {
            c.set(t0, i, i);
        }
        assert!(c.len(t0) <= 6);
    }

    #[test]
    fn byte_limit_bounds_memory() {
        let t0 = Instant::now();
        let mut c = GenCache::new(1000, AGE).with_byte_limit(10_000, Vec::len);
        for i in 0..100u32 {
            c.set(t0, i, vec![0u8; 1000]);
        }
        assert!(
            c.len(t0) <= 20,
            "at most two generations of 10 KB: {}",
            c.len(t0)
        );
        assert_eq!(c.get(t0, &99), Some(vec![0u8; 1000]), "the newest survive");
    }

    #[test]
    fn records_expire_and_can_be_removed() {
        let t0 = Instant::now();
        let mut r = RecordCache::new(100, AGE);
        r.add(t0, [1; 32], [2; 32], vec![2]);
        r.add(t0, [1; 32], [3; 32], vec![3]);
        assert_eq!(r.get(t0, &[1; 32], 20).len(), 2);
        r.remove(t0, &[1; 32], &[2; 32]);
        assert_eq!(r.get(t0, &[1; 32], 20), vec![vec![3]]);
        assert!(r
            .get(t0 + Duration::from_secs(100), &[1; 32], 20)
            .is_empty());
    }
}
