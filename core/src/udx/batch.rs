//! Batched UDP I/O for the socket driver: many datagrams per system call.
//!
//! On Linux, sends to one destination go out as a single `sendmsg` with `UDP_SEGMENT` (GSO:
//! the kernel cuts the buffer into datagrams), and receives use `recvmmsg` on a socket with
//! `UDP_GRO`, which may hand back several datagrams from one sender glued together with their
//! segment size. Each feature is switched off for the socket the first time the kernel
//! refuses it, falling back to `sendmmsg` and plain `recvmmsg`. Other platforms send and
//! receive one datagram per call through std.
//!
//! These are non-blocking calls on the raw socket; the tokio driver wraps them in
//! `try_io` so readiness is tracked as for its own calls.

use std::io;
use std::net::SocketAddr;

/// Largest UDP payload over IPv4; a GSO buffer and a GRO receive buffer never exceed it.
pub(crate) const MAX_UDP_PAYLOAD: usize = 65507;
/// Segments per GSO send. The kernel accepts up to 64 (`UDP_MAX_SEGMENTS`); the byte limit
/// above usually binds first.
pub(crate) const MAX_SEGMENTS: usize = 64;
/// Receive buffers per `recvmmsg`. With GRO each may hold dozens of datagrams.
const RECV_SLOTS: usize = 16;
/// Socket buffer we ask for in both directions. The default (≈208 KiB, under 100 datagrams
/// of skb overhead) overflows during one millisecond's pacing burst at a few hundred MiB/s;
/// the kernel caps the request at `net.core.[rw]mem_max`.
const SOCKET_BUFFER: usize = 4 * 1024 * 1024;

/// What a socket can do, learned at setup and downgraded when the kernel refuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Caps {
    /// `UDP_SEGMENT` sends.
    pub(crate) gso: bool,
    /// `UDP_GRO` receives (only affects how received buffers are split).
    pub(crate) gro: bool,
}

/// One received datagram's place in a [`RecvBatch`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct Received {
    /// Offset into the batch's buffer.
    pub(crate) start: usize,
    pub(crate) len: usize,
    pub(crate) from: SocketAddr,
}

/// Buffers for one `recv_batch` call, reused across calls.
pub(crate) struct RecvBatch {
    buf: Vec<u8>,
    slot_len: usize,
    datagrams: Vec<Received>,
}

impl RecvBatch {
    pub(crate) fn new() -> Self {
        let slot_len = MAX_UDP_PAYLOAD.next_multiple_of(64);
        RecvBatch {
            buf: vec![0; slot_len * RECV_SLOTS],
            slot_len,
            datagrams: Vec::with_capacity(RECV_SLOTS * MAX_SEGMENTS),
        }
    }

    /// The datagrams of the last call, in arrival order.
    pub(crate) fn datagrams(&self) -> impl Iterator<Item = (&[u8], SocketAddr)> + '_ {
        self.datagrams
            .iter()
            .map(|d| (&self.buf[d.start..d.start + d.len], d.from))
    }

    /// Number of datagrams of the last call.
    pub(crate) fn len(&self) -> usize {
        self.datagrams.len()
    }

    /// Records a received buffer, split at `segment` bytes when GRO glued datagrams together.
    fn push(&mut self, start: usize, len: usize, segment: Option<usize>, from: SocketAddr) {
        let seg = segment.filter(|&s| s > 0).unwrap_or(len.max(1));
        let mut at = 0;
        while at < len {
            let n = seg.min(len - at);
            self.datagrams.push(Received {
                start: start + at,
                len: n,
                from,
            });
            at += n;
        }
    }
}

/// Appends datagrams for one destination to a buffer in the shape GSO needs: every datagram
/// `segment` bytes long except possibly the last, which closes the run.
#[derive(Debug, Default)]
pub(crate) struct SendBatch {
    pub(crate) buf: Vec<u8>,
    pub(crate) runs: Vec<Run>,
}

