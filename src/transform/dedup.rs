//! Exact detection of repeated natural keys in bounded memory.
//!
//! A deep sync sees every transaction once, and a repeat of a natural key may come any number of
//! rows after its first occurrence. Keeping every key in a hash map costs ~50 bytes a row (over
//! a gigabyte at 20M rows). [`KeySet`] keeps the most recent keys in a fixed-size map; when the
//! map is full its keys are sorted and spilled to a run file on disk, and added to a Bloom
//! filter. A key that the map does not hold is looked up in the runs only when the filter says
//! it may be there, so almost every row costs one map probe and one filter probe, and memory
//! grows by the filter's ~1.8 bytes a key (plus 16 bytes per 128 spilled keys of run index).
//!
//! Keys are 128-bit hashes (xxh3) of the natural key; each carries the source line that first
//! used it, so that a repeat can name it.

use std::collections::HashMap;
use std::fs::File;
use std::hash::{BuildHasherDefault, Hasher};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use fastbloom::BloomFilter;

use crate::error::{Error, Result};
use crate::transform::spill::{read_at, SpillDir};

/// Keys held in memory before a spill: 7/8 of 2^18, so the map never resizes past 2^18 buckets
/// (~8 MiB).
pub const DEFAULT_RECENT_KEYS: usize = 229_376;
/// Keys per fence of a run's index (one read of 128 × 24 bytes finds a key).
const FENCE: usize = 128;
/// Bytes of a spilled entry: the 128-bit key and the 64-bit line, little-endian.
const ENTRY: usize = 24;
/// The most keys a size hint may ask the filter to be allocated for at once (~100 MiB).
pub const MAX_EXPECTED_KEYS: u64 = 64 << 20;
/// False-positive rate of each filter segment.
const FALSE_POSITIVES: f64 = 0.002;

/// The keys are already uniform 128-bit hashes: the map uses their low 64 bits as they are.
#[derive(Default)]
struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        // Only u128 keys are hashed (write_u128); fold anything else in for completeness.
        for chunk in bytes.chunks(8) {
            let mut b = [0u8; 8];
            b[..chunk.len()].copy_from_slice(chunk);
            self.0 = self.0.rotate_left(5) ^ u64::from_le_bytes(b);
        }
    }
    fn write_u128(&mut self, v: u128) {
        self.0 = v as u64;
    }
}

/// A sorted run of spilled keys.
struct Run {
    file: File,
    len: usize,
    /// The key at every `FENCE`-th entry.
    fences: Vec<u128>,
}

impl Run {
    fn find(&self, key: u128, path: &Path) -> Result<Option<u64>> {
        // The block whose first key is the last fence <= key.
        let block = self.fences.partition_point(|f| *f <= key);
        if block == 0 {
            return Ok(None);
        }
        let start = (block - 1) * FENCE;
        let n = FENCE.min(self.len - start);
        let mut buf = [0u8; FENCE * ENTRY];
        read_at(&self.file, &mut buf[..n * ENTRY], (start * ENTRY) as u64)
            .map_err(|e| Error::io(path, e))?;
        let entry = |i: usize| -> (u128, u64) {
            let e = &buf[i * ENTRY..(i + 1) * ENTRY];
            let mut k = [0u8; 16];
            let mut l = [0u8; 8];
            k.copy_from_slice(&e[..16]);
            l.copy_from_slice(&e[16..]);
            (u128::from_le_bytes(k), u64::from_le_bytes(l))
        };
        let (mut lo, mut hi) = (0, n);
        while lo < hi {
            let mid = (lo + hi) / 2;
            let (k, line) = entry(mid);
            match k.cmp(&key) {
                std::cmp::Ordering::Equal => return Ok(Some(line)),
                std::cmp::Ordering::Less => lo = mid + 1,
                std::cmp::Ordering::Greater => hi = mid,
            }
        }
        Ok(None)
    }
}

/// What a [`KeySet`] did, for the run report and the logs.
#[derive(Debug, Default, Clone, Copy, serde::Serialize)]
pub struct KeySetStats {
    pub keys: u64,
    pub spilled_runs: u64,
    /// Lookups that went to disk (filter hits: real repeats and false positives).
    pub disk_lookups: u64,
}

