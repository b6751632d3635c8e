//! Which file holds the registry a node runs, and its signature: the registry path itself
//! (with `<path>.minisig` beside it), or for a URL source the last good copy that the
//! fetcher (`fetch`) keeps on disk (`registry_cache`, with its `.minisig`). Reading it
//! verifies the signature when the config trusts signing keys.

use braid_model::Config;
use braid_model::problem::{Problem, Problems, Severity};
use braid_model::signed::{self, Signed};
use braid_model::source::{self, RegistrySource};
use std::path::{Path, PathBuf};

/// Where the registry a node runs is read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// The registry file: the configured path, or the cache of a URL source.
    pub file: PathBuf,
    /// Its minisign signature: `<file>.minisig`.
    pub signature: PathBuf,
    /// The source as configured (path or URL), for messages.
    pub source: String,
    /// True when `file` is the cache of a URL source.
    pub cached: bool,
}

/// The cache file of a URL source: `registry_cache`, or the default beside the config.
pub fn cache_path(config_path: &Path, config: &Config) -> PathBuf {
    match &config.registry_options.cache {
        Some(cache) => crate::load::registry_path(config_path, cache),
        None => PathBuf::from(source::default_cache(&config_path.display().to_string())),
    }
}

/// Where `config` (read from `config_path`) finds its registry.
pub fn locate(config_path: &Path, config: &Config) -> Location {
    let (file, cached) = match &config.registry_source {
        RegistrySource::Path(p) => (crate::load::registry_path(config_path, p), false),
        RegistrySource::File(_) | RegistrySource::Https(_) => {
            (cache_path(config_path, config), true)
        }
    };
    Location {
        signature: PathBuf::from(signed::signature_location(&file.display().to_string())),
        file,
        source: config.registry.clone(),
        cached,
    }
}

/// A registry's text and, when the config trusts keys, what its valid signature says.
#[derive(Debug, Clone)]
pub struct Verified {
    /// The registry's text.
    pub text: String,
    /// What its valid signature says, when the config trusts signing keys.
    pub signed: Option<Signed>,
}

