//! `forge-handshake`: sends handshakes a server must not turn into connections (random
//! bytes, a message 1 sealed to another key, a genuine message 1 sent twice) through the
//! server's DHT relays, and reports what came back. The interop harness runs it against JS
//! and Rust servers; it is hidden from `--help` because it is a test tool.

use std::time::Duration;

use clap::Args;
use hyperswarm::dht::connect_messages::{HandshakeMessage, HandshakeMode};
use hyperswarm::dht::handshake::{firewall, payload_for, ClientHandshake};
use hyperswarm::dht::{commands, peer_target, HyperDht, KeyPair, PeerRecord};
use hyperswarm::rpc::{QueryOptions, UserRequest};
use serde_json::json;
use std::net::SocketAddr;

use crate::dht::{client_config, BootstrapArg};
use crate::output::Out;

#[derive(Args)]
pub struct ForgeArgs {
    /// Print one JSON object per line.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    bootstrap: BootstrapArg,
    /// The server's public key, 64 hex characters.
    key: String,
    /// How long to wait for each answer, in milliseconds.
    #[arg(long, default_value_t = 1500)]
    wait_ms: u64,
}

/// What one forged message 1 got back: `None` is silence.
type Answer = Option<Vec<u8>>;

pub async fn forge(args: ForgeArgs) -> Result<(), String> {
    let out = Out { json: args.json };
    let server = hyperswarm::rpc::NodeId::from_hex(&args.key)
        .map(|id| id.0)
        .ok_or("KEY must be 64 hex characters")?;
    let dht = HyperDht::bind(client_config(args.bootstrap.list()))
        .await
        .map_err(|e| format!("cannot start node: {e}"))?;
    dht.node().bootstrapped().await;
    let relay = find_relay(&dht, &server)
        .await
        .ok_or("no relay knows the server's key")?;
    let wait = Duration::from_millis(args.wait_ms);
    let seed = |kp: KeyPair| -> [u8; 32] { kp.secret_key()[..32].try_into().expect("seed") };

    let garbage: Vec<u8> = (0..96).map(|_| rand::random::<u8>()).collect();
    let answered = send(&dht, &server, relay, garbage, wait).await;
    report(&out, "garbage", &answered, None);

    let other = KeyPair::generate().public_key();
    let sealed_elsewhere = ClientHandshake::new(
        &seed(KeyPair::generate()),
        &other,
        &payload_for(1, firewall::UNKNOWN, vec![]),
    )
    .map_err(|e| format!("handshake: {e}"))?;
    let answered = send(
        &dht,
        &server,
        relay,
        sealed_elsewhere.message1().to_vec(),
        wait,
    )
    .await;
    report(&out, "wrong-key", &answered, None);

    // A genuine message 1 whose stream never opens, sent twice: the second copy must not
    // start a second session.
    let genuine = ClientHandshake::new(
        &seed(KeyPair::generate()),
        &server,
        &payload_for(2, firewall::UNKNOWN, vec![]),
    )
    .map_err(|e| format!("handshake: {e}"))?;
    let first = send(&dht, &server, relay, genuine.message1().to_vec(), wait).await;
    let again = send(&dht, &server, relay, genuine.message1().to_vec(), wait).await;
    report(&out, "genuine", &first, None);
    report(&out, "replay", &again, Some(&first));
    Ok(())
}

/// The first node that returns the server's record for its key: it relays handshakes.
async fn find_relay(dht: &HyperDht, server: &[u8; 32]) -> Option<SocketAddr> {
    let mut replies = dht.node().query(
        peer_target(server),
        commands::FIND_PEER,
        None,
        QueryOptions::default(),
    );
    while let Some(reply) = replies.next().await {
        let record = reply
            .value
            .as_deref()
            .and_then(|v| PeerRecord::decode(v).ok());
        if record.is_some_and(|r| r.public_key == *server) {
            return Some(reply.from);
        }
    }
    None
}

/// Sends `noise` as a client's message 1 through `relay`; the Noise bytes of the reply, if
/// one came.
async fn send(
    dht: &HyperDht,
    server: &[u8; 32],
    relay: SocketAddr,
    noise: Vec<u8>,
    wait: Duration,
) -> Answer {
    let value = HandshakeMessage {
        mode: HandshakeMode::FromClient,
        noise,
        peer_address: None,
        relay_address: None,
    }
    .encode()
    .ok()?;
    let req = UserRequest {
        command: commands::PEER_HANDSHAKE,
        target: Some(peer_target(server)),
        value: Some(value),
        retries: Some(0),
        timeout: Some(wait),
        ..UserRequest::default()
    };
    let res = dht.node().request(req, relay).await.ok()?;
    let reply = HandshakeMessage::decode(res.value.as_deref()?).ok()?;
    (!reply.noise.is_empty()).then_some(reply.noise)
}

fn report(out: &Out, kind: &str, answer: &Answer, earlier: Option<&Answer>) {
    let same = earlier.map(|e| e.is_some() && e == answer);
    let answered = answer.is_some();
    out.emit(
        json!({"event": "forged", "kind": kind, "answered": answered, "same_as_first": same}),
        || {
            let what = if answered { "answered" } else { "silence" };
            match same {
                Some(true) => format!("{kind}: {what} (the reply to the first copy)"),
                _ => format!("{kind}: {what}"),
            }
        },
    );
}