/// The natural keys seen so far, each with the line that first used it.
pub struct KeySet {
    recent: HashMap<u128, u64, BuildHasherDefault<KeyHasher>>,
    max_recent: usize,
    runs: Vec<Run>,
    /// Filter segments, each sized for twice the keys of the one before.
    filters: Vec<(BloomFilter, usize, usize)>,
    /// Keys the first filter segment is sized for.
    first_capacity: usize,
    dir: SpillDir,
    pub stats: KeySetStats,
}

impl KeySet {
    /// A key set that spills into `dir` (created on the first spill, removed on drop).
    pub fn new(dir: PathBuf, max_recent: usize) -> KeySet {
        let max_recent = max_recent.max(1);
        KeySet {
            recent: HashMap::with_capacity_and_hasher(max_recent, Default::default()),
            max_recent,
            runs: Vec::new(),
            filters: Vec::new(),
            first_capacity: max_recent * 4,
            dir: SpillDir::new(dir),
            stats: KeySetStats::default(),
        }
    }

    /// Size the filter for about `keys` keys in all (e.g. the source's estimated row count), so
    /// that it is allocated once rather than in doublings that leave up to half of it unused.
    /// More keys than that still fit (in further segments). Only before the first spill; the
    /// hint is capped at [`MAX_EXPECTED_KEYS`].
    pub fn expect_keys(&mut self, keys: u64) {
        if self.filters.is_empty() {
            let keys = usize::try_from(keys.min(MAX_EXPECTED_KEYS)).unwrap_or(usize::MAX);
            self.first_capacity = keys.max(self.max_recent * 4);
        }
    }

    /// Keys the filter is allocated for (all segments; the planned first one before any spill).
    pub fn filter_capacity(&self) -> usize {
        match self.filters.is_empty() {
            true => self.first_capacity,
            false => self.filters.iter().map(|(_, _, c)| c).sum(),
        }
    }

    fn run_name(i: usize) -> String {
        format!("keys-{i:05}.bin")
    }

    /// The line that first used `key`, or None (and `key` is recorded with `line`).
    pub fn first_line(&mut self, key: u128, line: u64) -> Result<Option<u64>> {
        if let Some(first) = self.recent.get(&key) {
            return Ok(Some(*first));
        }
        let folded = (key as u64) ^ ((key >> 64) as u64);
        if self.filters.iter().any(|(f, _, _)| f.contains_hash(folded)) {
            self.stats.disk_lookups += 1;
            for (i, run) in self.runs.iter().enumerate() {
                if let Some(first) = run.find(key, &self.dir.path().join(Self::run_name(i)))? {
                    return Ok(Some(first));
                }
            }
        }
        self.recent.insert(key, line);
        self.stats.keys += 1;
        if self.recent.len() >= self.max_recent {
            self.spill()?;
        }
        Ok(None)
    }

    fn spill(&mut self) -> Result<()> {
        let mut entries: Vec<(u128, u64)> = self.recent.drain().collect();
        entries.sort_unstable_by_key(|(k, _)| *k);
        let (file, path) = self.dir.create(&Self::run_name(self.runs.len()))?;
        let mut out = BufWriter::with_capacity(1 << 16, &file);
        let mut fences = Vec::with_capacity(entries.len() / FENCE + 1);
        for (i, (k, line)) in entries.iter().enumerate() {
            if i % FENCE == 0 {
                fences.push(*k);
            }
            out.write_all(&k.to_le_bytes())
                .and_then(|()| out.write_all(&line.to_le_bytes()))
                .map_err(|e| Error::io(&path, e))?;
            self.insert_filter((*k as u64) ^ ((*k >> 64) as u64));
        }
        out.flush().map_err(|e| Error::io(&path, e))?;
        drop(out);
        self.runs.push(Run {
            file,
            len: entries.len(),
            fences,
        });
        self.stats.spilled_runs += 1;
        tracing::debug!(
            runs = self.runs.len(),
            keys = self.stats.keys,
            "natural keys spilled"
        );
        Ok(())
    }

