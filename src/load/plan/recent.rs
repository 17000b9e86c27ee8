//! The direct costs planned most recently: a bounded cache that decides when a header must be
//! planned (again).

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;

use xxhash_rust::xxh3::xxh3_64;

/// Hasher for keys that already are xxh3 hashes.
#[derive(Default)]
pub(super) struct PreHashed(u64);

impl Hasher for PreHashed {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u64(&mut self, v: u64) {
        self.0 = v;
    }
}

pub(super) type PreHashedMap<V> = HashMap<u64, V, BuildHasherDefault<PreHashed>>;

/// An origin_id in a set, hashed in one shot by xxh3 (compared exactly).
#[derive(PartialEq, Eq)]
pub(super) struct IdKey<'a>(pub(super) &'a str);

impl std::hash::Hash for IdKey<'_> {
    fn hash<H: Hasher>(&self, h: &mut H) {
        h.write_u64(xxh3_64(self.0.as_bytes()));
    }
}

pub(super) const WAYS: usize = 4;

#[derive(Clone)]
struct Recent {
    fingerprint: u64,
    project: u32,
    /// The project's flush count when this entry was planned.
    epoch: u32,
    origin_id: Arc<str>,
}

/// The direct costs planned most recently: a fixed-size 4-way set-associative cache (LRU within
/// a set) of origin_ids. Memory is fixed at creation (32 bytes a slot plus the shared ids);
/// what it forgets is planned again, never lost.
pub(super) struct RecentHeaders {
    slots: Vec<Option<Recent>>,
    mask: usize,
    /// Entries dropped to make room, ever.
    pub(super) evictions: u64,
}

/// What [`RecentHeaders::get_or_insert`] dropped to make room: (project, epoch).
pub(super) type Evicted = Option<(u32, u32)>;

impl RecentHeaders {
    pub(super) fn new(capacity: usize) -> RecentHeaders {
        let sets = (capacity / WAYS).max(1).next_power_of_two();
        RecentHeaders {
            slots: vec![None; sets * WAYS],
            mask: sets - 1,
            evictions: 0,
        }
    }

    /// The shared origin_id of direct cost `origin_id` of `project`, and true when it is not
    /// among the recently planned (its header must be planned), with the entry dropped for it.
    pub(super) fn get_or_insert(
        &mut self,
        origin_id: &str,
        project: u32,
        epoch: u32,
    ) -> (Arc<str>, bool, Evicted) {
        let fingerprint = xxh3_64(origin_id.as_bytes());
        let set = (fingerprint as usize) & self.mask;
        let ways = &mut self.slots[set * WAYS..(set + 1) * WAYS];
        for i in 0..WAYS {
            match &ways[i] {
                Some(e)
                    if e.fingerprint == fingerprint
                        && e.project == project
                        && *e.origin_id == *origin_id =>
                {
                    let found = e.origin_id.clone();
                    ways[..=i].rotate_right(1);
                    return (found, false, None);
                }
                Some(_) => {}
                // Sets fill from the front: the first empty way ends it.
                None => break,
            }
        }
        let id: Arc<str> = Arc::from(origin_id);
        let evicted = ways[WAYS - 1].as_ref().map(|e| (e.project, e.epoch));
        if evicted.is_some() {
            self.evictions += 1;
        }
        ways.rotate_right(1);
        ways[0] = Some(Recent {
            fingerprint,
            project,
            epoch,
            origin_id: id.clone(),
        });
        (id, true, evicted)
    }
}
