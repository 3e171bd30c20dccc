//! `listen` and `handshake`: the connection handshake on its own, until encrypted streams
//! over UDX land.

use clap::Args;
use hyperswarm::dht::{HyperDht, KeyPair};
use serde_json::json;

use crate::dht::{client_config, wait_for_exit, BootstrapArg};
use crate::output::Out;

#[derive(Args)]
pub struct ListenArgs {
    /// Print one JSON object per line; also exit when stdin closes.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    bootstrap: BootstrapArg,
    /// The server key pair's seed (64 hex characters); random if absent.
    #[arg(long)]
    seed: Option<String>,
}

#[derive(Args)]
pub struct HandshakeArgs {
    /// Print one JSON object per line.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    bootstrap: BootstrapArg,
    /// The server's public key, 64 hex characters.
    key: String,
}

fn key32(s: &str, what: &str) -> Result<[u8; 32], String> {
    hyperswarm::rpc::NodeId::from_hex(s)
        .map(|id| id.0)
        .ok_or_else(|| format!("{what} must be 64 hex characters"))
}

pub async fn listen(args: ListenArgs) -> Result<(), String> {
    let out = Out { json: args.json };
    let kp = match &args.seed {
        Some(s) => KeyPair::from_seed(key32(s, "--seed")?),
        None => KeyPair::generate(),
    };
    let dht = HyperDht::bind(client_config(args.bootstrap.list()))
        .await
        .map_err(|e| format!("cannot start node: {e}"))?;
    dht.node().bootstrapped().await;
    let mut server = dht
        .listen(&kp, None)
        .await
        .map_err(|e| format!("listen: {e}"))?;
    let pk = hex::encode(server.public_key());
    let relays: Vec<String> = server.relays().iter().map(|a| a.to_string()).collect();
    out.emit(
        json!({"event": "listening", "public_key": pk, "relays": relays}),
        || format!("listening on {pk} through {}", relays.join(", ")),
    );
    let exit = wait_for_exit(args.json);
    tokio::pin!(exit);
    loop {
        tokio::select! {
            incoming = server.accept() => {
                let Some(i) = incoming else { break };
                let key = hex::encode(i.remote_public_key);
                let udx = i.remote.udx.as_ref().map(|u| u.id);
                out.emit(
                    json!({"event": "handshake", "remote_public_key": key, "udx_id": udx, "client_address": i.client_address.to_string()}),
                    || format!("handshake from {key} at {}", i.client_address),
                );
            }
            r = &mut exit => return r,
        }
    }
    Ok(())
}

pub async fn handshake(args: HandshakeArgs) -> Result<(), String> {
    let out = Out { json: args.json };
    let server_key = key32(&args.key, "KEY")?;
    let dht = HyperDht::bind(client_config(args.bootstrap.list()))
        .await
        .map_err(|e| format!("cannot start node: {e}"))?;
    dht.node().bootstrapped().await;
    let kp = KeyPair::generate();
    let d = dht
        .handshake(&kp, &server_key, rand::random())
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    let remote_key = hex::encode(d.handshake.outcome.remote_public_key);
    out.emit(
        json!({
            "event": "handshake",
            "remote_public_key": remote_key,
            "public_key": hex::encode(kp.public_key()),
            "udx_id": d.remote().udx.as_ref().map(|u| u.id),
            "firewall": d.remote().firewall,
            "relayed": d.relayed,
            "relay": d.relay.to_string(),
            "server_address": d.server_address.to_string(),
        }),
        || {
            format!(
                "handshake with {remote_key} via {} (server at {})",
                d.relay, d.server_address
            )
        },
    );
    Ok(())
}
