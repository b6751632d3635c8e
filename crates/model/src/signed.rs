//! Signed registries: minisign signatures (Ed25519 over the BLAKE2b-512 hash of the file,
//! minisign's "ED" algorithm), so `minisign -Vm registry.json -P KEY` checks what braid
//! signs and braid checks what `minisign -Sm registry.json` signs. Format:
//! <https://jedisct1.github.io/minisign/> ("Signature format").
//!
//! The version of a registry is the `timestamp:` in the signature's trusted comment, which
//! the global signature covers (minisign writes `timestamp:<unix seconds>\tfile:<name>\thashed`
//! by default; `braid registry sign` writes the same). A node refuses a registry whose
//! timestamp is older than the one it runs (a rollback), and one with the same timestamp but
//! other bytes. Pure: bytes in, verdicts out.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use std::fmt;

/// A minisign key ID: 8 bytes, shown as minisign shows it (16 hex digits, little-endian).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeyId(pub [u8; 8]);

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016X}", u64::from_le_bytes(self.0))
    }
}

/// A public key the config trusts to sign the registry (`registry_keys`).
#[derive(Debug, Clone)]
pub struct TrustedKey {
    /// The key's minisign id (8 bytes, printed as 16 hex digits).
    pub id: KeyId,
    /// The key as written: the base64 line of a minisign `.pub` file.
    pub text: String,
    key: minisign_verify::PublicKey,
}

impl PartialEq for TrustedKey {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text
    }
}

impl TrustedKey {
    /// Parses a minisign public key: its base64 line (`RW...`, 56 characters), or a whole
    /// `.pub` file (an untrusted comment line, then that line).
    pub fn parse(text: &str) -> Result<Self, String> {
        let line = text
            .lines()
            .map(str::trim)
            .rfind(|l| !l.is_empty())
            .unwrap_or("");
        let bytes = STANDARD
            .decode(line)
            .map_err(|_| format!("`{line}` is not base64"))?;
        if bytes.len() != 42 || bytes[0] != b'E' || bytes[1] != b'd' {
            return Err(format!(
                "`{line}` is not a minisign Ed25519 public key (56 base64 characters starting with RW)"
            ));
        }
        let key = minisign_verify::PublicKey::from_base64(line)
            .map_err(|e| format!("`{line}` is not a minisign public key: {e}"))?;
        let mut id = [0u8; 8];
        id.copy_from_slice(&bytes[2..10]);
        Ok(Self {
            id: KeyId(id),
            text: line.to_string(),
            key,
        })
    }
}

/// What a valid signature says about the registry it signs.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Signed {
    /// The ID of the trusted key that signed it.
    pub key_id: String,
    /// The version: `timestamp:` of the trusted comment, Unix seconds.
    pub timestamp: u64,
    /// The whole trusted comment.
    pub trusted_comment: String,
}

/// Why a registry's signature is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// No signature file (its path).
    #[error("it is not signed (no signature file {0})")]
    Missing(String),
    /// The signature file does not parse; the parser's message.
    #[error("its signature is not in minisign's format ({0})")]
    Malformed(String),
    /// A legacy (non-prehashed, `Ed`) signature.
    #[error(
        "its signature is a legacy (non-prehashed) minisign signature, which braid does not accept"
    )]
    Legacy,
    /// Signed by a key the config does not trust (its id).
    #[error("it is signed with key {0}, which is not trusted (the config's registry_keys)")]
    UnknownKey(KeyId),
    /// The signature does not verify with the key it names.
    #[error(
        "its signature does not match its content or trusted comment (key {0}): the file was changed after signing, or the signature belongs to another file"
    )]
    Invalid(KeyId),
    /// The trusted comment has no `timestamp:N` (the comment as found).
    #[error("its signature's trusted comment has no timestamp:N (it says `{0}`)")]
    NoTimestamp(String),
    /// Signed longer ago than `registry_max_age` allows.
    #[error(
        "it expired: signed at timestamp {version}, {age} s ago, and registry_max_age is {max_age} s"
    )]
    Expired {
        /// The signature's timestamp (Unix seconds), the registry's version.
        version: u64,
        /// Seconds since then.
        age: u64,
        /// The config's `registry_max_age`, seconds.
        max_age: u64,
    },
}