/// The signature file's text, `None` when there is none.
fn read_signature(path: &Path) -> Result<Option<String>, std::io::Error> {
    match std::fs::read(path) {
        Ok(bytes) => Ok(Some(String::from_utf8_lossy(&bytes).into_owned())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Checks `text`'s signature (`signature`, found at `where_`) against the config's trusted
/// keys; no keys: nothing to check. The refusal is a problem of `file`.
pub fn check_signature(
    config: &Config,
    file: &str,
    text: &str,
    signature: Option<&str>,
    where_: &str,
) -> Result<Option<Signed>, Problem> {
    let keys = &config.registry_options.keys;
    if keys.is_empty() {
        return Ok(None);
    }
    signed::verify(text.as_bytes(), signature, where_, keys)
        .and_then(|s| {
            signed::check_age(&s, unix_now(), config.registry_options.max_age).map(|()| s)
        })
        .map(Some)
        .map_err(|e| Problem {
            severity: Severity::Error,
            file: file.to_string(),
            path: String::new(),
            message: format!("{REFUSED}{e}"),
            fix: e.fix(),
        })
}

/// Reads the registry at `location` (`text` is the file's text, read by the caller) and
/// verifies its signature.
pub fn verify_at(location: &Location, config: &Config, text: String) -> Result<Verified, Problems> {
    let signed = if config.registry_options.keys.is_empty() {
        None
    } else {
        let signature = read_signature(&location.signature).map_err(|e| {
            Problems(vec![Problem {
                severity: Severity::Error,
                file: location.signature.display().to_string(),
                path: String::new(),
                message: format!("cannot read the registry's signature: {e}"),
                fix: "make the .minisig file beside the registry readable by this user".into(),
            }])
        })?;
        check_signature(
            config,
            &location.file.display().to_string(),
            &text,
            signature.as_deref(),
            &location.signature.display().to_string(),
        )
        .map_err(|p| Problems(vec![p]))?
    };
    Ok(Verified { text, signed })
}

/// The problem of a URL source that has no cached copy yet.
pub fn not_fetched_yet(location: &Location) -> Problem {
    Problem {
        severity: Severity::Error,
        file: location.file.display().to_string(),
        path: String::new(),
        message: format!(
            "no copy of the registry from {} has been fetched yet (this file keeps the last good one)",
            location.source
        ),
        fix: "`braid run` fetches it at start: make the source reachable and validly signed (the log and `braid status` say why a fetch was refused), or set registry_cache to an existing copy".into(),
    }
}

/// Writes `text` and its `signature` as the cache at `location`, each atomically (a
/// temporary file renamed over it), the signature first: a reader that sees the new
/// registry sees its signature. Mode 0644: the registry is public within the mesh.
pub fn write_cache(
    location: &Location,
    text: &str,
    signature: Option<&str>,
) -> std::io::Result<()> {
    if let Some(dir) = location.file.parent() {
        std::fs::create_dir_all(dir)?;
    }
    match signature {
        Some(sig) => write_atomically(&location.signature, sig.as_bytes())?,
        None => match std::fs::remove_file(&location.signature) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            _ => {}
        },
    }
    write_atomically(&location.file, text.as_bytes())
}

fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".tmp{}", std::process::id()));
    let tmp = PathBuf::from(tmp);
    let result = (|| {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// The cached copy's text and signature, `None` when there is no cache yet.
pub fn read_cache(location: &Location) -> Option<(String, Option<String>)> {
    let text = std::fs::read_to_string(&location.file).ok()?;
    let signature = read_signature(&location.signature).ok().flatten();
    Some((text, signature))
}

/// A refusal when `candidate`'s signed registry is older than `running`'s, or has its
/// version with other content (a rollback; `signed::freshness`). Both must be signed.
pub fn rollback(
    running: Option<&crate::load::Loaded>,
    candidate: &crate::load::Loaded,
) -> Option<Problem> {
    let running = running?;
    let (now, new) = (running.signed.as_ref()?, candidate.signed.as_ref()?);
    signed::freshness(
        Some((now.timestamp, &running.registry_hash)),
        (new.timestamp, &candidate.registry_hash),
    )
    .err()
    .map(|e| Problem {
        severity: Severity::Error,
        file: candidate.registry_path.display().to_string(),
        path: String::new(),
        message: format!("{REFUSED}{e}"),
        fix: e.fix().into(),
    })
}

/// Every refusal message starts with this, so that one place tells refusals from other
/// problems (see [`refusal_reason`]).
pub const REFUSED: &str = "registry refused: ";

/// The metrics reason of a refusal problem (`unsigned`, `bad_signature`, `unknown_key`,
/// `rollback`, ...), `None` for other problems.
pub fn refusal_reason(problem: &Problem) -> Option<&'static str> {
    let rest = problem.message.strip_prefix(REFUSED)?;
    const REASONS: &[(&str, &str)] = &[
        ("it is not signed", "unsigned"),
        ("its signature is not in minisign", "malformed_signature"),
        ("its signature is a legacy", "malformed_signature"),
        ("it is signed with key", "unknown_key"),
        ("its signature does not match", "bad_signature"),
        (
            "its signature's trusted comment has no timestamp",
            "no_timestamp",
        ),
        ("it expired", "expired"),
        ("it is older than", "rollback"),
        ("it has the running registry's version", "rollback"),
    ];
    Some(
        REASONS
            .iter()
            .find(|(start, _)| rest.starts_with(start))
            .map_or("invalid", |(_, reason)| reason),
    )
}

/// What the node knows about its registry beyond the running version: refusals (signature,
/// rollback, content) and, for a URL source, the fetcher's state. Shared by the fetcher,
/// the reconciler and the status document (docs/status-json.md, `registry`).
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct RegistryState {
    /// Refusals since start, by reason (`unsigned`, `malformed_signature`, `unknown_key`,
    /// `bad_signature`, `no_timestamp`, `expired`, `rollback`, `invalid`, `too_large`).
    pub refusals: std::collections::BTreeMap<String, u64>,
    /// The last refusal: what was refused and why, and when (Unix seconds).
    pub last_refusal: Option<String>,
    /// When the last refusal happened (Unix seconds).
    pub last_refusal_at: Option<u64>,
    /// A URL source's fetcher; `None` for a path.
    pub fetch: Option<crate::fetch::FetchState>,
}

impl RegistryState {
    /// Records every refusal among `problems` (at `now`, Unix seconds); true when there
    /// was one.
    pub fn note_refusals(&mut self, problems: &Problems, now: u64) -> bool {
        let mut any = false;
        for problem in &problems.0 {
            if let Some(reason) = refusal_reason(problem) {
                self.refuse(reason, problem.to_string(), now);
                any = true;
            }
        }
        any
    }

    /// Records one refusal.
    pub fn refuse(&mut self, reason: &str, message: String, now: u64) {
        *self.refusals.entry(reason.to_string()).or_default() += 1;
        self.last_refusal = Some(message);
        self.last_refusal_at = Some(now);
    }
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;
    use braid_model::signed::{KeyId, RollbackError, SignatureError};

    /// Every refusal the model can make is counted under its own reason, not `invalid`.
    #[test]
    fn every_refusal_has_its_reason() {
        let id = KeyId([1; 8]);
        let signature_errors = [
            SignatureError::Missing("r.minisig".into()),
            SignatureError::Malformed("x".into()),
            SignatureError::Legacy,
            SignatureError::UnknownKey(id),
            SignatureError::Invalid(id),
            SignatureError::NoTimestamp("c".into()),
            SignatureError::Expired {
                version: 1,
                age: 2,
                max_age: 1,
            },
        ];
        let problem = |message: String| Problem {
            severity: Severity::Error,
            file: "r.json".into(),
            path: String::new(),
            message,
            fix: String::new(),
        };
        for e in signature_errors {
            let p = problem(format!("{REFUSED}{e}"));
            assert_eq!(refusal_reason(&p), Some(e.reason()), "{e}");
        }
        for e in [
            RollbackError::Older {
                candidate: 1,
                running: 2,
            },
            RollbackError::SameVersionOtherContent(1),
        ] {
            let p = problem(format!("{REFUSED}{e}"));
            assert_eq!(refusal_reason(&p), Some(e.reason()), "{e}");
        }
        assert_eq!(refusal_reason(&problem("other".into())), None);
    }
}
