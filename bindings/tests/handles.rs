//! The facade end to end on a local testnet: typed errors, a swarm pair exchanging bytes
//! through handles, events, destroy. Opens loopback sockets, so it runs inside the
//! network namespace `cargo xtask ci` makes.

use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

use hyperswarm_bindings::{
    block_on, key_pair, DhtHandle, ErrorCode, Firewall, SwarmEvent, SwarmHandle, SwarmListener,
    SwarmSettings, TestnetHandle,
};

const TIMEOUT: Duration = Duration::from_secs(60);

#[test]
fn bad_arguments_have_stable_codes() {
    let e = key_pair(Some(&[0u8; 31])).unwrap_err();
    assert_eq!(e.code, ErrorCode::InvalidKey);
    assert_eq!(e.code.as_str(), "ERR_INVALID_KEY");
    assert!(e.code.is_argument_error());

    let kp = key_pair(None).unwrap();
    let mut sk = kp.secret_key;
    sk[40] ^= 1;
    let e = hyperswarm_bindings::from_secret_key(&sk, None).unwrap_err();
    assert_eq!(e.code, ErrorCode::InvalidKey);
    let other = key_pair(None).unwrap();
    let e =
        hyperswarm_bindings::from_secret_key(&kp.secret_key, Some(&other.public_key)).unwrap_err();
    assert_eq!(e.code, ErrorCode::InvalidKey);

    let e = SwarmHandle::new_blocking(SwarmSettings {
        host: Some("nope".into()),
        ..SwarmSettings::default()
    })
    .unwrap_err();
    assert_eq!(e.code, ErrorCode::InvalidArgument);
    assert_eq!(ErrorCode::Destroyed.as_str(), "ERR_DESTROYED");
}

struct Refuser(mpsc::Sender<[u8; 32]>);

impl Firewall for Refuser {
    fn refuse(&self, key: &[u8; 32]) -> bool {
        let _ = self.0.send(*key);
        true
    }
}

#[test]
fn two_swarms_connect_exchange_and_destroy() {
    block_on(async {
        let testnet = TestnetHandle::new(3, None).await?;
        let settings = SwarmSettings {
            bootstrap: Some(testnet.bootstrap().to_vec()),
            ..SwarmSettings::default()
        };
        let a = SwarmHandle::new(settings.clone()).await?;
        let b = SwarmHandle::new(settings).await?;
        let topic = [7u8; 32];

        // A short topic is refused before anything runs.
        let e = a.join(&topic[..31], true, false, None).await.unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidTopic);

        let d = a.join(&topic, true, false, None).await?;
        assert!(d.flushed().await?);
        b.join(&topic, false, true, None).await?;

        async fn next_connection(
            s: &Arc<SwarmHandle>,
        ) -> Arc<hyperswarm_bindings::ConnectionHandle> {
            loop {
                match s.next_event().await.expect("swarm alive") {
                    SwarmEvent::Connection { connection, .. } => return connection,
                    SwarmEvent::Update(_) => {}
                }
            }
        }
        let (ca, cb) = tokio::time::timeout(TIMEOUT, async {
            tokio::join!(next_connection(&a), next_connection(&b))
        })
        .await
        .expect("both ends see the connection");
        assert_eq!(ca.remote_public_key(), b.key_pair().public_key);
        assert_eq!(cb.remote_public_key(), a.key_pair().public_key);
        assert_eq!(ca.handshake_hash(), cb.handshake_hash());
        assert!(cb.is_initiator() && !ca.is_initiator());

        cb.write(b"ping".to_vec()).await?;
        let mut got = Vec::new();
        while got.len() < 4 {
            got.extend(ca.read(64).await?.expect("not at the end yet"));
        }
        assert_eq!(got, b"ping");
        cb.end().await?;
        assert_eq!(ca.read(64).await?, None);

        // Destroy: later calls fail with ERR_DESTROYED, events run out, connections close.
        a.destroy().await?;
        a.destroy().await?;
        let e = a.join(&topic, true, true, None).await.unwrap_err();
        assert_eq!(e.code, ErrorCode::Destroyed);
        assert_eq!(a.flush().await.unwrap_err().code, ErrorCode::Destroyed);
        tokio::time::timeout(TIMEOUT, async { while a.next_event().await.is_some() {} })
            .await
            .expect("events end after destroy");
        tokio::time::timeout(TIMEOUT, ca.closed())
            .await
            .expect("the connection closed with the swarm");
        assert_eq!(
            ca.read(1).await.unwrap_err().code,
            ErrorCode::ConnectionClosed
        );
        b.destroy().await?;
        testnet.destroy();
        Ok(())
    })
    .unwrap();
}