impl SignatureError {
    /// A short name for metrics labels.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Missing(_) => "unsigned",
            Self::Malformed(_) | Self::Legacy => "malformed_signature",
            Self::UnknownKey(_) => "unknown_key",
            Self::Invalid(_) => "bad_signature",
            Self::NoTimestamp(_) => "no_timestamp",
            Self::Expired { .. } => "expired",
        }
    }

    /// How to fix it.
    pub fn fix(&self) -> String {
        match self {
            Self::Missing(_) => "sign the registry where it is edited: `braid registry sign -s SIGNING.key registry.json` (or `minisign -Sm registry.json`), and publish registry.json.minisig beside it".into(),
            Self::Malformed(_) => "sign it again with `braid registry sign` or `minisign -Sm`".into(),
            Self::Legacy => "sign it again without minisign's -l (legacy) flag".into(),
            Self::UnknownKey(id) => format!("sign with a trusted key, or add key {id}'s public key to registry_keys in every node's config (rotation: docs/operations.md)"),
            Self::Invalid(_) => "publish the registry and its signature together; sign the registry again after any edit (`braid registry sign`)".into(),
            Self::NoTimestamp(_) => "sign with braid registry sign, or minisign's default trusted comment (do not pass -t), which carries timestamp:".into(),
            Self::Expired { .. } => "sign the registry again and publish it (sign at least once per registry_max_age, e.g. from cron); if the source withholds new versions, that is what this check found".into(),
        }
    }
}

/// The key ID inside a minisign signature's second line.
fn signature_key_id(signature: &str) -> Option<KeyId> {
    let line = signature.lines().nth(1)?;
    let bytes = STANDARD.decode(line.trim()).ok()?;
    (bytes.len() == 74).then(|| {
        let mut id = [0u8; 8];
        id.copy_from_slice(&bytes[2..10]);
        KeyId(id)
    })
}

/// The `timestamp:N` of a trusted comment (tab- or space-separated fields).
pub fn comment_timestamp(comment: &str) -> Option<u64> {
    comment
        .split(['\t', ' '])
        .find_map(|field| field.strip_prefix("timestamp:"))
        .and_then(|n| n.parse().ok())
}

/// The version (`timestamp:`) in a `.minisig` file's trusted comment, unverified: for a
/// signature that was verified when it was kept.
pub fn signature_timestamp(signature: &str) -> Option<u64> {
    let comment = signature
        .lines()
        .nth(2)?
        .strip_prefix("trusted comment: ")?;
    comment_timestamp(comment)
}

/// Verifies `signature` (a `.minisig` file's text; `None`: there is none, at `where_`)
/// over `registry` with the trusted `keys`.
pub fn verify(
    registry: &[u8],
    signature: Option<&str>,
    where_: &str,
    keys: &[TrustedKey],
) -> Result<Signed, SignatureError> {
    let text = signature.ok_or_else(|| SignatureError::Missing(where_.to_string()))?;
    let parsed = minisign_verify::Signature::decode(text)
        .map_err(|e| SignatureError::Malformed(e.to_string()))?;
    let id = signature_key_id(text)
        .ok_or_else(|| SignatureError::Malformed("bad signature line".into()))?;
    if text
        .lines()
        .nth(1)
        .and_then(|l| STANDARD.decode(l.trim()).ok())
        .is_some_and(|b| b.get(..2) == Some(b"Ed"))
    {
        return Err(SignatureError::Legacy);
    }
    let key = keys
        .iter()
        .find(|k| k.id == id)
        .ok_or(SignatureError::UnknownKey(id))?;
    key.key
        .verify(registry, &parsed, false)
        .map_err(|_| SignatureError::Invalid(id))?;
    let comment = parsed.trusted_comment().to_string();
    let timestamp =
        comment_timestamp(&comment).ok_or_else(|| SignatureError::NoTimestamp(comment.clone()))?;
    Ok(Signed {
        key_id: id.to_string(),
        timestamp,
        trusted_comment: comment,
    })
}

