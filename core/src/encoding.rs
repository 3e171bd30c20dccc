//! compact-encoding primitives (the `compact-encoding` npm package), the byte format every
//! Hyperswarm layer above UDP uses.
//!
//! [`Writer`] appends to a `Vec<u8>`; [`Reader`] walks a borrowed slice and fails with a
//! [`DecodeError`] instead of panicking on truncated or malformed input.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

/// Largest element count an array decoder accepts, as compact-encoding does.
pub const MAX_ARRAY_LEN: u64 = 0x100000;

/// Why a byte string could not be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The input ended before the value did.
    #[error("input ended early")]
    Truncated,
    /// A length or count is larger than the format allows.
    #[error("length out of bounds")]
    OutOfBounds,
    /// A value is syntactically valid but not allowed here.
    #[error("invalid value")]
    Invalid,
}

/// `bit` if `on`, else 0: one bit of a compact-encoding flags field.
pub fn flag(on: bool, bit: u64) -> u64 {
    if on {
        bit
    } else {
        0
    }
}

/// Runs `read` only when a flag says the field is present.
pub fn read_if<T>(
    present: bool,
    read: impl FnOnce() -> Result<T, DecodeError>,
) -> Result<Option<T>, DecodeError> {
    if present {
        read().map(Some)
    } else {
        Ok(None)
    }
}

/// Why a value could not be encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// The wire format only carries IPv4 addresses here.
    #[error("an IPv6 address cannot be encoded as ipv4Address")]
    NotIpv4,
}

/// Appends compact-encoded values to a buffer.
#[derive(Debug, Default, Clone)]
pub struct Writer {
    buf: Vec<u8>,
}

impl Writer {
    /// An empty writer.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty writer with room for `n` bytes.
    pub fn with_capacity(n: usize) -> Self {
        Self {
            buf: Vec::with_capacity(n),
        }
    }

    /// The bytes written so far.
    pub fn into_bytes(self) -> Vec<u8> {
        self.buf
    }

