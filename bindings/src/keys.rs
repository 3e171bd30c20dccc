//! Key pairs in and out as bytes, checked.

use hyperswarm::dht::KeyPair;

use crate::error::{Error, ErrorCode, Result};

/// A key pair as bytes: JS's `{ publicKey, secretKey }`.
#[derive(Clone, PartialEq, Eq)]
pub struct KeyPairBytes {
    /// 32-byte Ed25519 public key.
    pub public_key: [u8; 32],
    /// 64-byte secret key (seed, then public key), libsodium's layout.
    pub secret_key: [u8; 64],
}

impl std::fmt::Debug for KeyPairBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the secret half.
        f.debug_struct("KeyPairBytes")
            .field("public_key", &hex::encode(self.public_key))
            .finish()
    }
}

impl From<&KeyPair> for KeyPairBytes {
    fn from(kp: &KeyPair) -> Self {
        KeyPairBytes {
            public_key: kp.public_key(),
            secret_key: kp.secret_key(),
        }
    }
}

/// The key pair derived from a 32-byte `seed` (JS `DHT.keyPair(seed)`), or a random one.
pub fn key_pair(seed: Option<&[u8]>) -> Result<KeyPairBytes> {
    Ok(KeyPairBytes::from(&match seed {
        Some(s) => KeyPair::from_seed(seed_bytes(s)?),
        None => KeyPair::generate(),
    }))
}

pub(crate) fn seed_bytes(seed: &[u8]) -> Result<[u8; 32]> {
    seed.try_into().map_err(|_| {
        Error::new(
            ErrorCode::InvalidKey,
            format!("a seed is 32 bytes, got {}", seed.len()),
        )
    })
}

/// A key pair from its 64-byte secret key; when `public_key` is given it must match.
pub fn from_secret_key(secret_key: &[u8], public_key: Option<&[u8]>) -> Result<KeyPair> {
    if secret_key.len() != 64 {
        return Err(Error::new(
            ErrorCode::InvalidKey,
            format!("a secret key is 64 bytes, got {}", secret_key.len()),
        ));
    }
    let kp = KeyPair::from_seed(seed_bytes(&secret_key[..32])?);
    if kp.public_key()[..] != secret_key[32..] {
        return Err(Error::new(
            ErrorCode::InvalidKey,
            "the secret key's second half is not its public key",
        ));
    }
    if let Some(pk) = public_key {
        if pk != kp.public_key() {
            return Err(Error::new(
                ErrorCode::InvalidKey,
                "the public key does not belong to the secret key",
            ));
        }
    }
    Ok(kp)
}
