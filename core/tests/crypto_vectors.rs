//! Noise IK, SecretStream and related derivations against the vectors generated from JS
//! (hyperdht's NoiseWrap, noise-curve-ed, @hyperswarm/secret-stream). Every `noise*`,
//! `secret-stream/*` and `hypercore/*` vector is checked; a new one fails
//! `every_crypto_vector_has_a_check`.

use hyperswarm::crypto::hash::blake2b_256_keyed;
use hyperswarm::crypto::noise::{ed25519_dh, public_key_of, NoiseHandshake};
use hyperswarm::crypto::secretstream::{
    namespaces, stream_id, unordered_key, Pull, Push, SecretStream, SecretStreamError,
    UnorderedBox, TAG_MESSAGE,
};
use hyperswarm::dht::connect_messages::SecurePayload;

mod common;
use common::{arr, bytes, vector, vectors};

const CHECKED: &[&str] = &[
    "noise-curve-ed/dh",
    "noise/ik/full-handshake",
    "secret-stream/namespaces",
    "secret-stream/frames",
    "secret-stream/unordered-message",
    "hypercore/discovery-key",
];

#[test]
fn every_crypto_vector_has_a_check() {
    for v in vectors() {
        let name = v["name"].as_str().unwrap();
        if name.starts_with("noise")
            || name.starts_with("secret-stream")
            || name.starts_with("hypercore")
        {
            assert!(CHECKED.contains(&name), "no check for vector {name}");
        }
    }
}

#[test]
fn ed25519_dh_is_symmetric_and_matches_js() {
    let v = vector("noise-curve-ed/dh");
    let seed_a: [u8; 32] = arr(&v["inputs"]["secretSeedA"]);
    let pk_b: [u8; 32] = arr(&v["inputs"]["publicKeyB"]);
    assert_eq!(
        ed25519_dh(&seed_a, &pk_b).unwrap().to_vec(),
        bytes(&v["expected"]["dh"])
    );
    // dhReverse is DH(B's secret, A's public); B is the vectors' responder key, seed 20..3f.
    let seed_b: [u8; 32] = core::array::from_fn(|i| 0x20 + i as u8);
    assert_eq!(public_key_of(&seed_b), pk_b);
    let reverse = ed25519_dh(&seed_b, &public_key_of(&seed_a)).unwrap();
    assert_eq!(reverse.to_vec(), bytes(&v["expected"]["dhReverse"]));
    // A small-order point is refused, as libsodium refuses it.
    let mut identity = [0u8; 32];
    identity[0] = 1;
    assert_eq!(ed25519_dh(&seed_a, &identity), None);
}

