//! SecretStream as @hyperswarm/secret-stream frames it over a UDX stream: a header frame
//! carrying the stream id and the secretstream header, then one libsodium
//! `crypto_secretstream_xchacha20poly1305` message per frame, each behind a u24 length.
//! Plus the keyed "unordered" messages that travel as UDX MESSAGE packets.

use std::sync::OnceLock;

use chacha20::cipher::{KeyIvInit, StreamCipher, StreamCipherSeek};
use chacha20::ChaCha20;
use crypto_secretbox::aead::Aead;
use crypto_secretbox::XSalsa20Poly1305;
use poly1305::universal_hash::{KeyInit, UniversalHash};
use poly1305::Poly1305;

use super::hash::{blake2b_256, blake2b_256_keyed};
use super::noise::HandshakeOutcome;

/// Bytes of the secretstream header.
pub const HEADER_LEN: usize = 24;
/// Bytes a message grows by: the encrypted tag byte and the MAC.
pub const ABYTES: usize = 17;
/// Largest frame body a u24 length allows.
pub const MAX_FRAME: usize = (1 << 24) - 1;
/// Largest plaintext per message.
pub const MAX_MESSAGE: usize = MAX_FRAME - ABYTES;
/// The tag of ordinary messages (the only one hyperswarm sends).
pub const TAG_MESSAGE: u8 = 0;
/// The tag that asks both sides to derive a new key.
pub const TAG_REKEY: u8 = 2;

/// Why a SecretStream failed; every one of these ends the stream.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretStreamError {
    /// The first frame was not a 56-byte header with the peer's stream id.
    #[error("bad secretstream header frame")]
    BadHeader,
    /// A frame did not authenticate.
    #[error("secretstream message failed to decrypt")]
    Decrypt,
    /// A frame is too short to hold a message.
    #[error("secretstream frame too short")]
    ShortFrame,
    /// A message is larger than a frame can carry.
    #[error("message of {0} bytes exceeds the frame limit")]
    TooLarge(usize),
}

/// The three secret-stream namespaces: initiator, responder, send.
pub fn namespaces() -> &'static [[u8; 32]; 3] {
    static NS: OnceLock<[[u8; 32]; 3]> = OnceLock::new();
    NS.get_or_init(|| {
        let name = blake2b_256(&[b"hyperswarm/secret-stream"]);
        [0u8, 1, 2].map(|i| blake2b_256(&[&name, &[i]]))
    })
}

/// The id a side announces in its header frame.
pub fn stream_id(handshake_hash: &[u8; 64], initiator: bool) -> [u8; 32] {
    let ns = &namespaces()[if initiator { 0 } else { 1 }];
    blake2b_256_keyed(handshake_hash, ns)
}

/// Key of the unordered messages a side sends.
pub fn unordered_key(handshake_hash: &[u8; 64], initiator: bool) -> [u8; 32] {
    let ns = namespaces();
    let role = &ns[if initiator { 0 } else { 1 }];
    let mut input = [0u8; 64];
    input[..32].copy_from_slice(role);
    input[32..].copy_from_slice(&ns[2]);
    blake2b_256_keyed(handshake_hash, &input)
}

/// libsodium's secretstream state: key, 32-bit counter and 8-byte nonce half.
#[derive(Clone)]
struct State {
    key: [u8; 32],
    nonce: [u8; 12],
}

impl State {
    fn new(key: &[u8; 32], header: &[u8; HEADER_LEN]) -> Self {
        let mut input = [0u8; 16];
        input.copy_from_slice(&header[..16]);
        let subkey =
            chacha20::hchacha::<chacha20::cipher::consts::U10>(&(*key).into(), &input.into());
        let mut nonce = [0u8; 12];
        nonce[..4].copy_from_slice(&1u32.to_le_bytes());
        nonce[4..].copy_from_slice(&header[16..]);
        State {
            key: subkey.into(),
            nonce,
        }
    }

