//! The UDX packet: a fixed 20-byte header, optional SACK blocks, then payload.
//!
//! Decoding borrows from the datagram so that the receive path allocates nothing until it
//! decides to keep a payload. Every length is checked before it is used: a short or foreign
//! datagram is an error, never a panic.

use thiserror::Error;

/// First byte of every UDX packet.
pub const MAGIC: u8 = 0xFF;
/// Second byte of every UDX packet.
pub const VERSION: u8 = 1;
/// Size of the fixed header.
pub const HEADER_LEN: usize = 20;
/// Size of one SACK block on the wire (two u32le).
pub const SACK_BLOCK_LEN: usize = 8;
/// libudx never sends more SACK blocks than this in one packet.
pub const MAX_SACKS: usize = 50;

/// Type flag: the packet carries stream payload and uses one sequence number.
pub const DATA: u8 = 0x01;
/// Type flag: end of the sender's write side; uses one sequence number.
pub const END: u8 = 0x02;
/// Type flag: the bytes after the header hold SACK blocks.
pub const SACK: u8 = 0x04;
/// Type flag: an unreliable datagram; uses no sequence number.
pub const MESSAGE: u8 = 0x08;
/// Type flag: abort the stream.
pub const DESTROY: u8 = 0x10;
/// Type flag: keepalive / probe; the receiver answers with an ACK and does nothing else.
pub const HEARTBEAT: u8 = 0x20;

/// Why bytes are not a UDX packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum PacketError {
    /// Fewer than 20 bytes.
    #[error("packet shorter than the 20-byte header")]
    Short,
    /// First byte is not 0xFF.
    #[error("bad magic byte {0:#04x}")]
    BadMagic(u8),
    /// Second byte is not 1.
    #[error("unsupported version {0}")]
    BadVersion(u8),
    /// `data_offset` points past the end of the datagram.
    #[error("data offset {offset} beyond the {available} bytes after the header")]
    BadDataOffset {
        /// The header's data offset.
        offset: u8,
        /// Bytes present after the header.
        available: usize,
    },
}

/// True when a datagram belongs to UDX (as opposed to dht-rpc or a holepunch probe). The socket
/// layer then routes it by [`stream_id`].
pub fn is_udx(bytes: &[u8]) -> bool {
    bytes.len() >= HEADER_LEN && bytes[0] == MAGIC && bytes[1] == VERSION
}

/// The receiving stream's id (bytes 4..8), for demultiplexing many streams on one socket.
/// `None` when the datagram is too short to be UDX.
pub fn stream_id(bytes: &[u8]) -> Option<u32> {
    if bytes.len() < HEADER_LEN {
        return None;
    }
    Some(read_u32(bytes, 4))
}

/// The fixed 20-byte header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Header {
    /// Type flags (`DATA`, `END`, ...); zero is a pure ACK.
    pub flags: u8,
    /// Bytes between the header and the payload (padding or the SACK area).
    pub data_offset: u8,
    /// The receiver's stream id (what the sender knows as its remote id).
    pub stream_id: u32,
    /// Free receive buffer space of the sender, in bytes.
    pub recv_window: u32,
    /// Sender's sequence number (packets, not bytes).
    pub seq: u32,
    /// Next sequence number the sender expects from the receiver.
    pub ack: u32,
}

impl Header {
    /// Writes the 20 header bytes.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        out.push(MAGIC);
        out.push(VERSION);
        out.push(self.flags);
        out.push(self.data_offset);
        out.extend_from_slice(&self.stream_id.to_le_bytes());
        out.extend_from_slice(&self.recv_window.to_le_bytes());
        out.extend_from_slice(&self.seq.to_le_bytes());
        out.extend_from_slice(&self.ack.to_le_bytes());
    }

    /// Reads the header from the start of `bytes`.
    pub fn decode(bytes: &[u8]) -> Result<Header, PacketError> {
        if bytes.len() < HEADER_LEN {
            return Err(PacketError::Short);
        }
        if bytes[0] != MAGIC {
            return Err(PacketError::BadMagic(bytes[0]));
        }
        if bytes[1] != VERSION {
            return Err(PacketError::BadVersion(bytes[1]));
        }
        Ok(Header {
            flags: bytes[2],
            data_offset: bytes[3],
            stream_id: read_u32(bytes, 4),
            recv_window: read_u32(bytes, 8),
            seq: read_u32(bytes, 12),
            ack: read_u32(bytes, 16),
        })
    }

    /// True when any of `flags` is set.
    pub fn has(&self, flags: u8) -> bool {
        self.flags & flags != 0
    }
}

/// A selective acknowledgement: packets `start <= seq < end` were received.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SackBlock {
    /// First received sequence number.
    pub start: u32,
    /// One past the last received sequence number.
    pub end: u32,
}

/// A decoded packet borrowing the datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Packet<'a> {
    /// The fixed header.
    pub header: Header,
    /// The SACK area (empty unless the SACK flag is set); whole 8-byte blocks only.
    sack_area: &'a [u8],
    /// Stream or message payload: the bytes after `data_offset`. Empty for a SACK packet
    /// whose offset is zero, because then every byte after the header is SACK area.
    pub payload: &'a [u8],
}