struct Collect(mpsc::SyncSender<bool>);

impl SwarmListener for Collect {
    fn on_event(&self, event: SwarmEvent) {
        let _ = self.0.send(matches!(event, SwarmEvent::Connection { .. }));
    }
}

#[test]
fn firewall_refuses_and_listener_hears_updates() {
    let (fw_tx, fw_rx) = mpsc::channel();
    let (ev_tx, ev_rx) = mpsc::sync_channel(64);
    let (a, b, testnet) = block_on(async move {
        let testnet = TestnetHandle::new(3, None).await?;
        let bootstrap = Some(testnet.bootstrap().to_vec());
        let a = SwarmHandle::new(SwarmSettings {
            bootstrap: bootstrap.clone(),
            firewall: Some(Arc::new(Refuser(fw_tx))),
            ..SwarmSettings::default()
        })
        .await?;
        let b = SwarmHandle::new(SwarmSettings {
            bootstrap,
            ..SwarmSettings::default()
        })
        .await?;
        Ok((a, b, testnet))
    })
    .unwrap();
    b.set_listener(Arc::new(Collect(ev_tx)));
    let (a2, b2) = (a.clone(), b.clone());
    block_on(async move {
        let d = a2.join(&[9u8; 32], true, false, None).await?;
        d.flushed().await?;
        b2.join(&[9u8; 32], false, true, None).await?;
        Ok(())
    })
    .unwrap();
    let asked = fw_rx.recv_timeout(TIMEOUT).expect("the firewall was asked");
    assert_eq!(asked, b.key_pair().public_key);
    let (a3, b3) = (a.clone(), b.clone());
    block_on(async move {
        b3.flush().await?;
        a3.destroy().await?;
        b3.destroy().await?;
        Ok(())
    })
    .unwrap();
    testnet.destroy();
    // The listener heard updates (the dial) and never a connection.
    let events: Vec<bool> = ev_rx.try_iter().collect();
    assert!(!events.is_empty(), "updates were delivered");
    assert!(events.iter().all(|c| !c), "no connection got through");
}

#[test]
fn dht_handles_dial_a_server_directly() {
    block_on(async {
        let testnet = TestnetHandle::new(3, None).await?;
        let bootstrap = Some(testnet.bootstrap().to_vec());
        let host = Some("127.0.0.1".to_string());
        let server_dht = DhtHandle::bind(bootstrap.clone(), host.clone(), 0).await?;
        let client_dht = DhtHandle::bind(bootstrap, host, 0).await?;
        let skp = key_pair(None)?;
        let ckp = key_pair(None)?;
        let server = server_dht.listen(&skp.secret_key, None).await?;
        assert_eq!(server.public_key(), skp.public_key);
        let e = client_dht
            .connect(&ckp.secret_key, &[1u8; 5])
            .await
            .unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidKey);
        let (c, s) = tokio::time::timeout(TIMEOUT, async {
            tokio::join!(
                client_dht.connect(&ckp.secret_key, &skp.public_key),
                server.accept()
            )
        })
        .await
        .expect("dial and accept");
        let (c, s) = (c?, s?.expect("server open"));
        assert_eq!(s.remote_public_key(), ckp.public_key);
        assert_eq!(c.handshake_hash(), s.handshake_hash());
        s.write(b"pong".to_vec()).await?;
        assert_eq!(c.read(4).await?.as_deref(), Some(&b"pong"[..]));
        server.close().await?;
        assert!(server.accept().await?.is_none());
        client_dht.destroy();
        assert_eq!(
            client_dht.local_addr().unwrap_err().code,
            ErrorCode::Destroyed
        );
        server_dht.destroy();
        testnet.destroy();
        Ok(())
    })
    .unwrap();
}