#[test]
fn full_ik_handshake_matches_js_byte_for_byte() {
    let v = vector("noise/ik/full-handshake");
    let i = &v["inputs"];
    let e = &v["expected"];
    let prologue = bytes(&i["prologue"]);
    let ini_seed: [u8; 32] = arr(&i["initiatorStaticSeed"]);
    let res_seed: [u8; 32] = arr(&i["responderStaticSeed"]);
    let res_pk: [u8; 32] = arr(&i["responderStaticPublicKey"]);
    assert_eq!(public_key_of(&res_seed), res_pk);

    let mut ini = NoiseHandshake::initiator_with_ephemeral(
        &ini_seed,
        &res_pk,
        &prologue,
        Some(arr(&i["initiatorEphemeralSeed"])),
    )
    .unwrap();
    let mut res = NoiseHandshake::responder_with_ephemeral(
        &res_seed,
        &prologue,
        Some(arr(&i["responderEphemeralSeed"])),
    )
    .unwrap();

    let msg1 = ini.write_message(&bytes(&i["payload1"])).unwrap();
    assert_eq!(hex::encode(&msg1), e["msg1"].as_str().unwrap());
    assert_eq!(res.read_message(&msg1).unwrap(), bytes(&i["payload1"]));
    assert_eq!(
        res.remote_public_key().unwrap().to_vec(),
        bytes(&i["initiatorStaticPublicKey"])
    );

    let msg2 = res.write_message(&bytes(&i["payload2"])).unwrap();
    assert_eq!(hex::encode(&msg2), e["msg2"].as_str().unwrap());
    assert_eq!(ini.read_message(&msg2).unwrap(), bytes(&i["payload2"]));

    let a = ini.finish().unwrap();
    let b = res.finish().unwrap();
    assert_eq!(a.hash.to_vec(), bytes(&e["handshakeHash"]));
    assert_eq!(b.hash, a.hash);
    assert_eq!(a.tx.to_vec(), bytes(&e["initiatorTx"]));
    assert_eq!(a.rx.to_vec(), bytes(&e["initiatorRx"]));
    assert_eq!(b.tx.to_vec(), bytes(&e["responderTx"]));
    assert_eq!(b.rx.to_vec(), bytes(&e["responderRx"]));
    assert!(a.is_initiator && !b.is_initiator);
    assert_eq!(
        b.remote_public_key.to_vec(),
        bytes(&i["initiatorStaticPublicKey"])
    );

    assert_eq!(
        SecurePayload::holepunch_secret(&a.hash).to_vec(),
        bytes(&e["holepunchSecret"])
    );
    assert_eq!(
        stream_id(&a.hash, true).to_vec(),
        bytes(&e["streamIdInitiator"])
    );
    assert_eq!(
        stream_id(&a.hash, false).to_vec(),
        bytes(&e["streamIdResponder"])
    );
    assert_eq!(
        unordered_key(&a.hash, true).to_vec(),
        bytes(&e["unorderedSendKeyInitiator"])
    );
    assert_eq!(
        unordered_key(&a.hash, false).to_vec(),
        bytes(&e["unorderedSendKeyResponder"])
    );
}

#[test]
fn a_tampered_handshake_fails() {
    let v = vector("noise/ik/full-handshake");
    let i = &v["inputs"];
    let prologue = bytes(&i["prologue"]);
    let res_pk: [u8; 32] = arr(&i["responderStaticPublicKey"]);
    let mut ini =
        NoiseHandshake::initiator(&arr(&i["initiatorStaticSeed"]), &res_pk, &prologue).unwrap();
    let mut msg1 = ini.write_message(b"hi").unwrap();
    msg1[40] ^= 1;
    let mut res = NoiseHandshake::responder(&arr(&i["responderStaticSeed"]), &prologue).unwrap();
    assert!(
        res.read_message(&msg1).is_err(),
        "a flipped bit in the encrypted static key"
    );

    // A responder with the wrong static key cannot read message 1 either.
    let mut ini =
        NoiseHandshake::initiator(&arr(&i["initiatorStaticSeed"]), &res_pk, &prologue).unwrap();
    let msg1 = ini.write_message(b"hi").unwrap();
    let mut wrong = NoiseHandshake::responder(&[9; 32], &prologue).unwrap();
    assert!(wrong.read_message(&msg1).is_err());
}

#[test]
fn secret_stream_namespaces_and_discovery_key() {
    let v = vector("secret-stream/namespaces");
    let ns = namespaces();
    assert_eq!(ns[0].to_vec(), bytes(&v["expected"]["NS_INITIATOR"]));
    assert_eq!(ns[1].to_vec(), bytes(&v["expected"]["NS_RESPONDER"]));
    assert_eq!(ns[2].to_vec(), bytes(&v["expected"]["NS_SEND"]));

    let v = vector("hypercore/discovery-key");
    let key = bytes(&v["inputs"]["key"]);
    assert_eq!(
        blake2b_256_keyed(&key, b"hypercore").to_vec(),
        bytes(&v["expected"]["discoveryKey"])
    );
}

