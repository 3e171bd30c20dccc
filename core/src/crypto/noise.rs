//! Noise IK the way hyperdht runs it: `Noise_IK_Ed25519_ChaChaPoly_BLAKE2b`, where the
//! "Ed25519" DH multiplies Ed25519 keys on the Edwards curve (noise-curve-ed). `snow` runs the
//! handshake; this module supplies that DH through a custom resolver and hands back the split
//! keys and handshake hash SecretStream needs.

use curve25519_dalek::edwards::CompressedEdwardsY;
use curve25519_dalek::traits::IsIdentity;
use curve25519_dalek::Scalar;
use ed25519_dalek::SigningKey;
use rand::{CryptoRng, RngCore};
use sha2::{Digest, Sha512};
use snow::params::{CipherChoice, DHChoice, HashChoice, NoiseParams};
use snow::resolvers::{CryptoResolver, DefaultResolver, FallbackResolver};
use snow::types::{Cipher, Dh, Hash, Random};
use snow::{Builder, HandshakeState};

/// The protocol name mixed into the handshake.
pub const PROTOCOL_NAME: &str = "Noise_IK_Ed25519_ChaChaPoly_BLAKE2b";
/// Largest Noise message.
pub const MAX_MESSAGE_LEN: usize = 65535;

/// Why a handshake failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoiseError {
    /// A message did not decrypt or carried an invalid key.
    #[error("noise handshake failed: {0}")]
    Handshake(String),
    /// A call came in the wrong order (for example reading when it is our turn to write).
    #[error("noise handshake used out of order")]
    OutOfOrder,
}

impl From<snow::Error> for NoiseError {
    fn from(e: snow::Error) -> Self {
        NoiseError::Handshake(e.to_string())
    }
}

/// noise-curve-ed's DH: the clamped Ed25519 signing scalar of `seed` times the remote public
/// key's Edwards point, compressed. `None` for a key libsodium would refuse (not a canonical
/// point, small order, outside the prime-order subgroup) or an identity result.
pub fn ed25519_dh(seed: &[u8; 32], remote_public_key: &[u8; 32]) -> Option<[u8; 32]> {
    let compressed = CompressedEdwardsY(*remote_public_key);
    let point = compressed.decompress()?;
    if point.compress() != compressed || point.is_small_order() || !point.is_torsion_free() {
        return None;
    }
    let digest = Sha512::digest(seed);
    let mut scalar = [0u8; 32];
    scalar.copy_from_slice(&digest[..32]);
    scalar[0] &= 248;
    scalar[31] &= 127;
    scalar[31] |= 64;
    let shared = Scalar::from_bytes_mod_order(scalar) * point;
    if shared.is_identity() {
        return None;
    }
    Some(shared.compress().to_bytes())
}

/// The public key of an Ed25519 seed.
pub fn public_key_of(seed: &[u8; 32]) -> [u8; 32] {
    SigningKey::from_bytes(seed).verifying_key().to_bytes()
}

#[derive(Default)]
struct EdDh {
    seed: [u8; 32],
    public: [u8; 32],
}

impl Dh for EdDh {
    fn name(&self) -> &'static str {
        "Ed25519"
    }
    fn pub_len(&self) -> usize {
        32
    }
    fn priv_len(&self) -> usize {
        32
    }
    fn set(&mut self, privkey: &[u8]) {
        self.seed.copy_from_slice(&privkey[..32]);
        self.public = public_key_of(&self.seed);
    }
    fn generate(&mut self, rng: &mut dyn Random) {
        let mut seed = [0u8; 32];
        rng.fill_bytes(&mut seed);
        self.set(&seed);
    }
    fn pubkey(&self) -> &[u8] {
        &self.public
    }
    fn privkey(&self) -> &[u8] {
        &self.seed
    }
    fn dh(&self, pubkey: &[u8], out: &mut [u8]) -> Result<(), snow::Error> {
        let remote: [u8; 32] = pubkey
            .get(..32)
            .and_then(|k| k.try_into().ok())
            .ok_or(snow::Error::Dh)?;
        let shared = ed25519_dh(&self.seed, &remote).ok_or(snow::Error::Dh)?;
        out[..32].copy_from_slice(&shared);
        Ok(())
    }
}

/// Yields a fixed ephemeral seed: only for reproducing recorded transcripts.
struct FixedRng {
    bytes: [u8; 32],
    pos: usize,
}

impl RngCore for FixedRng {
    fn next_u32(&mut self) -> u32 {
        let mut b = [0u8; 4];
        self.fill_bytes(&mut b);
        u32::from_le_bytes(b)
    }
    fn next_u64(&mut self) -> u64 {
        let mut b = [0u8; 8];
        self.fill_bytes(&mut b);
        u64::from_le_bytes(b)
    }
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        for d in dest {
            *d = self.bytes[self.pos % 32];
            self.pos += 1;
        }
    }
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand::Error> {
        self.fill_bytes(dest);
        Ok(())
    }
}

impl CryptoRng for FixedRng {}
impl Random for FixedRng {}

struct EdResolver {
    ephemeral: Option<[u8; 32]>,
}

impl CryptoResolver for EdResolver {
    fn resolve_rng(&self) -> Option<Box<dyn Random>> {
        self.ephemeral
            .map(|bytes| Box::new(FixedRng { bytes, pos: 0 }) as Box<dyn Random>)
    }
    fn resolve_dh(&self, choice: &DHChoice) -> Option<Box<dyn Dh>> {
        // The params say 25519 only because snow cannot parse "Ed25519"; see `params`.
        matches!(choice, DHChoice::Curve25519).then(|| Box::<EdDh>::default() as Box<dyn Dh>)
    }
    fn resolve_hash(&self, _: &HashChoice) -> Option<Box<dyn Hash>> {
        None
    }
    fn resolve_cipher(&self, _: &CipherChoice) -> Option<Box<dyn Cipher>> {
        None
    }
}