    fn cipher(&self, block: u32) -> ChaCha20 {
        let mut c = ChaCha20::new(&self.key.into(), &self.nonce.into());
        c.seek(u64::from(block) * 64);
        c
    }

    /// The MAC over the tag block and ciphertext, with libsodium's padding (which counts
    /// `16 - 64 + mlen`, not `16 - (64 + mlen)`, modulo 16).
    fn mac(&self, block: &[u8; 64], ciphertext: &[u8]) -> [u8; 16] {
        let mut poly_key = [0u8; 32];
        self.cipher(0).apply_keystream(&mut poly_key);
        let mlen = ciphertext.len();
        let pad = (16usize.wrapping_sub(64).wrapping_add(mlen)) & 15;
        // The 64-byte block and the ciphertext's whole 16-byte blocks go in place (no copy of
        // the message); only the tail, padding and lengths are assembled.
        let mut poly = Poly1305::new(&poly_key.into());
        poly.update(as_blocks(block));
        let whole = mlen / 16 * 16;
        poly.update(as_blocks(&ciphertext[..whole]));
        let mut tail = [0u8; 15 + 15 + 16];
        let rest = mlen - whole;
        tail[..rest].copy_from_slice(&ciphertext[whole..]);
        let mut at = rest + pad;
        tail[at..at + 8].copy_from_slice(&0u64.to_le_bytes());
        at += 8;
        tail[at..at + 8].copy_from_slice(&((64 + mlen) as u64).to_le_bytes());
        at += 8;
        poly.compute_unpadded(&tail[..at]).into()
    }

    fn advance(&mut self, mac: &[u8; 16], tag: u8) {
        for (n, m) in self.nonce[4..].iter_mut().zip(mac) {
            *n ^= m;
        }
        let counter = u32::from_le_bytes(self.nonce[..4].try_into().expect("4 bytes"));
        let counter = counter.wrapping_add(1);
        self.nonce[..4].copy_from_slice(&counter.to_le_bytes());
        if tag & TAG_REKEY != 0 || counter == 0 {
            self.rekey();
        }
    }

    fn rekey(&mut self) {
        let mut buf = [0u8; 40];
        buf[..32].copy_from_slice(&self.key);
        buf[32..].copy_from_slice(&self.nonce[4..]);
        self.cipher(0).apply_keystream(&mut buf);
        self.key.copy_from_slice(&buf[..32]);
        self.nonce[4..].copy_from_slice(&buf[32..]);
        self.nonce[..4].copy_from_slice(&1u32.to_le_bytes());
    }

    fn tag_block(&self, first: u8) -> [u8; 64] {
        let mut block = [0u8; 64];
        block[0] = first;
        self.cipher(1).apply_keystream(&mut block);
        block
    }
}

/// The sending half of a secretstream.
#[derive(Clone)]
pub struct Push {
    state: State,
}

impl Push {
    /// Starts a stream under `key` with the (random) `header` the peer must receive.
    pub fn new(key: &[u8; 32], header: &[u8; HEADER_LEN]) -> Self {
        Push {
            state: State::new(key, header),
        }
    }

    /// Encrypts one message: `tag byte || ciphertext || MAC`.
    pub fn push(&mut self, plaintext: &[u8], tag: u8) -> Vec<u8> {
        let mut out = Vec::with_capacity(plaintext.len() + ABYTES);
        self.push_into(plaintext, tag, &mut out);
        out
    }

    /// [`Push::push`], appending to `out`.
    pub fn push_into(&mut self, plaintext: &[u8], tag: u8, out: &mut Vec<u8>) {
        let block = self.state.tag_block(tag);
        let start = out.len();
        out.push(block[0]);
        out.extend_from_slice(plaintext);
        self.state.cipher(2).apply_keystream(&mut out[start + 1..]);
        let mac = self.state.mac(&block, &out[start + 1..]);
        out.extend_from_slice(&mac);
        self.state.advance(&mac, tag);
    }
}

