//! Protomux (PROTOCOL.md §8): many channels over one message-framed stream (here: one
//! SecretStream message per frame). This module is the frame codec and the channel
//! bookkeeping, sans-IO: feed it frames, send what it returns.
//!
//! Channels are identified by (protocol, id). Each side numbers its own channels from 1 and
//! sends messages under its own number; the receiver maps the sender's number to its
//! channel, which is why an OPEN carries the sender's local id.

use std::collections::HashMap;

use crate::encoding::{DecodeError, Reader, Writer};

const CONTROL: u64 = 0;
const BATCH: u64 = 0;
const OPEN: u64 = 1;
const REJECT: u64 = 2;
const CLOSE: u64 = 3;
/// Channel ids a peer may use; beyond this its frames are a protocol error (bounds memory).
const MAX_CHANNELS: u64 = 1024;

/// One decoded frame (a batch decodes into several).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// The peer opened a channel under its id `remote_id`.
    Open {
        /// The sender's local id for the channel.
        remote_id: u64,
        /// Protocol name.
        protocol: String,
        /// Channel id within the protocol.
        id: Option<Vec<u8>>,
        /// Handshake bytes, if the protocol has one.
        handshake: Vec<u8>,
    },
    /// The peer refused our OPEN for our channel `local_id`.
    Reject {
        /// Our id of the refused channel.
        local_id: u64,
    },
    /// The peer closed its channel `remote_id`.
    Close {
        /// The sender's id of the channel.
        remote_id: u64,
    },
    /// A message on the peer's channel `remote_id`.
    Message {
        /// The sender's id of the channel.
        remote_id: u64,
        /// Message type: its index on the channel.
        kind: u64,
        /// The encoded message.
        payload: Vec<u8>,
    },
}

/// An OPEN frame for our channel `local_id`.
pub fn open(local_id: u64, protocol: &str, id: Option<&[u8]>, handshake: &[u8]) -> Vec<u8> {
    let mut w = Writer::new();
    w.uint(CONTROL)
        .uint(OPEN)
        .uint(local_id)
        .string(protocol)
        .optional_buffer(id)
        .raw(handshake);
    w.into_bytes()
}

/// A CLOSE frame for our channel `local_id`.
pub fn close(local_id: u64) -> Vec<u8> {
    let mut w = Writer::new();
    w.uint(CONTROL).uint(CLOSE).uint(local_id);
    w.into_bytes()
}

/// A REJECT of the peer's channel `remote_id`.
pub fn reject(remote_id: u64) -> Vec<u8> {
    let mut w = Writer::new();
    w.uint(CONTROL).uint(REJECT).uint(remote_id);
    w.into_bytes()
}

/// A message of type `kind` on our channel `local_id`.
pub fn message(local_id: u64, kind: u64, payload: &[u8]) -> Vec<u8> {
    let mut w = Writer::with_capacity(payload.len() + 4);
    w.uint(local_id).uint(kind).raw(payload);
    w.into_bytes()
}

/// Decodes one frame. Empty frames decode to nothing.
pub fn decode(frame: &[u8]) -> Result<Vec<Frame>, DecodeError> {
    let mut out = Vec::new();
    if frame.is_empty() {
        return Ok(out);
    }
    let mut r = Reader::new(frame);
    let channel = r.uint()?;
    if channel == CONTROL {
        let kind = r.uint()?;
        if kind == BATCH {
            decode_batch(&mut r, &mut out)?;
        } else {
            out.push(control(kind, &mut r)?);
        }
    } else {
        out.push(Frame::Message {
            remote_id: channel,
            kind: r.uint()?,
            payload: r.rest().to_vec(),
        });
    }
    Ok(out)
}

