//! WireGuard (x25519) keys in their base64 text form, as `wg genkey` and `wg pubkey` print them.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use std::fmt;

/// Why a base64 key did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// Not base64; the decoder's message.
    #[error("is not valid base64 ({0})")]
    Base64(String),
    /// Decodes to this many bytes instead of 32.
    #[error(
        "decodes to {0} bytes, but a WireGuard key is 32 bytes (44 base64 characters ending in '=')"
    )]
    Length(usize),
}

fn decode32(text: &str) -> Result<[u8; 32], KeyError> {
    let bytes = STANDARD
        .decode(text.trim())
        .map_err(|e| KeyError::Base64(e.to_string()))?;
    <[u8; 32]>::try_from(bytes.as_slice()).map_err(|_| KeyError::Length(bytes.len()))
}

/// An x25519 public key.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PublicKey(pub [u8; 32]);

/// An x25519 private key. Its `Debug` never prints the secret.
#[derive(Clone, PartialEq, Eq)]
pub struct PrivateKey(pub [u8; 32]);

impl PublicKey {
    /// Parses the base64 form (44 characters, as `wg pubkey` prints it). Errors: [`KeyError`].
    pub fn from_base64(text: &str) -> Result<Self, KeyError> {
        decode32(text).map(Self)
    }
    /// The base64 form (standard alphabet, padded).
    pub fn to_base64(&self) -> String {
        STANDARD.encode(self.0)
    }
    /// The first 8 characters of the base64 form, for tables and logs.
    pub fn short(&self) -> String {
        self.to_base64()[..8].to_string()
    }
}

impl PrivateKey {
    /// Parses the base64 form (as `wg genkey` prints it). Errors: [`KeyError`].
    pub fn from_base64(text: &str) -> Result<Self, KeyError> {
        decode32(text).map(Self)
    }
    /// A private key from 32 random bytes, clamped as `wg genkey` clamps it.
    pub fn from_random_bytes(mut bytes: [u8; 32]) -> Self {
        bytes[0] &= 248;
        bytes[31] &= 127;
        bytes[31] |= 64;
        Self(bytes)
    }
    /// The base64 form (standard alphabet, padded).
    pub fn to_base64(&self) -> String {
        STANDARD.encode(self.0)
    }
    /// The X25519 public key of this private key (as `wg pubkey` derives it).
    pub fn public_key(&self) -> PublicKey {
        let secret = x25519_dalek::StaticSecret::from(self.0);
        PublicKey(x25519_dalek::PublicKey::from(&secret).to_bytes())
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_base64())
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", self.to_base64())
    }
}

impl fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PrivateKey(<secret>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranet_example_key_round_trips() {
        let text = "KOfdX54OtHAOMqSn2rytCDHSFNe8prw43O8A98z21Xg=";
        let key = PrivateKey::from_base64(text).unwrap();
        assert_eq!(key.to_base64(), text);
    }

    #[test]
    fn public_key_matches_wg_pubkey() {
        // `echo KOfd...Xg= | wg pubkey` (wireguard-tools) prints this.
        let key = PrivateKey::from_base64("KOfdX54OtHAOMqSn2rytCDHSFNe8prw43O8A98z21Xg=").unwrap();
        assert_eq!(
            key.public_key().to_base64(),
            "sZp4uL3rvCumiTHMdvGWUqnqO2dOYv9UqkPQxjgqqRc="
        );
    }

    #[test]
    fn bad_keys_say_why() {
        assert!(matches!(
            PublicKey::from_base64("not base64!"),
            Err(KeyError::Base64(_))
        ));
        assert_eq!(PublicKey::from_base64("AAAA"), Err(KeyError::Length(3)));
    }

    #[test]
    fn clamping_matches_wg_genkey() {
        let key = PrivateKey::from_random_bytes([0xff; 32]);
        assert_eq!(key.0[0], 0xf8);
        assert_eq!(key.0[31], 0x7f);
    }
}
