//! BLAKE2b-256 as libsodium's `crypto_generichash` computes it (plain and keyed).

use blake2::digest::consts::U32;
use blake2::digest::{FixedOutput, Mac, Update};
use blake2::{Blake2b, Blake2bMac};

/// BLAKE2b with a 32-byte digest and no key.
pub fn blake2b_256(parts: &[&[u8]]) -> [u8; 32] {
    let mut h = Blake2b::<U32>::default();
    for p in parts {
        Update::update(&mut h, p);
    }
    h.finalize_fixed().into()
}

/// Keyed BLAKE2b with a 32-byte digest; `key` must be 1..=64 bytes long.
pub fn blake2b_256_keyed(key: &[u8], data: &[u8]) -> [u8; 32] {
    let mut h = Blake2bMac::<U32>::new_from_slice(key).expect("BLAKE2b keys are 1..=64 bytes");
    Mac::update(&mut h, data);
    h.finalize().into_bytes().into()
}