/// A run of datagrams in [`SendBatch::buf`] for one destination.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Run {
    pub(crate) dest: SocketAddr,
    pub(crate) start: usize,
    pub(crate) len: usize,
    /// Size of every datagram but the last.
    pub(crate) segment: usize,
    /// Datagrams in the run.
    pub(crate) count: usize,
}

impl SendBatch {
    /// Datagrams queued.
    #[cfg(test)]
    pub(crate) fn datagrams(&self) -> usize {
        self.runs.iter().map(|r| r.count).sum()
    }

    pub(crate) fn clear(&mut self) {
        self.buf.clear();
        self.runs.clear();
    }

    /// The datagram just appended at `start..buf.len()` goes to `dest`: extend the open run
    /// or start a new one.
    pub(crate) fn commit(&mut self, start: usize, dest: SocketAddr) {
        let len = self.buf.len() - start;
        if let Some(r) = self.runs.last_mut() {
            // A run stays open while every datagram in it has the segment size.
            let open = r.len == r.segment * r.count;
            if open
                && r.dest == dest
                && len <= r.segment
                && r.count < MAX_SEGMENTS
                && r.len + len <= MAX_UDP_PAYLOAD
                && r.start + r.len == start
            {
                r.len += len;
                r.count += 1;
                return;
            }
        }
        self.runs.push(Run {
            dest,
            start,
            len,
            segment: len,
            count: 1,
        });
    }
}

#[cfg(target_os = "linux")]
mod sys {
    use super::*;
    use std::mem::{size_of, zeroed};
    use std::net::{Ipv4Addr, Ipv6Addr, SocketAddrV4, SocketAddrV6};
    use std::os::fd::RawFd;

    fn setsockopt_int(fd: RawFd, level: i32, name: i32, value: i32) -> io::Result<()> {
        // SAFETY: passes a pointer to a live i32 and its size.
        let r = unsafe {
            libc::setsockopt(
                fd,
                level,
                name,
                &value as *const i32 as *const libc::c_void,
                size_of::<i32>() as libc::socklen_t,
            )
        };
        if r == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }

    pub(crate) fn setup(fd: RawFd) -> Caps {
        // Best effort: a smaller buffer only means more drops under load.
        let _ = setsockopt_int(fd, libc::SOL_SOCKET, libc::SO_RCVBUF, SOCKET_BUFFER as i32);
        let _ = setsockopt_int(fd, libc::SOL_SOCKET, libc::SO_SNDBUF, SOCKET_BUFFER as i32);
        let gro = setsockopt_int(fd, libc::SOL_UDP, libc::UDP_GRO, 1).is_ok();
        // Setting a zero segment size is a no-op that fails where UDP_SEGMENT is unknown.
        let gso = setsockopt_int(fd, libc::SOL_UDP, libc::UDP_SEGMENT, 0).is_ok();
        Caps { gso, gro }
    }

    /// A `sockaddr_storage` holding `addr`, and its length.
    fn to_sockaddr(addr: SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
        // SAFETY: sockaddr_storage is plain data; all-zero is a valid value.
        let mut ss: libc::sockaddr_storage = unsafe { zeroed() };
        let len = match addr {
            SocketAddr::V4(a) => {
                let sin = libc::sockaddr_in {
                    sin_family: libc::AF_INET as libc::sa_family_t,
                    sin_port: a.port().to_be(),
                    sin_addr: libc::in_addr {
                        s_addr: u32::from_ne_bytes(a.ip().octets()),
                    },
                    sin_zero: [0; 8],
                };
                // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in.
                unsafe { std::ptr::write(&mut ss as *mut _ as *mut libc::sockaddr_in, sin) };
                size_of::<libc::sockaddr_in>()
            }
            SocketAddr::V6(a) => {
                let sin6 = libc::sockaddr_in6 {
                    sin6_family: libc::AF_INET6 as libc::sa_family_t,
                    sin6_port: a.port().to_be(),
                    sin6_flowinfo: a.flowinfo(),
                    sin6_addr: libc::in6_addr {
                        s6_addr: a.ip().octets(),
                    },
                    sin6_scope_id: a.scope_id(),
                };
                // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in6.
                unsafe { std::ptr::write(&mut ss as *mut _ as *mut libc::sockaddr_in6, sin6) };
                size_of::<libc::sockaddr_in6>()
            }
        };
        (ss, len as libc::socklen_t)
    }