fn control(kind: u64, r: &mut Reader<'_>) -> Result<Frame, DecodeError> {
    Ok(match kind {
        OPEN => Frame::Open {
            remote_id: r.uint()?,
            protocol: r.string()?.to_string(),
            id: r.optional_buffer()?.map(<[u8]>::to_vec),
            handshake: r.rest().to_vec(),
        },
        REJECT => Frame::Reject {
            local_id: r.uint()?,
        },
        CLOSE => Frame::Close {
            remote_id: r.uint()?,
        },
        _ => return Err(DecodeError::Invalid),
    })
}

/// `uint channel, { uint len, (uint type, message) }*`, a zero length switching channel.
fn decode_batch(r: &mut Reader<'_>, out: &mut Vec<Frame>) -> Result<(), DecodeError> {
    let mut channel = r.uint()?;
    while r.remaining() > 0 {
        let len = r.uint()?;
        if len == 0 {
            channel = r.uint()?;
            continue;
        }
        let len = usize::try_from(len).map_err(|_| DecodeError::Invalid)?;
        let mut m = Reader::new(r.take(len)?);
        let kind = m.uint()?;
        if channel == CONTROL {
            out.push(control(kind, &mut m)?);
        } else {
            out.push(Frame::Message {
                remote_id: channel,
                kind,
                payload: m.rest().to_vec(),
            });
        }
    }
    Ok(())
}

/// What a [`Mux`] learned from a frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MuxEvent {
    /// A channel of ours is open on both sides.
    Opened {
        /// Our id.
        local_id: u64,
        /// The peer's handshake bytes.
        handshake: Vec<u8>,
    },
    /// The peer opened a channel nobody here asked for; answer with [`reject`] or claim it
    /// with [`Mux::open`].
    Unclaimed {
        /// Protocol name.
        protocol: String,
        /// Channel id.
        id: Option<Vec<u8>>,
    },
    /// A message on our channel `local_id`.
    Message {
        /// Our id.
        local_id: u64,
        /// Message type.
        kind: u64,
        /// The encoded message.
        payload: Vec<u8>,
    },
    /// Our channel closed (the peer closed or rejected it).
    Closed {
        /// Our id.
        local_id: u64,
    },
}

type Key = (String, Option<Vec<u8>>);

/// Channel bookkeeping for one stream.
#[derive(Debug, Default)]
pub struct Mux {
    next_local: u64,
    /// Our channels by key, with the peer's id once it opened too.
    local: HashMap<Key, (u64, Option<u64>)>,
    /// The peer's channel ids to ours.
    remote: HashMap<u64, u64>,
    /// The peer's OPENs nobody claimed yet: key -> (remote id, handshake).
    waiting: HashMap<Key, (u64, Vec<u8>)>,
}

/// A frame broke the protocol; the stream should be closed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("protomux protocol error")]
pub struct ProtocolError;

impl Mux {
    /// An empty mux.
    pub fn new() -> Self {
        Mux::default()
    }

    /// Opens our channel (protocol, id): returns our id and the OPEN frame to send, and an
    /// event if the peer had opened it already.
    pub fn open(
        &mut self,
        protocol: &str,
        id: Option<&[u8]>,
        handshake: &[u8],
    ) -> (u64, Vec<u8>, Option<MuxEvent>) {
        self.next_local += 1;
        let local_id = self.next_local;
        let key = (protocol.to_string(), id.map(<[u8]>::to_vec));
        let mut event = None;
        let mut remote_id = None;
        if let Some((rid, hs)) = self.waiting.remove(&key) {
            self.remote.insert(rid, local_id);
            remote_id = Some(rid);
            event = Some(MuxEvent::Opened {
                local_id,
                handshake: hs,
            });
        }
        self.local.insert(key, (local_id, remote_id));
        (local_id, open(local_id, protocol, id, handshake), event)
    }

