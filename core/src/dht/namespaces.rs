//! hyperdht's signature namespaces: `BLAKE2b-256(BLAKE2b-256("hyperswarm/dht") || id)`.

use std::sync::OnceLock;

use crate::crypto::hash::blake2b_256;

/// Namespace id of handshakes.
pub const PEER_HANDSHAKE: u8 = 0;
/// Namespace id of holepunch payloads.
pub const PEER_HOLEPUNCH: u8 = 1;
/// Namespace id of announce signatures.
pub const ANNOUNCE: u8 = 4;
/// Namespace id of unannounce signatures.
pub const UNANNOUNCE: u8 = 5;
/// Namespace id of mutable-value signatures.
pub const MUTABLE_PUT: u8 = 6;
/// Namespace id of plugins.
pub const PLUGIN: u8 = 10;

/// The namespace for `id` (one of the constants above).
pub fn ns(id: u8) -> [u8; 32] {
    static ALL: OnceLock<Vec<[u8; 32]>> = OnceLock::new();
    let all = ALL.get_or_init(|| {
        let name = blake2b_256(&[b"hyperswarm/dht"]);
        (0..=u8::MAX).map(|i| blake2b_256(&[&name, &[i]])).collect()
    });
    all[usize::from(id)]
}