    fn from_sockaddr(ss: &libc::sockaddr_storage) -> Option<SocketAddr> {
        match ss.ss_family as i32 {
            libc::AF_INET => {
                // SAFETY: the family says the storage holds a sockaddr_in.
                let sin = unsafe { &*(ss as *const _ as *const libc::sockaddr_in) };
                let ip = Ipv4Addr::from(sin.sin_addr.s_addr.to_ne_bytes());
                Some(SocketAddr::V4(SocketAddrV4::new(
                    ip,
                    u16::from_be(sin.sin_port),
                )))
            }
            libc::AF_INET6 => {
                // SAFETY: the family says the storage holds a sockaddr_in6.
                let sin6 = unsafe { &*(ss as *const _ as *const libc::sockaddr_in6) };
                Some(SocketAddr::V6(SocketAddrV6::new(
                    Ipv6Addr::from(sin6.sin6_addr.s6_addr),
                    u16::from_be(sin6.sin6_port),
                    sin6.sin6_flowinfo,
                    sin6.sin6_scope_id,
                )))
            }
            _ => None,
        }
    }

    /// Room for one int-sized control message (the GSO / GRO segment size).
    #[repr(C, align(8))]
    struct Cmsg([u8; 32]);

    /// Errors that mean "this socket or device does not do GSO", not "this send failed".
    fn gso_refused(e: &io::Error) -> bool {
        matches!(
            e.raw_os_error(),
            Some(libc::EIO | libc::EINVAL | libc::ENOPROTOOPT | libc::EOPNOTSUPP)
        )
    }

    /// Sends `run` (datagrams in `buf`); returns how many datagrams left. Fewer than the run
    /// holds only when the socket buffer filled (then the error of the next call is
    /// `WouldBlock`).
    pub(crate) fn send_run(fd: RawFd, buf: &[u8], run: &Run, caps: &mut Caps) -> io::Result<usize> {
        let data = &buf[run.start..run.start + run.len];
        if caps.gso && run.count > 1 {
            match send_gso(fd, data, run.segment, run.dest) {
                Ok(()) => return Ok(run.count),
                Err(e) if gso_refused(&e) => caps.gso = false,
                Err(e) => return Err(e),
            }
        }
        send_each(fd, data, run.segment, run.dest)
    }

    fn send_gso(fd: RawFd, data: &[u8], segment: usize, dest: SocketAddr) -> io::Result<()> {
        let (mut addr, addr_len) = to_sockaddr(dest);
        let mut iov = libc::iovec {
            iov_base: data.as_ptr() as *mut libc::c_void,
            iov_len: data.len(),
        };
        let mut control = Cmsg([0; 32]);
        // SAFETY: msghdr is plain data; every pointer set below outlives the sendmsg call,
        // and the control buffer is aligned and large enough for one CMSG_SPACE(int).
        unsafe {
            let mut msg: libc::msghdr = zeroed();
            msg.msg_name = &mut addr as *mut _ as *mut libc::c_void;
            msg.msg_namelen = addr_len;
            msg.msg_iov = &mut iov;
            msg.msg_iovlen = 1;
            msg.msg_control = control.0.as_mut_ptr() as *mut libc::c_void;
            msg.msg_controllen = libc::CMSG_SPACE(size_of::<u16>() as u32) as _;
            let cmsg = libc::CMSG_FIRSTHDR(&msg);
            (*cmsg).cmsg_level = libc::SOL_UDP;
            (*cmsg).cmsg_type = libc::UDP_SEGMENT;
            (*cmsg).cmsg_len = libc::CMSG_LEN(size_of::<u16>() as u32) as _;
            std::ptr::write_unaligned(libc::CMSG_DATA(cmsg) as *mut u16, segment as u16);
            if libc::sendmsg(fd, &msg, 0) < 0 {
                return Err(io::Error::last_os_error());
            }
        }
        Ok(())
    }