/// Refuses a verified registry older than `max_age` seconds at `now` (Unix seconds): a
/// source that withholds new versions (a freeze) is noticed. `None`: no limit.
pub fn check_age(signed: &Signed, now: u64, max_age: Option<u64>) -> Result<(), SignatureError> {
    let Some(max_age) = max_age else {
        return Ok(());
    };
    let age = now.saturating_sub(signed.timestamp);
    if age > max_age {
        return Err(SignatureError::Expired {
            version: signed.timestamp,
            age,
            max_age,
        });
    }
    Ok(())
}

/// How a verified registry compares with the one a node runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Freshness {
    /// Newer: apply it.
    Newer,
    /// The same version and the same bytes: nothing to do.
    Same,
}

/// Why a validly signed registry is still refused: it is not newer than the running one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RollbackError {
    /// Signed earlier than the running registry.
    #[error(
        "it is older than the registry this node runs (signed at timestamp {candidate}, the running one at {running}): a rollback"
    )]
    Older {
        /// The candidate's timestamp (Unix seconds).
        candidate: u64,
        /// The running registry's timestamp.
        running: u64,
    },
    /// The running registry's timestamp (Unix seconds) with other content.
    #[error(
        "it has the running registry's version (timestamp {0}) but other content: it was changed without signing it again, or signed twice within one second"
    )]
    SameVersionOtherContent(u64),
}

impl RollbackError {
    /// A one-word reason for logs and metrics: `rollback`.
    pub fn reason(&self) -> &'static str {
        "rollback"
    }
    /// What to do about it, for the problem's `fix`.
    pub fn fix(&self) -> &'static str {
        match self {
            Self::Older { .. } => {
                "publish the newest signed registry; to go back to older content, edit it and sign it again (a new timestamp)"
            }
            Self::SameVersionOtherContent(_) => {
                "sign the registry again (`braid registry sign` gives each signature a later timestamp)"
            }
        }
    }
}

/// Compares a candidate (its version and a digest of its bytes) with the running registry's.
pub fn freshness(
    running: Option<(u64, &str)>,
    candidate: (u64, &str),
) -> Result<Freshness, RollbackError> {
    let Some((running, running_digest)) = running else {
        return Ok(Freshness::Newer);
    };
    let (version, digest) = candidate;
    match version.cmp(&running) {
        std::cmp::Ordering::Greater => Ok(Freshness::Newer),
        std::cmp::Ordering::Equal if digest == running_digest => Ok(Freshness::Same),
        std::cmp::Ordering::Equal => Err(RollbackError::SameVersionOtherContent(version)),
        std::cmp::Ordering::Less => Err(RollbackError::Older {
            candidate: version,
            running,
        }),
    }
}