    /// The bytes written so far.
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf
    }

    /// Variable-length unsigned integer.
    pub fn uint(&mut self, n: u64) -> &mut Self {
        if n <= 0xfc {
            self.buf.push(n as u8);
        } else if n <= 0xffff {
            self.buf.push(0xfd);
            self.buf.extend_from_slice(&(n as u16).to_le_bytes());
        } else if n <= 0xffff_ffff {
            self.buf.push(0xfe);
            self.buf.extend_from_slice(&(n as u32).to_le_bytes());
        } else {
            self.buf.push(0xff);
            self.buf.extend_from_slice(&n.to_le_bytes());
        }
        self
    }

    /// Zig-zag signed integer.
    pub fn int(&mut self, n: i64) -> &mut Self {
        self.uint(((n << 1) ^ (n >> 63)) as u64)
    }

    /// One raw byte.
    pub fn u8(&mut self, n: u8) -> &mut Self {
        self.buf.push(n);
        self
    }

    /// Fixed-width little-endian u16.
    pub fn u16(&mut self, n: u16) -> &mut Self {
        self.buf.extend_from_slice(&n.to_le_bytes());
        self
    }

    /// Fixed-width little-endian u24 (the top byte of `n` must be zero).
    pub fn u24(&mut self, n: u32) -> &mut Self {
        self.buf.extend_from_slice(&n.to_le_bytes()[..3]);
        self
    }

    /// Fixed-width little-endian u32.
    pub fn u32(&mut self, n: u32) -> &mut Self {
        self.buf.extend_from_slice(&n.to_le_bytes());
        self
    }

    /// Fixed-width little-endian u64.
    pub fn u64(&mut self, n: u64) -> &mut Self {
        self.buf.extend_from_slice(&n.to_le_bytes());
        self
    }

    /// Boolean as one byte.
    pub fn bool(&mut self, b: bool) -> &mut Self {
        self.u8(b as u8)
    }

    /// Length-prefixed bytes.
    pub fn buffer(&mut self, b: &[u8]) -> &mut Self {
        self.uint(b.len() as u64);
        self.buf.extend_from_slice(b);
        self
    }

    /// Length-prefixed bytes where `None` is written as an empty buffer.
    pub fn optional_buffer(&mut self, b: Option<&[u8]>) -> &mut Self {
        self.buffer(b.unwrap_or(&[]))
    }

    /// Length-prefixed UTF-8.
    pub fn string(&mut self, s: &str) -> &mut Self {
        self.buffer(s.as_bytes())
    }

    /// Bytes with no prefix (fixed32, fixed64 and `raw`).
    pub fn raw(&mut self, b: &[u8]) -> &mut Self {
        self.buf.extend_from_slice(b);
        self
    }

    /// 4 octets in dotted order + u16le port.
    pub fn ipv4_address(&mut self, addr: &SocketAddr) -> Result<&mut Self, EncodeError> {
        let v4 = ipv4_of(addr).ok_or(EncodeError::NotIpv4)?;
        self.buf.extend_from_slice(&v4.octets());
        Ok(self.u16(addr.port()))
    }

    /// 16 octets in network order + u16le port.
    pub fn ipv6_address(&mut self, addr: &SocketAddr) -> &mut Self {
        let ip = match addr {
            SocketAddr::V4(a) => a.ip().to_ipv6_mapped(),
            SocketAddr::V6(a) => *a.ip(),
        };
        self.buf.extend_from_slice(&ip.octets());
        self.u16(addr.port())
    }

    /// compact-encoding-net `ipAddress`: family byte (4 or 6), address, u16le port.
    pub fn ip_address(&mut self, addr: &SocketAddr) -> &mut Self {
        match ipv4_of(addr) {
            Some(v4) => {
                self.u8(4).raw(&v4.octets());
                self.u16(addr.port())
            }
            None => {
                self.u8(6);
                self.ipv6_address(addr)
            }
        }
    }

    /// uint count + IPv4 addresses. Entries that are not IPv4 are skipped.
    pub fn ipv4_array(&mut self, addrs: &[SocketAddr]) -> &mut Self {
        let n = addrs.iter().filter(|a| ipv4_of(a).is_some()).count();
        self.uint(n as u64);
        for a in addrs {
            let _ = self.ipv4_address(a);
        }
        self
    }
}

/// The IPv4 form of an address, seeing through IPv4-mapped IPv6.
pub fn ipv4_of(addr: &SocketAddr) -> Option<Ipv4Addr> {
    match addr {
        SocketAddr::V4(a) => Some(*a.ip()),
        SocketAddr::V6(a) => a.ip().to_ipv4_mapped(),
    }
}

