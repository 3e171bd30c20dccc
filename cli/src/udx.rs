//! `udx echo` and `udx send`: one raw UDX stream on loopback or a LAN, for interop checks
//! against udx-native and for throughput measurements. Mirrors tests/interop/js-udx.js.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use clap::{Args, Subcommand};
use hyperswarm::udx::{CloseReason, Config, UdxSocket, UdxStream};
use serde_json::json;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

use crate::output::Out;

/// How long to wait for the peer to acknowledge our END before giving up.
const CLOSE_WAIT: Duration = Duration::from_secs(10);
/// After a clean close the socket stays up this long (TCP's TIME_WAIT): if our last ACK was
/// lost, the peer retransmits its END and must still get an answer, or it times out.
const TIME_WAIT: Duration = Duration::from_secs(3);

#[derive(Subcommand)]
pub enum UdxCommand {
    /// Echo everything received back, until the peer ends.
    Echo(StreamArgs),
    /// Send --bytes bytes, read the echo back, report hashes and time.
    Send(SendArgs),
}

#[derive(Args)]
pub struct StreamArgs {
    /// Print one JSON object per line.
    #[arg(long)]
    json: bool,
    /// Address to bind.
    #[arg(long, default_value = "127.0.0.1")]
    host: IpAddr,
    /// Port to bind.
    #[arg(long)]
    port: u16,
    /// Our stream id.
    #[arg(long)]
    id: u32,
    /// The peer's stream id.
    #[arg(long)]
    remote_id: u32,
    /// The peer's address.
    #[arg(long, default_value = "127.0.0.1")]
    remote_host: IpAddr,
    /// The peer's port.
    #[arg(long)]
    remote_port: u16,
}

#[derive(Args)]
pub struct SendArgs {
    #[command(flatten)]
    stream: StreamArgs,
    /// Bytes to send.
    #[arg(long)]
    bytes: u64,
}

async fn open(a: &StreamArgs) -> Result<(UdxSocket, UdxStream), String> {
    // Nothing else shares this socket, so unrouted datagrams are simply dropped.
    let (tx, _rx) = mpsc::channel(1);
    let socket = UdxSocket::bind(SocketAddr::new(a.host, a.port), tx)
        .await
        .map_err(|e| format!("bind: {e}"))?;
    let remote = SocketAddr::new(a.remote_host, a.remote_port);
    let stream = socket
        .connect(a.id, a.remote_id, remote, Config::default())
        .map_err(|e| format!("connect: {e}"))?;
    Ok((socket, stream))
}

/// Keeps the socket running until the stream has closed (our END acknowledged).
async fn linger(stream: &UdxStream) -> Option<CloseReason> {
    let deadline = Instant::now() + CLOSE_WAIT;
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    while Instant::now() < deadline {
        if let Some(r) = stream.close_reason() {
            tokio::time::sleep(TIME_WAIT).await;
            return Some(r);
        }
        tick.tick().await;
    }
    None
}

pub async fn run(cmd: UdxCommand) -> Result<(), String> {
    match cmd {
        UdxCommand::Echo(a) => echo(a).await,
        UdxCommand::Send(a) => send(a).await,
    }
}

async fn echo(a: StreamArgs) -> Result<(), String> {
    let out = Out { json: a.json };
    let (socket, mut stream) = open(&a).await?;
    out.emit(
        json!({"event": "ready", "port": socket.local_addr().port()}),
        || format!("echoing on {}", socket.local_addr()),
    );
    let mut buf = vec![0u8; 256 * 1024];
    let mut total = 0u64;
    loop {
        let n = stream
            .read(&mut buf)
            .await
            .map_err(|e| format!("read: {e}"))?;
        if n == 0 {
            break;
        }
        stream
            .write_all(&buf[..n])
            .await
            .map_err(|e| format!("write: {e}"))?;
        total += n as u64;
    }
    stream.shutdown().await.map_err(|e| format!("end: {e}"))?;
    let reason = linger(&stream).await;
    out.emit(
        json!({"event": "done", "bytes": total, "close": format!("{reason:?}")}),
        || format!("echoed {total} bytes ({reason:?})"),
    );
    Ok(())
}

async fn send(a: SendArgs) -> Result<(), String> {
    let out = Out {
        json: a.stream.json,
    };
    let (_socket, stream) = open(&a.stream).await?;
    let total = a.bytes;
    let mut chunk = vec![0u8; 64 * 1024];
    rand::Rng::fill(&mut rand::thread_rng(), &mut chunk[..]);
    let started = Instant::now();
    let (mut rd, mut wr) = tokio::io::split(stream);
    let writer = tokio::spawn(async move {
        let mut sent = Sha256::new();
        let mut left = total;
        while left > 0 {
            let n = left.min(chunk.len() as u64) as usize;
            sent.update(&chunk[..n]);
            wr.write_all(&chunk[..n]).await?;
            left -= n as u64;
        }
        wr.shutdown().await?;
        Ok::<_, std::io::Error>((sent.finalize(), wr))
    });
    let mut received = Sha256::new();
    let mut got = 0u64;
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = rd.read(&mut buf).await.map_err(|e| format!("read: {e}"))?;
        if n == 0 {
            break;
        }
        received.update(&buf[..n]);
        got += n as u64;
    }
    let (sent, wr) = writer
        .await
        .map_err(|e| format!("writer: {e}"))?
        .map_err(|e| format!("write: {e}"))?;
    let seconds = started.elapsed().as_secs_f64();
    let stream = rd.unsplit(wr);
    let reason = linger(&stream).await;
    let (sent, received) = (hex::encode(sent), hex::encode(received.finalize()));
    let mib_s = got as f64 / (1024.0 * 1024.0) / seconds;
    out.emit(
        json!({"event": "done", "bytes": got, "sha256_sent": sent, "sha256_received": received, "seconds": seconds, "close": format!("{reason:?}")}),
        || format!("{got} bytes echoed in {seconds:.2} s ({mib_s:.1} MiB/s each way), equal: {}", sent == received),
    );
    if sent != received || got != total {
        return Err("the echo differs from what was sent".into());
    }
    Ok(())
}
