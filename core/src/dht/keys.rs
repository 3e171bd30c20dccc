//! Ed25519 key pairs as hyperdht uses them (libsodium's `crypto_sign_seed_keypair`), and the
//! hashes that turn keys and values into DHT targets.

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};

use crate::crypto::hash::blake2b_256;
use crate::rpc::NodeId;

/// An Ed25519 key pair. Its secret key is JS's 64-byte `seed || publicKey`.
#[derive(Clone)]
pub struct KeyPair {
    signing: SigningKey,
}

impl std::fmt::Debug for KeyPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the secret half.
        f.debug_struct("KeyPair")
            .field("public_key", &hex(&self.public_key()))
            .finish()
    }
}

impl KeyPair {
    /// The key pair JS `DHT.keyPair(seed)` derives from a 32-byte seed.
    pub fn from_seed(seed: [u8; 32]) -> Self {
        KeyPair {
            signing: SigningKey::from_bytes(&seed),
        }
    }

    /// A fresh random key pair.
    pub fn generate() -> Self {
        Self::from_seed(rand::random())
    }

    /// The public key.
    pub fn public_key(&self) -> [u8; 32] {
        self.signing.verifying_key().to_bytes()
    }

    /// The 64-byte secret key in libsodium's layout: seed, then public key.
    pub fn secret_key(&self) -> [u8; 64] {
        self.signing.to_keypair_bytes()
    }

    /// A detached signature over `message`.
    pub fn sign(&self, message: &[u8]) -> [u8; 64] {
        self.signing.sign(message).to_bytes()
    }
}

/// Whether `signature` is `public_key`'s signature over `message`. Strict verification:
/// small-order keys and non-canonical signatures are rejected, as libsodium does.
pub fn verify(public_key: &[u8; 32], message: &[u8], signature: &[u8; 64]) -> bool {
    let Ok(key) = VerifyingKey::from_bytes(public_key) else {
        return false;
    };
    key.verify_strict(message, &Signature::from_bytes(signature))
        .is_ok()
}

/// BLAKE2b-256 of `data`: hyperdht's `DHT.hash`.
pub fn hash(data: &[u8]) -> NodeId {
    NodeId(blake2b_256(&[data]))
}

/// The target a server announces itself under and `find_peer` looks up: hash(public key).
pub fn peer_target(public_key: &[u8; 32]) -> NodeId {
    hash(public_key)
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}