/// The receiving half of a secretstream.
#[derive(Clone)]
pub struct Pull {
    state: State,
}

impl Pull {
    /// Starts reading a stream under `key` from the peer's `header`.
    pub fn new(key: &[u8; 32], header: &[u8; HEADER_LEN]) -> Self {
        Pull {
            state: State::new(key, header),
        }
    }

    /// Decrypts one message; returns the plaintext and its tag.
    pub fn pull(&mut self, message: &[u8]) -> Result<(Vec<u8>, u8), SecretStreamError> {
        if message.len() < ABYTES {
            return Err(SecretStreamError::ShortFrame);
        }
        let mlen = message.len() - ABYTES;
        let mut block = self.state.tag_block(message[0]);
        let tag = block[0];
        block[0] = message[0];
        let ciphertext = &message[1..1 + mlen];
        let mac = self.state.mac(&block, ciphertext);
        if !constant_time_eq(&mac, &message[1 + mlen..]) {
            return Err(SecretStreamError::Decrypt);
        }
        let mut plaintext = ciphertext.to_vec();
        self.state.cipher(2).apply_keystream(&mut plaintext);
        self.state.advance(&mac, tag);
        Ok((plaintext, tag))
    }
}

/// `bytes` (a multiple of 16 long) as Poly1305 blocks, without copying.
fn as_blocks(bytes: &[u8]) -> &[poly1305::Block] {
    debug_assert_eq!(bytes.len() % 16, 0);
    // SAFETY: a Block is a GenericArray<u8, U16>: 16 bytes, alignment 1, no padding, so any
    // 16-byte run of initialised bytes is a valid Block and the slice covers exactly
    // len / 16 of them within `bytes`.
    unsafe { std::slice::from_raw_parts(bytes.as_ptr().cast(), bytes.len() / 16) }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The framing of one side of an encrypted connection, fed raw stream bytes and handing
/// back messages. Sans-IO: the caller moves the bytes.
pub struct SecretStream {
    push: Push,
    pull: Option<Pull>,
    rx_key: [u8; 32],
    expected_remote_id: [u8; 32],
    inbox: Vec<u8>,
}

impl std::fmt::Debug for SecretStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretStream")
            .field("header_received", &self.pull.is_some())
            .field("buffered", &self.inbox.len())
            .finish()
    }
}

/// u24 little-endian length prefix.
fn frame(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + 3);
    out.extend_from_slice(&(body.len() as u32).to_le_bytes()[..3]);
    out.extend_from_slice(body);
    out
}

impl SecretStream {
    /// Starts the framing after a handshake, with the random secretstream `header`. Returns
    /// the stream and the header frame to send first.
    pub fn new(handshake: &HandshakeOutcome, header: [u8; HEADER_LEN]) -> (Self, Vec<u8>) {
        let mut first = Vec::with_capacity(56);
        first.extend_from_slice(&stream_id(&handshake.hash, handshake.is_initiator));
        first.extend_from_slice(&header);
        let s = SecretStream {
            push: Push::new(&handshake.tx, &header),
            pull: None,
            rx_key: handshake.rx,
            expected_remote_id: stream_id(&handshake.hash, !handshake.is_initiator),
            inbox: Vec::new(),
        };
        (s, frame(&first))
    }

    /// Whether the peer's header frame has arrived (and named the right stream).
    pub fn header_received(&self) -> bool {
        self.pull.is_some()
    }

    /// Encrypts one message into a frame.
    pub fn encrypt(&mut self, plaintext: &[u8]) -> Result<Vec<u8>, SecretStreamError> {
        let mut out = Vec::new();
        self.encrypt_into(plaintext, &mut out)?;
        Ok(out)
    }