    fn insert_filter(&mut self, hash: u64) {
        let full = match self.filters.last() {
            Some((_, len, capacity)) => len >= capacity,
            None => true,
        };
        if full {
            let capacity = match self.filters.last() {
                Some((_, _, c)) => c * 2,
                None => self.first_capacity,
            };
            let filter = BloomFilter::with_false_pos(FALSE_POSITIVES).expected_items(capacity);
            self.filters.push((filter, 0, capacity));
        }
        if let Some((f, len, _)) = self.filters.last_mut() {
            f.insert_hash(hash);
            *len += 1;
        }
    }
}

impl Drop for KeySet {
    fn drop(&mut self) {
        // Close the runs before their directory is removed.
        self.runs.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use xxhash_rust::xxh3::xxh3_128;

    fn key(i: u64) -> u128 {
        xxh3_128(&i.to_le_bytes())
    }

    #[test]
    fn repeats_are_found_with_their_first_line_across_spills() {
        let dir = tempfile::tempdir().expect("tempdir");
        let spill = dir.path().join("keys");
        let mut set = KeySet::new(spill.clone(), 1000);
        // 20 runs' worth of distinct keys, then every 37th key again, then a few new ones.
        for i in 0..20_000u64 {
            assert_eq!(set.first_line(key(i), i + 2).expect("ok"), None, "key {i}");
        }
        assert_eq!(set.stats.spilled_runs, 20);
        assert!(spill.is_dir());
        for i in (0..20_000u64).step_by(37) {
            assert_eq!(
                set.first_line(key(i), 1_000_000 + i).expect("ok"),
                Some(i + 2),
                "repeat of key {i}"
            );
        }
        for i in 20_000..20_100u64 {
            assert_eq!(set.first_line(key(i), i + 2).expect("ok"), None);
        }
        // A repeat of a repeat still names the first line.
        assert_eq!(set.first_line(key(37), 9).expect("ok"), Some(39));
        // Filter false positives are rare (three segments at 0.2 % each, so under 1 % of the
        // 20,100 new keys): almost every new key skipped the disk.
        let repeats = 20_000 / 37 + 1 + 1;
        assert!(set.stats.disk_lookups >= repeats, "{:?}", set.stats);
        assert!(set.stats.disk_lookups < repeats + 200, "{:?}", set.stats);
        drop(set);
        assert!(!spill.exists(), "spill files are removed");
    }

    #[test]
    fn a_size_hint_allocates_one_filter_segment_and_more_keys_still_fit() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut hinted = KeySet::new(dir.path().join("a"), 100);
        hinted.expect_keys(20_000);
        let mut doubling = KeySet::new(dir.path().join("b"), 100);
        for i in 0..20_000u64 {
            assert_eq!(hinted.first_line(key(i), i).expect("ok"), None);
            assert_eq!(doubling.first_line(key(i), i).expect("ok"), None);
        }
        assert_eq!(hinted.filters.len(), 1, "sized once from the hint");
        assert!(doubling.filters.len() >= 5, "{}", doubling.filters.len());
        // Past the hint the filter grows as before, and repeats are still found.
        for i in 20_000..60_000u64 {
            assert_eq!(hinted.first_line(key(i), i).expect("ok"), None);
        }
        assert!(hinted.filters.len() > 1);
        for i in (0..60_000u64).step_by(101) {
            assert_eq!(
                hinted.first_line(key(i), 0).expect("ok"),
                Some(i),
                "key {i}"
            );
        }
    }

    #[test]
    fn keys_at_fence_and_run_edges_are_found() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut set = KeySet::new(dir.path().join("k"), FENCE * 3 + 1);
        let keys: Vec<u128> = (0..(FENCE * 3 + 1) as u64).map(key).collect();
        for (i, k) in keys.iter().enumerate() {
            assert_eq!(set.first_line(*k, i as u64).expect("ok"), None);
        }
        assert_eq!(set.stats.spilled_runs, 1);
        let mut sorted = keys.clone();
        sorted.sort_unstable();
        for k in [
            sorted[0],
            sorted[FENCE - 1],
            sorted[FENCE],
            sorted[2 * FENCE],
            sorted[sorted.len() - 1],
        ] {
            let i = keys.iter().position(|x| *x == k).expect("present") as u64;
            assert_eq!(set.first_line(k, 99_999).expect("ok"), Some(i));
        }
        assert_eq!(set.first_line(0, 5).expect("ok"), None);
        assert_eq!(set.first_line(u128::MAX, 6).expect("ok"), None);
    }
}