    /// `sendmmsg` of the run's datagrams one by one.
    fn send_each(fd: RawFd, data: &[u8], segment: usize, dest: SocketAddr) -> io::Result<usize> {
        let (addr, addr_len) = to_sockaddr(dest);
        let mut iovs: Vec<libc::iovec> = data
            .chunks(segment.max(1))
            .map(|c| libc::iovec {
                iov_base: c.as_ptr() as *mut libc::c_void,
                iov_len: c.len(),
            })
            .collect();
        let mut addrs = vec![addr; iovs.len()];
        // SAFETY: mmsghdr is plain data; every header points into `iovs` and `addrs`, which
        // outlive the call and are not moved while the headers exist.
        let mut msgs: Vec<libc::mmsghdr> = iovs
            .iter_mut()
            .zip(addrs.iter_mut())
            .map(|(iov, a)| unsafe {
                let mut m: libc::mmsghdr = zeroed();
                m.msg_hdr.msg_name = a as *mut _ as *mut libc::c_void;
                m.msg_hdr.msg_namelen = addr_len;
                m.msg_hdr.msg_iov = iov;
                m.msg_hdr.msg_iovlen = 1;
                m
            })
            .collect();
        let mut sent = 0;
        while sent < msgs.len() {
            // SAFETY: msgs[sent..] is a valid array of initialised headers.
            let r = unsafe {
                libc::sendmmsg(
                    fd,
                    msgs[sent..].as_mut_ptr(),
                    (msgs.len() - sent) as libc::c_uint,
                    0,
                )
            };
            if r < 0 {
                let e = io::Error::last_os_error();
                if sent > 0 && e.kind() == io::ErrorKind::WouldBlock {
                    return Ok(sent);
                }
                return Err(e);
            }
            sent += r as usize;
        }
        Ok(sent)
    }