    /// Takes one frame from the peer.
    pub fn receive(&mut self, frame: &[u8]) -> Result<Vec<MuxEvent>, ProtocolError> {
        let mut events = Vec::new();
        for f in decode(frame).map_err(|_| ProtocolError)? {
            match f {
                Frame::Open {
                    remote_id,
                    protocol,
                    id,
                    handshake,
                } => {
                    if remote_id == 0
                        || remote_id > MAX_CHANNELS
                        || self.remote.contains_key(&remote_id)
                    {
                        return Err(ProtocolError);
                    }
                    let key = (protocol, id);
                    match self.local.get_mut(&key) {
                        Some((local_id, r @ None)) => {
                            *r = Some(remote_id);
                            self.remote.insert(remote_id, *local_id);
                            events.push(MuxEvent::Opened {
                                local_id: *local_id,
                                handshake,
                            });
                        }
                        Some(_) => return Err(ProtocolError),
                        None => {
                            if self.waiting.len() >= MAX_CHANNELS as usize {
                                return Err(ProtocolError);
                            }
                            events.push(MuxEvent::Unclaimed {
                                protocol: key.0.clone(),
                                id: key.1.clone(),
                            });
                            self.waiting.insert(key, (remote_id, handshake));
                        }
                    }
                }
                Frame::Reject { local_id } => {
                    self.local.retain(|_, (l, _)| *l != local_id);
                    events.push(MuxEvent::Closed { local_id });
                }
                Frame::Close { remote_id } => {
                    if let Some(local_id) = self.remote.remove(&remote_id) {
                        self.local.retain(|_, (l, _)| *l != local_id);
                        events.push(MuxEvent::Closed { local_id });
                    }
                    self.waiting.retain(|_, (r, _)| *r != remote_id);
                }
                Frame::Message {
                    remote_id,
                    kind,
                    payload,
                } => {
                    // Messages for channels not open here are dropped (a peer that races
                    // its messages ahead of our OPEN loses them; blind-relay never does).
                    if let Some(&local_id) = self.remote.get(&remote_id) {
                        events.push(MuxEvent::Message {
                            local_id,
                            kind,
                            payload,
                        });
                    }
                }
            }
        }
        Ok(events)
    }
}

/// The `blind-relay` protocol's messages (PROTOCOL.md §9).
pub mod blind_relay {
    use crate::encoding::{DecodeError, Reader, Writer};

    /// The protocol name.
    pub const PROTOCOL: &str = "blind-relay";
    /// Message type of [`Pair`].
    pub const PAIR: u64 = 0;
    /// Message type of an unpair.
    pub const UNPAIR: u64 = 1;

    /// "Join me with the other holder of `token`; my stream is `id`."
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct Pair {
        /// Whether the sender is the pairing's initiator.
        pub is_initiator: bool,
        /// The pairing token both sides present.
        pub token: [u8; 32],
        /// A UDX stream id: the sender's for the relayed connection (to the relay), or the
        /// relay's stream for that side (in the relay's answer).
        pub id: u32,
        /// Always 0.
        pub seq: u64,
    }

    impl Pair {
        /// Encodes the message (without the protomux header).
        pub fn encode(&self) -> Vec<u8> {
            let mut w = Writer::with_capacity(40);
            w.u8(u8::from(self.is_initiator))
                .raw(&self.token)
                .uint(u64::from(self.id))
                .uint(self.seq);
            w.into_bytes()
        }

        /// Decodes the message.
        pub fn decode(buf: &[u8]) -> Result<Self, DecodeError> {
            let mut r = Reader::new(buf);
            let flags = r.u8()?;
            let token = r.array::<32>()?;
            let id = u32::try_from(r.uint()?).map_err(|_| DecodeError::Invalid)?;
            let seq = r.uint()?;
            Ok(Pair {
                is_initiator: flags & 1 != 0,
                token,
                id,
                seq,
            })
        }
    }

    /// An unpair message for `token`.
    pub fn unpair(token: &[u8; 32]) -> Vec<u8> {
        let mut w = Writer::with_capacity(33);
        w.u8(0).raw(token);
        w.into_bytes()
    }

    /// The token of an unpair message.
    pub fn decode_unpair(buf: &[u8]) -> Result<[u8; 32], DecodeError> {
        let mut r = Reader::new(buf);
        r.u8()?;
        r.array::<32>()
    }
}
