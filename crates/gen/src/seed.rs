//! Stream seeds: which random stream a worker's generator, op choice or
//! arrival draws from. Pure functions of (seed, name, agent, worker); they
//! never change, or the same seed would stop giving the same requests.

use crate::spec::GenSpec;

// ---------------------------------------------------------------- streams

/// FNV-1a, 64 bits: a hash of a generator's name that never changes.
pub fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// SplitMix64's finalizer: every input bit reaches every output bit.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The seed of one generator's stream on one worker of one agent.
pub fn stream_seed(seed: u64, name: &str, agent: u32, worker: u32) -> u64 {
    let lane = (u64::from(agent) << 32) | u64::from(worker);
    mix(mix(mix(seed) ^ fnv1a(name.as_bytes())) ^ lane)
}

/// Identifies a list of generators by their names in order, so that a
/// template is rendered only against the list it was compiled for.
pub(crate) fn names_fingerprint(gens: &[GenSpec]) -> u64 {
    let mut h = fnv1a(b"");
    for g in gens {
        h = mix(h ^ fnv1a(g.name.as_bytes()));
    }
    h
}