#[test]
fn secret_stream_frames_match_libsodium() {
    let v = vector("secret-stream/frames");
    let i = &v["inputs"];
    let e = &v["expected"];
    let tx: [u8; 32] = arr(&i["txKey"]);
    let hash: [u8; 64] = arr(&i["handshakeHash"]);
    let header: [u8; 24] = arr(&i["secretstreamHeader"]);
    let outcome = hyperswarm::crypto::noise::HandshakeOutcome {
        is_initiator: true,
        tx,
        rx: [0; 32],
        hash,
        remote_public_key: [0; 32],
    };
    let (mut s, header_frame) = SecretStream::new(&outcome, header);
    assert_eq!(
        hex::encode(&header_frame),
        e["headerFrame"].as_str().unwrap()
    );
    let f1 = s.encrypt(&bytes(&i["plaintext1"])).unwrap();
    assert_eq!(hex::encode(&f1), e["messageFrame1"].as_str().unwrap());
    let f2 = s.encrypt(&bytes(&i["plaintext2"])).unwrap();
    assert_eq!(hex::encode(&f2), e["messageFrame2"].as_str().unwrap());

    // The responder side: its rx is the initiator's tx; it checks the initiator's id.
    let peer = hyperswarm::crypto::noise::HandshakeOutcome {
        is_initiator: false,
        tx: [1; 32],
        rx: tx,
        hash,
        remote_public_key: [0; 32],
    };
    let (mut r, _) = SecretStream::new(&peer, [2; 24]);
    let mut wire = header_frame.clone();
    wire.extend_from_slice(&f1);
    wire.extend_from_slice(&f2);
    // Fed one byte at a time, frames still come out whole.
    let mut got = Vec::new();
    for b in &wire {
        got.extend(r.decrypt(std::slice::from_ref(b)).unwrap());
    }
    assert_eq!(got, vec![bytes(&i["plaintext1"]), vec![]]);

    // A flipped ciphertext bit is fatal.
    let (mut r, _) = SecretStream::new(&peer, [2; 24]);
    let mut bad = header_frame;
    let mut f = f1.clone();
    f[5] ^= 1;
    bad.extend_from_slice(&f);
    assert_eq!(r.decrypt(&bad), Err(SecretStreamError::Decrypt));
}

#[test]
fn a_wrong_stream_id_is_refused() {
    let outcome = hyperswarm::crypto::noise::HandshakeOutcome {
        is_initiator: true,
        tx: [1; 32],
        rx: [2; 32],
        hash: [3; 64],
        remote_public_key: [0; 32],
    };
    let (_, own_header) = SecretStream::new(&outcome, [4; 24]);
    let (mut s, _) = SecretStream::new(&outcome, [5; 24]);
    // Our own header frame carries the initiator's id; we expect the responder's.
    assert_eq!(s.decrypt(&own_header), Err(SecretStreamError::BadHeader));
}

#[test]
fn push_and_pull_round_trip_across_rekeys_and_sizes() {
    let key = [7u8; 32];
    let header = [8u8; 24];
    let mut push = Push::new(&key, &header);
    let mut pull = Pull::new(&key, &header);
    for len in [0usize, 1, 15, 16, 17, 47, 48, 63, 64, 65, 1000, 70_000] {
        let msg: Vec<u8> = (0..len).map(|i| i as u8).collect();
        let c = push.push(&msg, TAG_MESSAGE);
        assert_eq!(pull.pull(&c).unwrap(), (msg, TAG_MESSAGE));
    }
    let c = push.push(b"rekey", hyperswarm::crypto::secretstream::TAG_REKEY);
    assert_eq!(pull.pull(&c).unwrap().0, b"rekey");
    let c = push.push(b"after", TAG_MESSAGE);
    assert_eq!(pull.pull(&c).unwrap().0, b"after");
    // Replaying an old message fails: the state has moved on.
    assert!(pull.pull(&c).is_err());
}

#[test]
fn unordered_messages_match_js() {
    let v = vector("secret-stream/unordered-message");
    let key: [u8; 32] = arr(&v["inputs"]["key"]);
    let mut tx = UnorderedBox::new(&key, arr(&v["inputs"]["counterBefore"]));
    let envelope = tx.seal(&bytes(&v["inputs"]["plaintext"])).unwrap();
    assert_eq!(
        hex::encode(&envelope),
        v["expected"]["envelope"].as_str().unwrap()
    );
    assert_eq!(envelope[..8].to_vec(), bytes(&v["expected"]["counterUsed"]));
    let rx = UnorderedBox::new(&key, [0; 8]);
    assert_eq!(
        rx.open(&envelope).unwrap(),
        bytes(&v["inputs"]["plaintext"])
    );
    let mut forged = envelope.clone();
    forged[12] ^= 1;
    assert_eq!(rx.open(&forged), None);
}