    /// [`SecretStream::encrypt`] into `out` (cleared first), so a writer can reuse one buffer.
    pub fn encrypt_into(
        &mut self,
        plaintext: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), SecretStreamError> {
        if plaintext.len() > MAX_MESSAGE {
            return Err(SecretStreamError::TooLarge(plaintext.len()));
        }
        let len = plaintext.len() + ABYTES;
        out.clear();
        out.reserve(3 + len);
        out.extend_from_slice(&(len as u32).to_le_bytes()[..3]);
        self.push.push_into(plaintext, TAG_MESSAGE, out);
        Ok(())
    }

    /// How many more bytes complete the frame whose start is buffered, if one is (and its
    /// length is known): a reader that takes exactly that much starts its next read on a
    /// frame boundary, and whole frames are decrypted from its buffer without a copy.
    pub fn pending_frame_rest(&self) -> Option<usize> {
        if self.inbox.len() < 3 {
            return None;
        }
        let len = u32::from_le_bytes([self.inbox[0], self.inbox[1], self.inbox[2], 0]) as usize;
        (3 + len).checked_sub(self.inbox.len()).filter(|n| *n > 0)
    }

    /// Feeds bytes from the peer; returns the messages they completed (empty messages are
    /// keepalives and are included; callers with keepalive on skip them).
    pub fn decrypt(&mut self, bytes: &[u8]) -> Result<Vec<Vec<u8>>, SecretStreamError> {
        let mut out = Vec::new();
        if self.inbox.is_empty() {
            // The common case: whole frames straight from the caller's buffer, and only an
            // incomplete last frame kept for later.
            let used = self.frames(bytes, &mut out)?;
            self.inbox.extend_from_slice(&bytes[used..]);
            return Ok(out);
        }
        self.inbox.extend_from_slice(bytes);
        let inbox = std::mem::take(&mut self.inbox);
        let used = self.frames(&inbox, &mut out);
        self.inbox = inbox;
        self.inbox.drain(..used?);
        Ok(out)
    }

    /// Decrypts the whole frames at the start of `buf` into `out`; returns the bytes used.
    fn frames(&mut self, buf: &[u8], out: &mut Vec<Vec<u8>>) -> Result<usize, SecretStreamError> {
        let mut at = 0;
        while buf.len() - at >= 3 {
            let len = u32::from_le_bytes([buf[at], buf[at + 1], buf[at + 2], 0]) as usize;
            if buf.len() - at - 3 < len {
                break;
            }
            let body = &buf[at + 3..at + 3 + len];
            at += 3 + len;
            match &mut self.pull {
                None => {
                    if len != 56 || body[..32] != self.expected_remote_id {
                        return Err(SecretStreamError::BadHeader);
                    }
                    let header: [u8; HEADER_LEN] = body[32..].try_into().expect("24 bytes");
                    self.pull = Some(Pull::new(&self.rx_key, &header));
                }
                Some(pull) => out.push(pull.pull(body)?.0),
            }
        }
        Ok(at)
    }
}

/// Unordered messages of one side: `counter(8) || secretbox(msg, nonce = counter || 0^16)`,
/// the counter incremented before each message.
#[derive(Clone)]
pub struct UnorderedBox {
    cipher: XSalsa20Poly1305,
    counter: [u8; 8],
    start: [u8; 8],
    exhausted: bool,
}

impl UnorderedBox {
    /// A sender or receiver under `key`, its counter starting at `start`.
    pub fn new(key: &[u8; 32], start: [u8; 8]) -> Self {
        UnorderedBox {
            cipher: XSalsa20Poly1305::new(key.into()),
            counter: start,
            start,
            exhausted: false,
        }
    }

