//! Handshake timestamps at the byte level: the engine writes TAI64N on the standard base
//! (2^62 + 10, as kernel WireGuard and wireguard-go), and takes an initiation stamped on
//! that base right after one of its own kind (a peer that restarted from braid into
//! another implementation).
//!
//! The Noise IKpsk2 steps below follow the WireGuard paper, section 5.4.2, written out
//! with the primitives it names (BLAKE2s, HMAC-BLAKE2s, ChaCha20-Poly1305, X25519).

mod sim;

use blake2::digest::{Digest, Mac};
use braid_engine::{Engine, Socket};
use chacha20poly1305::ChaCha20Poly1305;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use sim::{addr, config, key};
use std::time::{Duration, Instant};
use x25519_dalek::{PublicKey, StaticSecret};

const CONSTRUCTION: &[u8] = b"Noise_IKpsk2_25519_ChaChaPoly_BLAKE2s";
const IDENTIFIER: &[u8] = b"WireGuard v1 zx2c4 Jason@zx2c4.com";
const LABEL_MAC1: &[u8] = b"mac1----";
/// The standard TAI64 label for the Unix epoch plus 10 s (TAI-UTC in 1972).
const TAI64_BASE: u64 = (1 << 62) + 10;

fn hash(parts: &[&[u8]]) -> [u8; 32] {
    let mut h = blake2::Blake2s256::new();
    for p in parts {
        h.update(p);
    }
    h.finalize().into()
}

fn hmac(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let mut k = [0u8; 64];
    k[..key.len()].copy_from_slice(key);
    let ipad: Vec<u8> = k.iter().map(|b| b ^ 0x36).collect();
    let opad: Vec<u8> = k.iter().map(|b| b ^ 0x5c).collect();
    let mut inner = vec![ipad.as_slice()];
    inner.extend_from_slice(parts);
    let inner = hash(&inner);
    hash(&[&opad, &inner])
}

fn kdf2(chaining: &[u8; 32], input: &[u8]) -> ([u8; 32], [u8; 32]) {
    let t0 = hmac(chaining, &[input]);
    let t1 = hmac(&t0, &[&[1]]);
    let t2 = hmac(&t0, &[&t1, &[2]]);
    (t1, t2)
}

fn aead(key: &[u8; 32], aad: &[u8], msg: &[u8], seal: bool) -> Vec<u8> {
    let cipher = ChaCha20Poly1305::new(key.into());
    let nonce = [0u8; 12];
    let payload = Payload { msg, aad };
    if seal {
        cipher.encrypt(&nonce.into(), payload).expect("seals")
    } else {
        cipher
            .decrypt(&nonce.into(), payload)
            .expect("the tag verifies")
    }
}

fn mac1(peer_public: &[u8; 32], msg: &[u8]) -> [u8; 16] {
    let key = hash(&[LABEL_MAC1, peer_public]);
    let mut mac = <blake2::Blake2sMac<blake2::digest::consts::U16> as Mac>::new_from_slice(&key)
        .expect("a 32-byte key");
    mac.update(msg);
    mac.finalize().into_bytes().into()
}

/// The TAI64N timestamp of an initiation, opened with the responder's private key.
fn open_timestamp(initiation: &[u8], responder_private: [u8; 32]) -> (u64, u32) {
    assert_eq!(initiation.len(), 148);
    assert_eq!(initiation[0], 1);
    let responder = StaticSecret::from(responder_private);
    let responder_public = PublicKey::from(&responder).to_bytes();
    let c = hash(&[CONSTRUCTION]);
    let h = hash(&[&c, IDENTIFIER]);
    let h = hash(&[&h, &responder_public]);
    let ephemeral: [u8; 32] = initiation[8..40].try_into().unwrap();
    let c = hmac(&hmac(&c, &[&ephemeral]), &[&[1]]);
    let h = hash(&[&h, &ephemeral]);
    let (c, k) = kdf2(
        &c,
        responder
            .diffie_hellman(&PublicKey::from(ephemeral))
            .as_bytes(),
    );
    let encrypted_static = &initiation[40..88];
    let initiator_static: [u8; 32] = aead(&k, &h, encrypted_static, false).try_into().unwrap();
    let h = hash(&[&h, encrypted_static]);
    let (_, k) = kdf2(
        &c,
        responder
            .diffie_hellman(&PublicKey::from(initiator_static))
            .as_bytes(),
    );
    let stamp = aead(&k, &h, &initiation[88..116], false);
    (
        u64::from_be_bytes(stamp[..8].try_into().unwrap()),
        u32::from_be_bytes(stamp[8..12].try_into().unwrap()),
    )
}