/// The `.minisig` file name for a registry file or URL: minisign's convention, the name
/// with `.minisig` appended (before any URL query or fragment).
pub fn signature_location(registry: &str) -> String {
    match registry.find(['?', '#']) {
        Some(at) if registry.contains("://") => {
            format!("{}.minisig{}", &registry[..at], &registry[at..])
        }
        _ => format!("{registry}.minisig"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Made with minisign 0.11: `minisign -G -W -p k.pub -s k.key`,
    // `printf '[]\n' > r.json`, `minisign -Sm r.json -s k.key -t 'timestamp:1700000000'`.
    const PUB: &str = "RWSaNeQHrIQwztZwOXcSS6kfVMGL3ECitizHRTY3tC+gkwVEx5CmceWf";
    const SIG: &str = "untrusted comment: signature from minisign secret key\nRUSaNeQHrIQwzm607NWjzLtdt6q4wMgUWpuU9ywu+ieL8GFlAxyuVbDx3jKOY/8a57t4/OaP+fqr5OrsRtefESWzcrLHAM0yYQQ=\ntrusted comment: timestamp:1700000000\n7nUXlSlBWNMRAEM5JAI2nuCX/L30mCq5djEjC9XjebAFboD757FJn43S3Fc3cujbQ0Jx4wNcKo2jWKoeDSLWBw==\n";

    #[test]
    fn a_minisign_signature_verifies() {
        let key = TrustedKey::parse(PUB).unwrap();
        assert_eq!(key.id.to_string(), "CE3084AC07E4359A");
        let signed = verify(
            b"[]\n",
            Some(SIG),
            "r.json.minisig",
            std::slice::from_ref(&key),
        )
        .unwrap();
        assert_eq!(signed.timestamp, 1_700_000_000);
        assert_eq!(signed.key_id, "CE3084AC07E4359A");
        // One changed byte.
        assert_eq!(
            verify(
                b"[ ]\n",
                Some(SIG),
                "r.json.minisig",
                std::slice::from_ref(&key)
            ),
            Err(SignatureError::Invalid(key.id))
        );
        // The trusted comment (the version) changed.
        let forged = SIG.replace("timestamp:1700000000", "timestamp:1800000000");
        assert_eq!(
            verify(
                b"[]\n",
                Some(&forged),
                "r.json.minisig",
                std::slice::from_ref(&key)
            ),
            Err(SignatureError::Invalid(key.id))
        );
        assert!(matches!(
            verify(b"[]\n", None, "r.json.minisig", &[key]),
            Err(SignatureError::Missing(_))
        ));
    }

    #[test]
    fn other_keys_and_bad_keys_are_refused() {
        let other =
            TrustedKey::parse("RWTR4iKb0H4bMCFLG0k3mmOi2FvI8pgJ7Ik4EwNwiGiUDpga4ox0Clct").unwrap();
        assert!(matches!(
            verify(b"[]\n", Some(SIG), "s", &[other]),
            Err(SignatureError::UnknownKey(_))
        ));
        assert!(TrustedKey::parse("not a key").is_err());
        assert!(TrustedKey::parse("AAAA").is_err());
        let whole = format!("untrusted comment: minisign public key\n{PUB}\n");
        assert_eq!(TrustedKey::parse(&whole).unwrap().text, PUB);
    }

    #[test]
    fn old_signatures_expire_only_with_a_max_age() {
        let signed = Signed {
            key_id: String::new(),
            timestamp: 1000,
            trusted_comment: String::new(),
        };
        assert_eq!(check_age(&signed, 99_999, None), Ok(()));
        assert_eq!(check_age(&signed, 1600, Some(600)), Ok(()));
        assert_eq!(
            check_age(&signed, 1601, Some(600)),
            Err(SignatureError::Expired {
                version: 1000,
                age: 601,
                max_age: 600
            })
        );
    }

    #[test]
    fn rollbacks_are_refused() {
        assert_eq!(freshness(None, (5, "a")), Ok(Freshness::Newer));
        assert_eq!(freshness(Some((5, "a")), (6, "b")), Ok(Freshness::Newer));
        assert_eq!(freshness(Some((5, "a")), (5, "a")), Ok(Freshness::Same));
        assert_eq!(
            freshness(Some((5, "a")), (5, "b")),
            Err(RollbackError::SameVersionOtherContent(5))
        );
        assert_eq!(
            freshness(Some((5, "a")), (4, "a")),
            Err(RollbackError::Older {
                candidate: 4,
                running: 5
            })
        );
    }

    #[test]
    fn timestamps_and_signature_names() {
        assert_eq!(
            comment_timestamp("timestamp:1700000000\tfile:r.json\thashed"),
            Some(1_700_000_000)
        );
        assert_eq!(comment_timestamp("file:r.json"), None);
        assert_eq!(signature_location("/etc/r.json"), "/etc/r.json.minisig");
        assert_eq!(
            signature_location("https://h/r.json?x=1"),
            "https://h/r.json.minisig?x=1"
        );
    }
}