impl<'a> Packet<'a> {
    /// Splits a datagram into header, SACK blocks and payload, with libudx's rules: the SACK
    /// area is `data_offset` bytes when `0 < data_offset < rest`, otherwise all of the rest.
    pub fn decode(bytes: &'a [u8]) -> Result<Packet<'a>, PacketError> {
        let header = Header::decode(bytes)?;
        let rest = &bytes[HEADER_LEN..];
        let offset = header.data_offset as usize;
        if offset > rest.len() {
            return Err(PacketError::BadDataOffset {
                offset: header.data_offset,
                available: rest.len(),
            });
        }
        let mut sack_area: &[u8] = &[];
        let mut payload = &rest[offset..];
        if header.has(SACK) {
            let area = if offset > 0 && offset < rest.len() {
                &rest[..offset]
            } else {
                rest
            };
            let whole = area.len() / SACK_BLOCK_LEN * SACK_BLOCK_LEN;
            sack_area = &area[..whole];
            if offset == 0 {
                payload = &[];
            }
        }
        Ok(Packet {
            header,
            sack_area,
            payload,
        })
    }

    /// The SACK blocks, in wire order (unvalidated: the stream checks them against its state).
    pub fn sacks(&self) -> impl Iterator<Item = SackBlock> + 'a {
        self.sack_area
            .chunks_exact(SACK_BLOCK_LEN)
            .map(|c| SackBlock {
                start: read_u32(c, 0),
                end: read_u32(c, 4),
            })
    }

    /// Number of SACK blocks.
    pub fn sack_count(&self) -> usize {
        self.sack_area.len() / SACK_BLOCK_LEN
    }
}

/// Encodes a packet. With SACK blocks and a payload, `data_offset` is set to the SACK area's
/// size so that the receiver finds the payload; otherwise the header's own offset is kept
/// and that many zero bytes of padding are written before the payload.
pub fn encode(header: &Header, sacks: &[SackBlock], payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + sacks.len() * SACK_BLOCK_LEN + payload.len());
    encode_into(header, sacks, payload, &mut out);
    out
}

/// [`encode`], appending to `out`: a driver batching datagrams into one buffer (for GSO or
/// `sendmmsg`) builds them in place instead of allocating one vector per packet.
pub fn encode_into(header: &Header, sacks: &[SackBlock], payload: &[u8], out: &mut Vec<u8>) {
    let sack_len = sacks.len() * SACK_BLOCK_LEN;
    let mut h = *header;
    if !sacks.is_empty() {
        h.flags |= SACK;
        h.data_offset = if payload.is_empty() {
            0
        } else {
            // More than 31 blocks with data cannot be expressed in one byte; callers that
            // combine data with SACKs keep to fewer blocks.
            sack_len.min(u8::MAX as usize) as u8
        };
    }
    let padding = if sacks.is_empty() {
        h.data_offset as usize
    } else {
        0
    };
    out.reserve(HEADER_LEN + sack_len + padding + payload.len());
    h.encode_into(out);
    for s in sacks {
        out.extend_from_slice(&s.start.to_le_bytes());
        out.extend_from_slice(&s.end.to_le_bytes());
    }
    out.resize(out.len() + padding, 0);
    out.extend_from_slice(payload);
}

fn read_u32(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_with_padding_and_sacks() {
        let h = Header {
            flags: DATA,
            data_offset: 3,
            stream_id: 7,
            recv_window: 9,
            seq: u32::MAX,
            ack: 5,
        };
        let bytes = encode(&h, &[], b"abc");
        assert_eq!(bytes.len(), 26);
        let p = Packet::decode(&bytes).unwrap();
        assert_eq!(p.header, h);
        assert_eq!(p.payload, b"abc");

        let sacks = [
            SackBlock { start: 1, end: 4 },
            SackBlock { start: 6, end: 7 },
        ];
        let h = Header {
            flags: DATA,
            ..Header::default()
        };
        let bytes = encode(&h, &sacks, b"xy");
        let p = Packet::decode(&bytes).unwrap();
        assert_eq!(p.sacks().collect::<Vec<_>>(), sacks);
        assert_eq!(p.payload, b"xy");
    }

    #[test]
    fn rejects_foreign_bytes() {
        assert_eq!(Packet::decode(&[0xff, 1]), Err(PacketError::Short));
        let mut b = encode(&Header::default(), &[], &[]);
        assert!(is_udx(&b));
        b[1] = 2;
        assert_eq!(Packet::decode(&b), Err(PacketError::BadVersion(2)));
        assert!(!is_udx(&b));
        b[0] = 3;
        assert_eq!(Packet::decode(&b), Err(PacketError::BadMagic(3)));
        let mut b = encode(&Header::default(), &[], &[]);
        b[3] = 1;
        assert!(matches!(
            Packet::decode(&b),
            Err(PacketError::BadDataOffset { .. })
        ));
    }
}