/// An initiation as kernel WireGuard or wireguard-go would send it at `unix` seconds.
fn standard_initiation(initiator: [u8; 32], responder_public: [u8; 32], unix: u64) -> Vec<u8> {
    let initiator = StaticSecret::from(initiator);
    let ephemeral = StaticSecret::from([0x42; 32]);
    let ephemeral_public = PublicKey::from(&ephemeral).to_bytes();
    let c = hash(&[CONSTRUCTION]);
    let h = hash(&[&c, IDENTIFIER]);
    let h = hash(&[&h, &responder_public]);
    let c = hmac(&hmac(&c, &[&ephemeral_public]), &[&[1]]);
    let h = hash(&[&h, &ephemeral_public]);
    let (c, k) = kdf2(
        &c,
        ephemeral
            .diffie_hellman(&PublicKey::from(responder_public))
            .as_bytes(),
    );
    let encrypted_static = aead(&k, &h, PublicKey::from(&initiator).as_bytes(), true);
    let h = hash(&[&h, &encrypted_static]);
    let (_, k) = kdf2(
        &c,
        initiator
            .diffie_hellman(&PublicKey::from(responder_public))
            .as_bytes(),
    );
    let mut stamp = (TAI64_BASE + unix).to_be_bytes().to_vec();
    stamp.extend_from_slice(&0u32.to_be_bytes());
    let encrypted_stamp = aead(&k, &h, &stamp, true);
    let mut msg = vec![1, 0, 0, 0, 7, 0, 0, 0];
    msg.extend_from_slice(&ephemeral_public);
    msg.extend_from_slice(&encrypted_static);
    msg.extend_from_slice(&encrypted_stamp);
    let mac = mac1(&responder_public, &msg);
    msg.extend_from_slice(&mac);
    msg.extend_from_slice(&[0; 16]);
    msg
}

const WALL: u64 = 1_790_000_000;

fn initiation_of(engine: &mut Engine) -> Vec<u8> {
    std::iter::from_fn(|| engine.poll_transmit())
        .find(|t| t.payload[0] == 1)
        .expect("an initiation")
        .payload
}

#[test]
fn initiations_carry_tai64n_on_the_standard_base() {
    let now = Instant::now();
    let mut a = config(1, 2, Some(addr("192.0.2.2:51002")), 1);
    a.wall = Duration::from_secs(WALL);
    let mut engine = Engine::new(a, now);
    let initiation = initiation_of(&mut engine);
    let (secs, nanos) = open_timestamp(&initiation, key(2).0);
    assert_eq!(secs, TAI64_BASE + WALL, "0x{secs:x}");
    assert_eq!(nanos, 0);
}

#[test]
fn a_peer_that_restarts_from_braid_into_a_standard_implementation_is_taken_at_once() {
    let now = Instant::now();
    // b ran braid and shook hands with a ...
    let mut a = config(1, 2, None, 2);
    a.wall = Duration::from_secs(WALL);
    let mut b = config(2, 1, Some(addr("192.0.2.1:51001")), 3);
    b.wall = Duration::from_secs(WALL);
    let mut a = Engine::new(a, now);
    let mut b = Engine::new(b, now);
    let from = addr("192.0.2.2:51002");
    let mut out = vec![0u8; 2048];
    let first = initiation_of(&mut b);
    a.handle_datagram(now, Socket::Main, from, &first, &mut out);
    assert!(std::iter::from_fn(|| a.poll_transmit()).any(|t| t.payload[0] == 2));
    // ... and two seconds later runs as wireguard-go with the same key.
    let later = now + Duration::from_secs(2);
    let initiation = standard_initiation(key(2).0, key(1).1, WALL + 2);
    a.handle_datagram(later, Socket::Main, from, &initiation, &mut out);
    let response = std::iter::from_fn(|| a.poll_transmit()).find(|t| t.payload[0] == 2);
    assert!(response.is_some(), "answered: {:?}", a.stats());
    assert_eq!(a.stats().rejected_handshakes, 0);
}
