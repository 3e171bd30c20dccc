//! A holepunch socket: a fresh UDP socket of the node's UDX instance that samples its own NAT
//! mapping with dht-rpc pings, carries PEER_HOLEPUNCH requests (so the relay sees, and the
//! peer learns, this socket's mapping) and receives 1-byte probes.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::task::AbortHandle;

use crate::rpc::{Message, Request, Response};
use crate::udx::{Datagram, Udx, UdxSocket};

/// What hyperdht sends as a probe.
pub(crate) const PROBE: [u8; 1] = [0];
/// TTL of probes that only open our own NAT mapping.
pub(crate) const LOW_TTL: u32 = 5;
/// Datagrams waiting for the socket's router.
const INBOX: usize = 256;
/// Requests a punch socket waits on at once.
const MAX_PENDING: usize = 64;

type Pending = Arc<Mutex<HashMap<u16, oneshot::Sender<Response>>>>;

/// A probe that arrived: on which socket, from where.
pub(crate) type Probe = (UdxSocket, SocketAddr);

/// A hyperdht (non-internal) request without id or token, as punch sockets send them: the
/// tid is the asker's when relaying, else chosen by [`PunchSocket::request`].
pub(crate) fn user_request(
    tid: u16,
    to: SocketAddr,
    command: u64,
    target: crate::rpc::NodeId,
    value: Vec<u8>,
) -> Request {
    Request {
        tid,
        to,
        id: None,
        token: None,
        internal: false,
        command,
        target: Some(target),
        value: Some(value),
    }
}

/// A dht-rpc request that arrived on a punch socket, with its sender.
pub(crate) type Incoming = (Request, SocketAddr);

/// One holepunch socket. Dropping it closes the socket (once no stream uses it).
pub(crate) struct PunchSocket {
    socket: UdxSocket,
    pending: Pending,
    router: AbortHandle,
}

impl std::fmt::Debug for PunchSocket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PunchSocket")
            .field("local_addr", &self.socket.local_addr())
            .finish()
    }
}

impl Drop for PunchSocket {
    fn drop(&mut self) {
        self.router.abort();
    }
}

impl PunchSocket {
    /// Binds a fresh socket on 0.0.0.0 in `udx`; its probes go to `probes`, and requests to
    /// `requests` if given (a server's punch socket receives the client's later
    /// PEER_HOLEPUNCH rounds, since the relay reports it as the server's address).
    pub(crate) fn open(
        udx: &Udx,
        probes: mpsc::Sender<Probe>,
        requests: Option<mpsc::Sender<Incoming>>,
    ) -> io::Result<Self> {
        let (tx, rx) = mpsc::channel(INBOX);
        let any = SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0);
        let socket = udx.bind_now(any, tx)?;
        let pending: Pending = Arc::default();
        let router = tokio::spawn(route(rx, socket.clone(), pending.clone(), probes, requests));
        Ok(PunchSocket {
            socket,
            pending,
            router: router.abort_handle(),
        })
    }

    /// The UDX socket, for connecting the stream once a probe came through.
    pub(crate) fn socket(&self) -> &UdxSocket {
        &self.socket
    }

    /// Sends a 1-byte probe; `low_ttl` makes it die past our own NAT.
    pub(crate) async fn probe(&self, to: SocketAddr, low_ttl: bool) {
        // A failed probe is a lost probe; the strategies send many.
        let _ = if low_ttl {
            self.socket.send_with_ttl(&PROBE, to, LOW_TTL).await
        } else {
            self.socket.send_to(&PROBE, to).await.map(|_| ())
        };
    }

    /// Sends `req` (its tid is chosen here) to `dest` and waits for the response, resending
    /// up to `retries` times after `timeout` each.
    pub(crate) async fn request(
        &self,
        mut req: Request,
        dest: SocketAddr,
        timeout: Duration,
        retries: u32,
    ) -> Option<Response> {
        let (tx, mut rx) = oneshot::channel();
        {
            let mut pending = self.pending.lock().expect("pending poisoned");
            if pending.len() >= MAX_PENDING {
                return None;
            }
            req.tid = loop {
                let tid: u16 = rand::random();
                if !pending.contains_key(&tid) {
                    break tid;
                }
            };
            pending.insert(req.tid, tx);
        }
        req.to = dest;
        let tid = req.tid;
        let bytes = req.encode().ok()?;
        let mut answer = None;
        for _ in 0..=retries {
            let _ = self.socket.send_to(&bytes, dest).await;
            match tokio::time::timeout(timeout, &mut rx).await {
                Ok(Ok(res)) => {
                    answer = Some(res);
                    break;
                }
                Ok(Err(_)) => break,
                Err(_) => {}
            }
        }
        self.pending.lock().expect("pending poisoned").remove(&tid);
        answer
    }

    /// Sends a request without waiting for anything (a relayed hop keeps the asker's tid).
    pub(crate) fn send_now(&self, req: &Request) {
        if let Ok(bytes) = req.encode() {
            let _ = self.socket.try_send_to(&bytes, req.to);
        }
    }
}

/// Hands probes to the puncher, responses to their waiting requests and requests to
/// whoever wants them; anything else is dropped.
async fn route(
    mut rx: mpsc::Receiver<Datagram>,
    socket: UdxSocket,
    pending: Pending,
    probes: mpsc::Sender<Probe>,
    requests: Option<mpsc::Sender<Incoming>>,
) {
    while let Some(d) = rx.recv().await {
        if d.payload.len() <= 1 {
            // A full queue means the puncher already has more probes than it needs.
            let _ = probes.try_send((socket.clone(), d.from));
            continue;
        }
        match Message::decode(&d.payload) {
            Ok(Message::Response(res)) => {
                let waiter = pending.lock().expect("pending poisoned").remove(&res.tid);
                if let Some(w) = waiter {
                    let _ = w.send(res);
                }
            }
            Ok(Message::Request(req)) => {
                if let Some(r) = &requests {
                    let _ = r.try_send((req, d.from));
                }
            }
            Err(_) => {}
        }
    }
}
