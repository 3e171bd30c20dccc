//! The connection handshake between a client and a listening server's handshake cache,
//! without a network: payloads both ways, repeats answered from the cache, refusals.

use std::time::{Duration, Instant};

use hyperswarm::crypto::noise::public_key_of;
use hyperswarm::dht::handshake::{
    errors, firewall, payload_for, ClientHandshake, HandshakeCache, HandshakeError,
};

const SERVER: [u8; 32] = [1; 32];
const CLIENT: [u8; 32] = [2; 32];

#[test]
fn client_and_server_agree_and_exchange_payloads() {
    let server_pk = public_key_of(&SERVER);
    let hs = ClientHandshake::new(
        &CLIENT,
        &server_pk,
        &payload_for(7, firewall::UNKNOWN, vec![]),
    )
    .unwrap();
    let mut cache = HandshakeCache::default();
    let now = Instant::now();
    let mut seen = None;
    let (m2, session) = cache
        .respond(now, &SERVER, hs.message1(), |key, payload| {
            seen = Some((*key, payload.udx.as_ref().unwrap().id));
            Some(payload_for(
                9,
                firewall::OPEN,
                vec!["127.0.0.1:5000".parse().unwrap()],
            ))
        })
        .unwrap();
    assert_eq!(
        seen,
        Some((public_key_of(&CLIENT), 7)),
        "the server sees who dials"
    );
    let server_side = session.expect("a new handshake yields a session");
    let client_side = hs.finish(&m2).unwrap();
    assert_eq!(client_side.remote.udx.as_ref().unwrap().id, 9);
    assert_eq!(client_side.remote.firewall, firewall::OPEN);
    assert_eq!(client_side.outcome.hash, server_side.outcome.hash);
    assert_eq!(client_side.outcome.tx, server_side.outcome.rx);
    assert_eq!(client_side.outcome.rx, server_side.outcome.tx);
    assert_eq!(client_side.outcome.remote_public_key, server_pk);
}

#[test]
fn a_repeated_message1_gets_the_same_answer_and_no_second_session() {
    let hs =
        ClientHandshake::new(&CLIENT, &public_key_of(&SERVER), &payload_for(1, 0, vec![])).unwrap();
    let mut cache = HandshakeCache::default();
    let now = Instant::now();
    let reply = |_: &[u8; 32], _: &_| Some(payload_for(2, 0, vec![]));
    let (a, first) = cache.respond(now, &SERVER, hs.message1(), reply).unwrap();
    let (b, second) = cache.respond(now, &SERVER, hs.message1(), reply).unwrap();
    assert_eq!(a, b);
    assert!(first.is_some() && second.is_none());
    // After the cache window the same bytes are a new (replayed) handshake again.
    let later = now + Duration::from_secs(11);
    let (c, third) = cache.respond(later, &SERVER, hs.message1(), reply).unwrap();
    assert_ne!(a, c, "fresh ephemeral key, fresh answer");
    assert!(third.is_some());
}

#[test]
fn refusals() {
    let server_pk = public_key_of(&SERVER);
    let mut cache = HandshakeCache::default();
    let now = Instant::now();

    // The firewall hook says no: no reply at all.
    let hs = ClientHandshake::new(&CLIENT, &server_pk, &payload_for(1, 0, vec![])).unwrap();
    assert!(cache
        .respond(now, &SERVER, hs.message1(), |_, _| None)
        .is_none());

    // A client without a UDX stream is answered with ABORTED and no session.
    let mut no_udx = payload_for(1, 0, vec![]);
    no_udx.udx = None;
    let hs = ClientHandshake::new(&CLIENT, &server_pk, &no_udx).unwrap();
    let (m2, session) = cache
        .respond(now, &SERVER, hs.message1(), |_, _| {
            Some(payload_for(3, 0, vec![]))
        })
        .unwrap();
    assert!(session.is_none());
    assert!(matches!(
        hs.finish(&m2),
        Err(HandshakeError::Refused(errors::ABORTED))
    ));

    // A message 1 for another server's key does not decrypt.
    let hs = ClientHandshake::new(
        &CLIENT,
        &public_key_of(&[3; 32]),
        &payload_for(1, 0, vec![]),
    )
    .unwrap();
    assert!(cache
        .respond(now, &SERVER, hs.message1(), |_, _| Some(payload_for(
            3,
            0,
            vec![]
        )))
        .is_none());

    // Garbage is ignored.
    assert!(cache
        .respond(now, &SERVER, &[0u8; 100], |_, _| Some(payload_for(
            3,
            0,
            vec![]
        )))
        .is_none());
}