    /// Reads whatever is queued, up to the batch's capacity, without blocking. Fails with
    /// `WouldBlock` when nothing is.
    pub(crate) fn recv_batch(fd: RawFd, batch: &mut RecvBatch, caps: &Caps) -> io::Result<usize> {
        batch.datagrams.clear();
        let slot_len = batch.slot_len;
        // SAFETY: sockaddr_storage is plain data, valid when all-zero.
        let mut addrs: [libc::sockaddr_storage; RECV_SLOTS] = unsafe { zeroed() };
        let mut controls: [Cmsg; RECV_SLOTS] = std::array::from_fn(|_| Cmsg([0; 32]));
        let base = batch.buf.as_mut_ptr();
        let mut iovs: [libc::iovec; RECV_SLOTS] = std::array::from_fn(|i| libc::iovec {
            // SAFETY: slot i lies inside `buf`, which holds RECV_SLOTS slots.
            iov_base: unsafe { base.add(i * slot_len) } as *mut libc::c_void,
            iov_len: slot_len,
        });
        // SAFETY: mmsghdr is plain data, valid when all-zero.
        let mut msgs: [libc::mmsghdr; RECV_SLOTS] = unsafe { zeroed() };
        for (i, m) in msgs.iter_mut().enumerate() {
            let h = &mut m.msg_hdr;
            h.msg_name = &mut addrs[i] as *mut _ as *mut libc::c_void;
            h.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            h.msg_iov = &mut iovs[i];
            h.msg_iovlen = 1;
            if caps.gro {
                h.msg_control = controls[i].0.as_mut_ptr() as *mut libc::c_void;
                h.msg_controllen = controls[i].0.len() as _;
            }
        }
        // SAFETY: every header points at buffers that live until the end of this function.
        let n = unsafe {
            libc::recvmmsg(
                fd,
                msgs.as_mut_ptr(),
                RECV_SLOTS as libc::c_uint,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        for (i, m) in msgs.iter().enumerate().take(n as usize) {
            let h = &m.msg_hdr;
            // A truncated datagram is not one we could parse; drop it.
            if h.msg_flags & libc::MSG_TRUNC != 0 {
                continue;
            }
            let Some(from) = from_sockaddr(&addrs[i]) else {
                continue;
            };
            let mut segment = None;
            if caps.gro {
                // SAFETY: the kernel filled msg_control up to msg_controllen with well-formed
                // control messages; CMSG_NXTHDR stays within it.
                unsafe {
                    let mut c = libc::CMSG_FIRSTHDR(h);
                    while !c.is_null() {
                        if (*c).cmsg_level == libc::SOL_UDP && (*c).cmsg_type == libc::UDP_GRO {
                            let v = std::ptr::read_unaligned(libc::CMSG_DATA(c) as *const i32);
                            segment = usize::try_from(v).ok();
                        }
                        c = libc::CMSG_NXTHDR(h, c);
                    }
                }
            }
            batch.push(i * slot_len, m.msg_len as usize, segment, from);
        }
        Ok(batch.datagrams.len())
    }
}

#[cfg(not(target_os = "linux"))]
mod sys {
    //! One datagram per call through tokio's own non-blocking calls; the batching above the
    //! calls still applies.
    use super::*;
    use tokio::net::UdpSocket;

    pub(crate) fn setup(_socket: &UdpSocket) -> Caps {
        Caps {
            gso: false,
            gro: false,
        }
    }

    pub(crate) fn send_run(
        socket: &UdpSocket,
        buf: &[u8],
        run: &Run,
        _caps: &mut Caps,
    ) -> io::Result<usize> {
        let data = &buf[run.start..run.start + run.len];
        let mut sent = 0;
        for d in data.chunks(run.segment.max(1)) {
            match socket.try_send_to(d, run.dest) {
                Ok(_) => sent += 1,
                Err(e) if sent > 0 && e.kind() == io::ErrorKind::WouldBlock => return Ok(sent),
                Err(e) => return Err(e),
            }
        }
        Ok(sent)
    }

    pub(crate) fn recv_batch(
        socket: &UdpSocket,
        batch: &mut RecvBatch,
        _caps: &Caps,
    ) -> io::Result<usize> {
        batch.datagrams.clear();
        let slot_len = batch.slot_len;
        for i in 0..RECV_SLOTS {
            let slot = &mut batch.buf[i * slot_len..(i + 1) * slot_len];
            match socket.try_recv_from(slot) {
                Ok((n, from)) => batch.push(i * slot_len, n, None, from),
                Err(e) if i > 0 && e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(e),
            }
        }
        Ok(batch.datagrams.len())
    }
}

/// Applies socket options (larger buffers, GRO) and reports what the socket supports.
#[cfg(target_os = "linux")]
pub(crate) fn setup(socket: &impl std::os::fd::AsRawFd) -> Caps {
    sys::setup(socket.as_raw_fd())
}

/// Sends one run; returns how many of its datagrams left (all of them, or fewer when the
/// socket buffer filled part way). Turns `caps.gso` off and falls back when GSO is refused.
#[cfg(target_os = "linux")]
pub(crate) fn send_run(
    socket: &impl std::os::fd::AsRawFd,
    buf: &[u8],
    run: &Run,
    caps: &mut Caps,
) -> io::Result<usize> {
    sys::send_run(socket.as_raw_fd(), buf, run, caps)
}

/// Receives what is queued into `batch` without blocking; `WouldBlock` when nothing is.
#[cfg(target_os = "linux")]
pub(crate) fn recv_batch(
    socket: &impl std::os::fd::AsRawFd,
    batch: &mut RecvBatch,
    caps: &Caps,
) -> io::Result<usize> {
    sys::recv_batch(socket.as_raw_fd(), batch, caps)
}

#[cfg(not(target_os = "linux"))]
pub(crate) use sys::{recv_batch, send_run, setup};

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;
    use std::net::UdpSocket;
    use std::time::Duration;

    fn pair() -> Option<(UdpSocket, UdpSocket)> {
        // Tests run inside a network namespace with only loopback; without it, skip.
        let a = UdpSocket::bind("127.0.0.1:0").ok()?;
        let b = UdpSocket::bind("127.0.0.1:0").ok()?;
        b.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        Some((a, b))
    }

    /// Blocks until something is readable, then drains what is queued.
    fn receive_all(b: &UdpSocket, caps: &Caps, want: usize) -> Vec<(Vec<u8>, SocketAddr)> {
        let mut batch = RecvBatch::new();
        let mut got = Vec::new();
        let mut peek = [0u8; 1];
        while got.len() < want {
            // Blocking peek (with the socket's timeout) as the readiness wait.
            if b.peek_from(&mut peek).is_err() {
                break;
            }
            match recv_batch(b, &mut batch, caps) {
                Ok(_) => got.extend(batch.datagrams().map(|(d, f)| (d.to_vec(), f))),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => panic!("recv_batch: {e}"),
            }
        }
        got
    }

    fn datagrams(n: usize, size: usize, last: usize) -> (SendBatch, Vec<Vec<u8>>) {
        let mut batch = SendBatch::default();
        let mut want = Vec::new();
        let dest: SocketAddr = "127.0.0.1:9".parse().unwrap();
        for i in 0..n {
            let len = if i + 1 == n { last } else { size };
            let d: Vec<u8> = (0..len).map(|j| (i * 7 + j) as u8).collect();
            let start = batch.buf.len();
            batch.buf.extend_from_slice(&d);
            batch.commit(start, dest);
            want.push(d);
        }
        (batch, want)
    }

    #[test]
    fn runs_close_on_a_short_datagram_or_a_new_destination() {
        let (mut batch, _) = datagrams(5, 100, 40);
        assert_eq!(batch.runs.len(), 1);
        assert_eq!(batch.runs[0].count, 5);
        let start = batch.buf.len();
        batch.buf.extend_from_slice(&[0; 100]);
        batch.commit(start, "127.0.0.1:9".parse().unwrap());
        assert_eq!(
            batch.runs.len(),
            2,
            "the short datagram closed the first run"
        );
        let start = batch.buf.len();
        batch.buf.extend_from_slice(&[0; 100]);
        batch.commit(start, "127.0.0.1:10".parse().unwrap());
        assert_eq!(batch.runs.len(), 3);
        assert_eq!(batch.datagrams(), 7);
    }

    fn round_trip(mut caps: Caps) {
        let Some((a, b)) = pair() else { return };
        // Without GRO asked for, leave the receiver's kernel option off too.
        let rx_caps = if caps.gro { setup(&b) } else { caps };
        caps.gso &= setup(&a).gso;
        let (mut batch, want) = datagrams(40, 1172, 300);
        for r in &mut batch.runs {
            r.dest = b.local_addr().unwrap();
        }
        let mut sent = 0;
        for r in batch.runs.clone() {
            sent += send_run(&a, &batch.buf, &r, &mut caps).unwrap();
        }
        assert_eq!(sent, want.len());
        let got = receive_all(&b, &rx_caps, want.len());
        let from = a.local_addr().unwrap();
        assert!(got.iter().all(|(_, f)| *f == from));
        let got: Vec<Vec<u8>> = got.into_iter().map(|(d, _)| d).collect();
        assert_eq!(got, want);
    }

    #[test]
    fn gso_and_gro_round_trip_on_loopback() {
        round_trip(Caps {
            gso: true,
            gro: true,
        });
    }

    #[test]
    fn fallback_without_gso_or_gro_round_trips() {
        round_trip(Caps {
            gso: false,
            gro: false,
        });
    }
}
