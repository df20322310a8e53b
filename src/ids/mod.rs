//! Identifiers: new ones, UUIDv7, time-ordered to the millisecond; and how a history entry
//! and the store's maps hold one ([`Id`], inline).
//!
//! Their 74 random bits come from fastrand's per-thread generator, seeded once per thread,
//! instead of one `getrandom` system call per id (uuid's `now_v7`), which came to five system
//! calls per chat turn. These ids must be unique, not secret: every request is authorized by
//! its API key, and a v7 id shows when it was made anyway. Secrets (a generated API key) still
//! come from the operating system.

use std::time::{SystemTime, UNIX_EPOCH};

use uuid::Uuid;

mod id;

pub use id::Id;

/// A hash map keyed by ids: the maps a turn looks ids up in (the store's mirror and history
/// heads, the per-session turn locks). Hashed with foldhash, seeded at random once per
/// process: the ids in a request's path are the client's to choose, so the hash is keyed, as
/// std's SipHash is, but costs a tenth as much for a 36-byte id (SipHash took about 300
/// instructions for one, and a chat turn hashes a dozen).
pub(crate) type IdMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

/// A new UUIDv7 for a record, a history entry, a response or a generated call id.
pub(crate) fn new_v7() -> Uuid {
    let millis = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    let mut random = [0u8; 10];
    fastrand::fill(&mut random);
    uuid::Builder::from_unix_timestamp_millis(millis, &random).into_uuid()
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::time::{SystemTime, UNIX_EPOCH};

    use super::new_v7;

    #[test]
    fn ids_are_version_7_carry_the_time_and_do_not_repeat_across_threads() {
        let before = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
        let id = new_v7();
        assert_eq!(id.get_version_num(), 7);
        assert_eq!(id.get_variant(), uuid::Variant::RFC4122);
        let (secs, _) = id.get_timestamp().expect("v7 has a timestamp").to_unix();
        assert!(secs.abs_diff(before.as_secs()) <= 1, "{secs} vs {before:?}");

        let threads: Vec<_> = (0..4)
            .map(|_| std::thread::spawn(|| (0..50_000).map(|_| new_v7()).collect::<Vec<_>>()))
            .collect();
        let mut seen = HashSet::new();
        for thread in threads {
            for id in thread.join().unwrap() {
                assert!(seen.insert(id), "{id} was made twice");
            }
        }
    }
}