/// Reads compact-encoded values from a slice.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    /// A reader at the start of `buf`.
    pub fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    /// Bytes not yet read.
    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// Takes exactly `n` bytes.
    pub fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if self.remaining() < n {
            return Err(DecodeError::Truncated);
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    /// One raw byte.
    pub fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }

    /// Fixed-width little-endian u16.
    pub fn u16(&mut self) -> Result<u16, DecodeError> {
        Ok(u16::from_le_bytes(self.array()?))
    }

    /// Fixed-width little-endian u24.
    pub fn u24(&mut self) -> Result<u32, DecodeError> {
        let [a, b, c] = self.array()?;
        Ok(u32::from_le_bytes([a, b, c, 0]))
    }

    /// Fixed-width little-endian u32.
    pub fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    /// Fixed-width little-endian u64.
    pub fn u64(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    /// Exactly `N` bytes as an array (fixed32, fixed64).
    pub fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    /// Variable-length unsigned integer; non-minimal forms are accepted, as in JS.
    pub fn uint(&mut self) -> Result<u64, DecodeError> {
        match self.u8()? {
            0xfd => Ok(self.u16()? as u64),
            0xfe => Ok(self.u32()? as u64),
            0xff => self.u64(),
            n => Ok(n as u64),
        }
    }

    /// Zig-zag signed integer.
    pub fn int(&mut self) -> Result<i64, DecodeError> {
        let n = self.uint()?;
        Ok(((n >> 1) as i64) ^ -((n & 1) as i64))
    }

    /// Boolean: true only for 0x01.
    pub fn bool(&mut self) -> Result<bool, DecodeError> {
        Ok(self.u8()? == 1)
    }

    /// Length-prefixed bytes.
    pub fn buffer(&mut self) -> Result<&'a [u8], DecodeError> {
        let n = self.uint()?;
        if n > self.remaining() as u64 {
            return Err(DecodeError::Truncated);
        }
        self.take(n as usize)
    }

    /// Length-prefixed bytes where empty means `None`.
    pub fn optional_buffer(&mut self) -> Result<Option<&'a [u8]>, DecodeError> {
        let b = self.buffer()?;
        Ok(if b.is_empty() { None } else { Some(b) })
    }

    /// Length-prefixed UTF-8.
    pub fn string(&mut self) -> Result<&'a str, DecodeError> {
        std::str::from_utf8(self.buffer()?).map_err(|_| DecodeError::Invalid)
    }

    /// Everything that is left.
    pub fn rest(&mut self) -> &'a [u8] {
        let s = &self.buf[self.pos..];
        self.pos = self.buf.len();
        s
    }

    /// 4 octets + u16le port.
    pub fn ipv4_address(&mut self) -> Result<SocketAddr, DecodeError> {
        let ip: [u8; 4] = self.array()?;
        let port = self.u16()?;
        Ok(SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::from(ip), port)))
    }

    /// 16 octets + u16le port.
    pub fn ipv6_address(&mut self) -> Result<SocketAddr, DecodeError> {
        let ip: [u8; 16] = self.array()?;
        let port = self.u16()?;
        Ok(SocketAddr::V6(SocketAddrV6::new(
            Ipv6Addr::from(ip),
            port,
            0,
            0,
        )))
    }

    /// compact-encoding-net `ipAddress`.
    pub fn ip_address(&mut self) -> Result<SocketAddr, DecodeError> {
        match self.u8()? {
            4 => self.ipv4_address(),
            6 => self.ipv6_address(),
            _ => Err(DecodeError::Invalid),
        }
    }

    /// Array count, bounded by [`MAX_ARRAY_LEN`] and by the bytes left (each element takes at
    /// least `min_elem` bytes), so a forged count cannot make the caller allocate.
    pub fn array_len(&mut self, min_elem: usize) -> Result<usize, DecodeError> {
        let n = self.uint()?;
        if n > MAX_ARRAY_LEN {
            return Err(DecodeError::OutOfBounds);
        }
        if n.saturating_mul(min_elem.max(1) as u64) > self.remaining() as u64 {
            return Err(DecodeError::Truncated);
        }
        Ok(n as usize)
    }

    /// uint count + IPv4 addresses.
    pub fn ipv4_array(&mut self) -> Result<Vec<SocketAddr>, DecodeError> {
        let n = self.array_len(6)?;
        (0..n).map(|_| self.ipv4_address()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncated_input_is_an_error_not_a_panic() {
        for bytes in [&[0xfdu8][..], &[0xfe, 1, 2], &[0xff, 0, 0, 0], &[5, 9, 2]] {
            let mut r = Reader::new(bytes);
            let res = r.uint().and_then(|_| r.buffer().map(|_| 0));
            assert!(res.is_err(), "{bytes:?}");
        }
    }

    #[test]
    fn forged_array_count_is_rejected_before_allocating() {
        let mut w = Writer::new();
        w.uint(MAX_ARRAY_LEN - 1);
        assert_eq!(
            Reader::new(w.as_bytes()).ipv4_array(),
            Err(DecodeError::Truncated)
        );
        let mut w = Writer::new();
        w.uint(MAX_ARRAY_LEN + 1);
        assert_eq!(
            Reader::new(w.as_bytes()).ipv4_array(),
            Err(DecodeError::OutOfBounds)
        );
    }

    #[test]
    fn int_round_trips_extremes() {
        for n in [0i64, 1, -1, i64::MAX, i64::MIN, 1 << 53, -(1 << 53)] {
            let mut w = Writer::new();
            w.int(n);
            assert_eq!(Reader::new(w.as_bytes()).int(), Ok(n));
        }
    }
}
