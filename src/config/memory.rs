//! The default budget of the embedded store's in-memory mirror, from the memory agentd may
//! use: the smaller of the machine's RAM (`/proc/meminfo`) and the limit of its cgroup
//! (`memory.max`, which systemd's `MemoryMax=` sets), an eighth of it, between 64 MiB and
//! 4 GiB.

use std::path::Path;

const MIB: usize = 1 << 20;
const FLOOR: usize = 64 * MIB;
const CEILING: usize = 4096 * MIB;

/// The mirror's budget when `storage.mirror_bytes` is not set.
pub(crate) fn default_mirror_bytes() -> usize {
    let usable = [machine_memory(), cgroup_limit()]
        .into_iter()
        .flatten()
        .min();
    budget_for(usable)
}

/// An eighth of `usable` bytes, within the floor and the ceiling; the floor when unknown.
fn budget_for(usable: Option<usize>) -> usize {
    usable.map_or(FLOOR, |bytes| (bytes / 8).clamp(FLOOR, CEILING))
}

fn machine_memory() -> Option<usize> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: usize = line.split_whitespace().nth(1)?.parse().ok()?;
    kib.checked_mul(1024)
}

/// `memory.max` of this process's cgroup (v2); `None` for "max" or no cgroup v2.
fn cgroup_limit() -> Option<usize> {
    let membership = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let path = membership.lines().find_map(|l| l.strip_prefix("0::"))?;
    let file = Path::new("/sys/fs/cgroup")
        .join(path.trim_start_matches('/'))
        .join("memory.max");
    std::fs::read_to_string(file).ok()?.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_eighth_of_memory_within_bounds() {
        assert_eq!(budget_for(None), 64 * MIB);
        assert_eq!(budget_for(Some(256 * MIB)), 64 * MIB);
        assert_eq!(budget_for(Some(4096 * MIB)), 512 * MIB);
        assert_eq!(budget_for(Some(64 * 1024 * MIB)), 4096 * MIB);
    }

    #[test]
    fn this_machine_gets_a_budget_within_bounds() {
        let budget = default_mirror_bytes();
        assert!((FLOOR..=CEILING).contains(&budget), "{budget}");
        assert!(machine_memory().is_some(), "/proc/meminfo is readable");
    }
}