    /// Seals one message; `None` once the counter has come all the way round.
    pub fn seal(&mut self, plaintext: &[u8]) -> Option<Vec<u8>> {
        if self.exhausted {
            return None;
        }
        // sodium_increment: little-endian.
        for b in self.counter.iter_mut() {
            *b = b.wrapping_add(1);
            if *b != 0 {
                break;
            }
        }
        if self.counter == self.start {
            self.exhausted = true;
            return None;
        }
        let mut nonce = [0u8; 24];
        nonce[..8].copy_from_slice(&self.counter);
        let sealed = self.cipher.encrypt(&nonce.into(), plaintext).ok()?;
        let mut out = Vec::with_capacity(8 + sealed.len());
        out.extend_from_slice(&self.counter);
        out.extend_from_slice(&sealed);
        Some(out)
    }

    /// Opens a message sealed under this key; `None` if it does not authenticate.
    pub fn open(&self, envelope: &[u8]) -> Option<Vec<u8>> {
        if envelope.len() < 8 + 16 {
            return None;
        }
        let mut nonce = [0u8; 24];
        nonce[..8].copy_from_slice(&envelope[..8]);
        self.cipher.decrypt(&nonce.into(), &envelope[8..]).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair() -> (SecretStream, SecretStream, Vec<u8>, Vec<u8>) {
        let hash = [9u8; 64];
        let a = HandshakeOutcome {
            is_initiator: true,
            tx: [1; 32],
            rx: [2; 32],
            hash,
            remote_public_key: [0; 32],
        };
        let b = HandshakeOutcome {
            is_initiator: false,
            tx: [2; 32],
            rx: [1; 32],
            hash,
            remote_public_key: [0; 32],
        };
        let (a, ha) = SecretStream::new(&a, [3; HEADER_LEN]);
        let (b, hb) = SecretStream::new(&b, [4; HEADER_LEN]);
        (a, b, ha, hb)
    }

    /// Every message length around the MAC's block and padding edges survives, however the
    /// bytes are cut on the way (whole frames, partial frames, byte by byte).
    #[test]
    fn round_trip_across_lengths_and_cuts() {
        let (mut a, mut b, ha, _) = pair();
        let mut wire = ha;
        let mut sent = Vec::new();
        for len in (0..80).chain([1000, 65_536, 100_003]) {
            let msg: Vec<u8> = (0..len).map(|i| (i * 7 + len) as u8).collect();
            wire.extend(a.encrypt(&msg).unwrap());
            sent.push(msg);
        }
        let mut got = Vec::new();
        let mut at = 0;
        for (i, cut) in [1usize, 2, 3, 17, 64, 1000, 70_000]
            .iter()
            .cycle()
            .enumerate()
        {
            if at >= wire.len() {
                break;
            }
            let end = (at + cut + i % 5).min(wire.len());
            got.extend(b.decrypt(&wire[at..end]).unwrap());
            at = end;
        }
        assert_eq!(got, sent);
    }

    /// A reader that takes what `pending_frame_rest` asks for lands on frame boundaries.
    #[test]
    fn pending_frame_rest_completes_the_buffered_frame() {
        let (mut a, mut b, ha, _) = pair();
        b.decrypt(&ha).unwrap();
        assert_eq!(b.pending_frame_rest(), None);
        let frame = a.encrypt(&[5u8; 1000]).unwrap();
        assert!(b.decrypt(&frame[..2]).unwrap().is_empty());
        assert_eq!(b.pending_frame_rest(), None, "length not known yet");
        assert!(b.decrypt(&frame[2..400]).unwrap().is_empty());
        assert_eq!(b.pending_frame_rest(), Some(frame.len() - 400));
        let done = b.decrypt(&frame[400..]).unwrap();
        assert_eq!(done, vec![vec![5u8; 1000]]);
        assert_eq!(b.pending_frame_rest(), None);
    }

    #[test]
    fn a_flipped_bit_fails_authentication() {
        let (mut a, mut b, ha, _) = pair();
        b.decrypt(&ha).unwrap();
        let mut f = a.encrypt(b"secret").unwrap();
        let last = f.len() - 1;
        f[last] ^= 1;
        assert_eq!(b.decrypt(&f), Err(SecretStreamError::Decrypt));
    }
}
