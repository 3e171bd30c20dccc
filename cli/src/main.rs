//! `hyperswarm`: run and probe HyperDHT nodes from the command line.

mod connect;
mod demo;
mod dht;
mod forge;
mod output;
mod records;
mod swarm;
mod udx;

use clap::{Parser, Subcommand};

/// The public HyperDHT bootstrap nodes: the default for users, never for tests.
pub use hyperswarm::swarm::PUBLIC_BOOTSTRAP;

#[derive(Parser)]
#[command(
    name = "hyperswarm",
    version,
    about = "Hyperswarm peer-to-peer stack (Rust)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a DHT node until interrupted.
    DhtNode(dht::NodeArgs),
    /// Ping one DHT node.
    DhtPing(dht::PingArgs),
    /// Find the nodes closest to one or more 32-byte hex targets.
    DhtFind(dht::FindArgs),
    /// Announce a key pair under a topic (and stay, until interrupted, unless --once).
    Announce(records::AnnounceArgs),
    /// Remove an announce.
    Unannounce(records::UnannounceArgs),
    /// List the peers announced under a topic.
    Lookup(records::LookupArgs),
    /// Store a value: mutable (signed, with --seed/--key) or immutable (hash-addressed).
    Put(records::PutArgs),
    /// Read a mutable value by public key or an immutable one by hash.
    Get(records::GetArgs),
    /// Listen on a key pair and echo every encrypted connection.
    Listen(connect::ListenArgs),
    /// Connect to a listening key, push bytes through its echo and compare them.
    Connect(connect::ConnectArgs),
    /// Run a blind relay: joins peers that name its key and cannot reach each other.
    Relay(connect::RelayArgs),
    /// Join a topic and pipe stdin/stdout to the first peer that connects.
    Join(swarm::JoinArgs),
    /// Join a topic and send each line of stdin to every peer.
    Chat(swarm::ChatArgs),
    /// Raw UDX streams (interop and throughput checks).
    #[command(subcommand)]
    Udx(udx::UdxCommand),
    /// Send forged and replayed handshakes to a server (an interop test tool).
    #[command(hide = true)]
    ForgeHandshake(forge::ForgeArgs),
    /// Start a small DHT on loopback inside this process and show a lookup through it.
    Demo(demo::DemoArgs),
}

fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::DhtNode(a) => dht::node(a).await,
            Command::DhtPing(a) => dht::ping(a).await,
            Command::DhtFind(a) => dht::find(a).await,
            Command::Announce(a) => records::announce(a).await,
            Command::Unannounce(a) => records::unannounce(a).await,
            Command::Lookup(a) => records::lookup(a).await,
            Command::Put(a) => records::put(a).await,
            Command::Get(a) => records::get(a).await,
            Command::Listen(a) => connect::listen(a).await,
            Command::Connect(a) => connect::connect(a).await,
            Command::Relay(a) => connect::relay(a).await,
            Command::Join(a) => swarm::join(a).await,
            Command::Chat(a) => swarm::chat(a).await,
            Command::Udx(c) => udx::run(c).await,
            Command::Demo(a) => demo::run(a).await,
            Command::ForgeHandshake(a) => forge::forge(a).await,
        }
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