fn params() -> NoiseParams {
    let mut p: NoiseParams = "Noise_IK_25519_ChaChaPoly_BLAKE2b"
        .parse()
        .expect("a pattern snow knows");
    // snow hashes `name` into the initial state; this makes it hyperdht's.
    p.name = PROTOCOL_NAME.to_string();
    p
}

fn builder<'a>(seed: &'a [u8; 32], prologue: &'a [u8], ephemeral: Option<[u8; 32]>) -> Builder<'a> {
    let resolver = FallbackResolver::new(
        Box::new(EdResolver { ephemeral }),
        Box::new(DefaultResolver),
    );
    Builder::with_resolver(params(), Box::new(resolver))
        .local_private_key(seed)
        .prologue(prologue)
}

/// What a finished handshake yields.
#[derive(Clone, PartialEq, Eq)]
pub struct HandshakeOutcome {
    /// Whether we started the handshake.
    pub is_initiator: bool,
    /// Key for what we send.
    pub tx: [u8; 32],
    /// Key for what we receive.
    pub rx: [u8; 32],
    /// The final handshake hash, which binds everything derived from the session.
    pub hash: [u8; 64],
    /// The peer's static public key.
    pub remote_public_key: [u8; 32],
}

impl std::fmt::Debug for HandshakeOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Keys stay out of logs.
        f.debug_struct("HandshakeOutcome")
            .field("is_initiator", &self.is_initiator)
            .field("remote_public_key", &self.remote_public_key)
            .finish_non_exhaustive()
    }
}

/// One side of an IK handshake.
pub struct NoiseHandshake {
    state: HandshakeState,
}

impl std::fmt::Debug for NoiseHandshake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NoiseHandshake")
            .field("initiator", &self.state.is_initiator())
            .field("finished", &self.state.is_handshake_finished())
            .finish()
    }
}

impl NoiseHandshake {
    /// The dialling side: our static seed and the server's public key.
    pub fn initiator(
        seed: &[u8; 32],
        remote_public_key: &[u8; 32],
        prologue: &[u8],
    ) -> Result<Self, NoiseError> {
        Self::initiator_with_ephemeral(seed, remote_public_key, prologue, None)
    }

    /// The listening side.
    pub fn responder(seed: &[u8; 32], prologue: &[u8]) -> Result<Self, NoiseError> {
        Self::responder_with_ephemeral(seed, prologue, None)
    }

    /// Like [`NoiseHandshake::initiator`] with a chosen ephemeral seed (reproducing
    /// transcripts only: a fixed ephemeral key destroys forward secrecy).
    pub fn initiator_with_ephemeral(
        seed: &[u8; 32],
        remote_public_key: &[u8; 32],
        prologue: &[u8],
        ephemeral: Option<[u8; 32]>,
    ) -> Result<Self, NoiseError> {
        let state = builder(seed, prologue, ephemeral)
            .remote_public_key(remote_public_key)
            .build_initiator()?;
        Ok(NoiseHandshake { state })
    }

    /// Like [`NoiseHandshake::responder`] with a chosen ephemeral seed (transcripts only).
    pub fn responder_with_ephemeral(
        seed: &[u8; 32],
        prologue: &[u8],
        ephemeral: Option<[u8; 32]>,
    ) -> Result<Self, NoiseError> {
        let state = builder(seed, prologue, ephemeral).build_responder()?;
        Ok(NoiseHandshake { state })
    }

    /// Writes the next handshake message carrying `payload`.
    pub fn write_message(&mut self, payload: &[u8]) -> Result<Vec<u8>, NoiseError> {
        if !self.state.is_my_turn() {
            return Err(NoiseError::OutOfOrder);
        }
        let mut buf = vec![0u8; MAX_MESSAGE_LEN];
        let n = self.state.write_message(payload, &mut buf)?;
        buf.truncate(n);
        Ok(buf)
    }

    /// Reads the peer's next handshake message and returns its payload.
    pub fn read_message(&mut self, message: &[u8]) -> Result<Vec<u8>, NoiseError> {
        if self.state.is_my_turn() || message.len() > MAX_MESSAGE_LEN {
            return Err(NoiseError::OutOfOrder);
        }
        let mut buf = vec![0u8; message.len()];
        let n = self.state.read_message(message, &mut buf)?;
        buf.truncate(n);
        Ok(buf)
    }

    /// The peer's static key, once known (the responder learns it from message 1).
    pub fn remote_public_key(&self) -> Option<[u8; 32]> {
        self.state.get_remote_static()?.try_into().ok()
    }

    /// Whether both messages have gone through.
    pub fn is_finished(&self) -> bool {
        self.state.is_handshake_finished()
    }

    /// The keys and hash of a finished handshake.
    pub fn finish(mut self) -> Result<HandshakeOutcome, NoiseError> {
        if !self.state.is_handshake_finished() {
            return Err(NoiseError::OutOfOrder);
        }
        let remote_public_key = self.remote_public_key().ok_or(NoiseError::OutOfOrder)?;
        let mut hash = [0u8; 64];
        hash.copy_from_slice(self.state.get_handshake_hash());
        let (k1, k2) = self.state.dangerously_get_raw_split();
        let is_initiator = self.state.is_initiator();
        let (tx, rx) = if is_initiator { (k1, k2) } else { (k2, k1) };
        Ok(HandshakeOutcome {
            is_initiator,
            tx,
            rx,
            hash,
            remote_public_key,
        })
    }
}
