//! Where the registry comes from: the config's `registry` field is a path (ranet's meaning)
//! or a URL, `file://` or `https://` (braid's extension; docs/registry.md).

use crate::problem::Collector;
use crate::read;
use crate::signed::TrustedKey;
use serde_json::{Map, Value};
use std::fmt;

/// The registry's source, as the config's `registry` field names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegistrySource {
    /// A path as written; relative paths are relative to the config's directory.
    Path(String),
    /// `file:///abs/path`: an absolute path, fetched like a URL (cached, refreshed).
    File(String),
    /// `https://host[:port]/path`, fetched over TLS.
    Https(String),
}

/// Why a `registry` value is not a usable source.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SourceError {
    /// `registry` is empty.
    #[error("the registry path is empty")]
    Empty,
    /// An `http://` URL (as written).
    #[error("`{0}` is plain HTTP: anyone on the path could change the registry")]
    PlainHttp(String),
    /// A URL scheme other than `file` and `https` (as written).
    #[error("`{0}` has a scheme braid does not fetch")]
    Scheme(String),
    /// A `file:` URL without an absolute path (as written).
    #[error("`{0}` is not a file:// URL of an absolute path")]
    FileUrl(String),
    /// An `https://` URL without a host (as written).
    #[error("`{0}` has no host")]
    NoHost(String),
}

impl SourceError {
    /// How to fix it.
    pub fn fix(&self) -> &'static str {
        match self {
            Self::Empty => "set it to the path of the shared registry file, or an https:// URL",
            Self::PlainHttp(_) => {
                "serve the registry over https:// (and sign it: `braid registry sign`)"
            }
            Self::Scheme(_) => "use a path, a file:///absolute/path URL or an https:// URL",
            Self::FileUrl(_) => {
                "write file:// followed by an absolute path: file:///etc/braid/registry.json"
            }
            Self::NoHost(_) => {
                "write https://HOST/PATH, e.g. https://reg.example.net/registry.json"
            }
        }
    }
}

impl RegistrySource {
    /// Classifies the config's `registry` value. Anything with `://` is a URL.
    pub fn parse(text: &str) -> Result<Self, SourceError> {
        if text.is_empty() {
            return Err(SourceError::Empty);
        }
        let Some((scheme, rest)) = text.split_once("://") else {
            return Ok(Self::Path(text.to_string()));
        };
        match scheme.to_ascii_lowercase().as_str() {
            "file" if rest.starts_with('/') => Ok(Self::File(rest.to_string())),
            "file" => Err(SourceError::FileUrl(text.to_string())),
            "https" if rest.split('/').next().is_some_and(|h| !h.is_empty()) => {
                Ok(Self::Https(text.to_string()))
            }
            "https" => Err(SourceError::NoHost(text.to_string())),
            "http" => Err(SourceError::PlainHttp(text.to_string())),
            _ => Err(SourceError::Scheme(text.to_string())),
        }
    }

    /// True for the sources fetched on a period with a cached copy (the URLs).
    pub fn is_url(&self) -> bool {
        !matches!(self, Self::Path(_))
    }
}

impl fmt::Display for RegistrySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Path(p) => f.write_str(p),
            Self::File(p) => write!(f, "file://{p}"),
            Self::Https(u) => f.write_str(u),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_are_classified() {
        assert_eq!(
            RegistrySource::parse("registry.json"),
            Ok(RegistrySource::Path("registry.json".into()))
        );
        assert_eq!(
            RegistrySource::parse("file:///etc/braid/r.json"),
            Ok(RegistrySource::File("/etc/braid/r.json".into()))
        );
        assert_eq!(
            RegistrySource::parse("https://reg.example.net/r.json"),
            Ok(RegistrySource::Https(
                "https://reg.example.net/r.json".into()
            ))
        );
        assert!(matches!(
            RegistrySource::parse("http://reg.example.net/r.json"),
            Err(SourceError::PlainHttp(_))
        ));
        assert!(matches!(
            RegistrySource::parse("file://r.json"),
            Err(SourceError::FileUrl(_))
        ));
        assert!(matches!(
            RegistrySource::parse("ftp://x/r.json"),
            Err(SourceError::Scheme(_))
        ));
        assert!(matches!(
            RegistrySource::parse("https:///r.json"),
            Err(SourceError::NoHost(_))
        ));
    }
}

/// How a node gets and trusts its registry: the config's `registry_*` fields (extensions;
/// docs/config.md).
#[derive(Debug, Clone, PartialEq)]
pub struct RegistryOptions {
    /// Public keys trusted to sign the registry (`registry_keys`); when any is listed, an
    /// unsigned or otherwise signed registry is refused.
    pub keys: Vec<TrustedKey>,
    /// Seconds between fetches of a URL source (`registry_refresh`).
    pub refresh: u32,
    /// A signed registry older than this many seconds is refused (`registry_max_age`);
    /// `None`: no limit.
    pub max_age: Option<u64>,
    /// PEM file of the CA certificates an https:// source must chain to
    /// (`registry_ca_file`); `None`: the system's roots.
    pub ca_file: Option<String>,
    /// Where the last good copy of a URL source is kept (`registry_cache`); `None`: the
    /// default beside the config (see [`default_cache`]).
    pub cache: Option<String>,
}

/// The default `registry_refresh`, seconds.
pub const DEFAULT_REFRESH: u32 = 300;
/// The bounds of `registry_refresh`, seconds.
pub const REFRESH_MIN: u32 = 5;
/// The largest `registry_refresh`: one day.
pub const REFRESH_MAX: u32 = 86_400;

impl Default for RegistryOptions {
    fn default() -> Self {
        Self {
            keys: Vec::new(),
            refresh: DEFAULT_REFRESH,
            max_age: None,
            ca_file: None,
            cache: None,
        }
    }
}

/// The default cache of a config at `config_file` (a path as given): beside it, named
/// after it: `/etc/braid/node.json` keeps `/etc/braid/node.registry-cache.json`.
pub fn default_cache(config_file: &str) -> String {
    let (dir, name) = match config_file.rsplit_once('/') {
        Some((dir, name)) => (format!("{dir}/"), name),
        None => (String::new(), config_file),
    };
    let stem = name.strip_suffix(".json").unwrap_or(name);
    format!("{dir}{stem}.registry-cache.json")
}

/// The config's `registry_*` fields (in `map`, the config's top object); `None` after
/// recording a problem with any of them.
pub(crate) fn read_options(c: &mut Collector, map: &Map<String, Value>) -> Option<RegistryOptions> {
    let keys = read::optional(c, map, "", "registry_keys", Vec::new(), read_keys);
    let refresh = read::optional_integer(
        c,
        map,
        "",
        "registry_refresh",
        DEFAULT_REFRESH,
        REFRESH_MIN..=REFRESH_MAX,
        "use seconds between fetches, 5..=86400 (300 is the default)",
    );
    let max_age = read::optional(c, map, "", "registry_max_age", None, |c, p, v| {
        let fix = "use seconds, at least 60 (e.g. 604800 for a week), and sign the registry more often than that";
        read::integer(c, p, v, 60, u64::from(u32::MAX), fix).map(Some)
    });
    let ca_file = read::optional(c, map, "", "registry_ca_file", None, read_file_name);
    let cache = read::optional(c, map, "", "registry_cache", None, read_file_name);
    Some(RegistryOptions {
        keys: keys?,
        refresh: refresh?,
        max_age: max_age?,
        ca_file: ca_file?,
        cache: cache?,
    })
}

/// `registry_keys` at `path`: minisign public keys, each listed once. Every entry is
/// checked; `None` when any is bad.
fn read_keys(c: &mut Collector, path: &str, value: &Value) -> Option<Vec<TrustedKey>> {
    let items = read::array(
        c,
        path,
        value,
        "write the trusted keys as a list: [\"RW...\"]",
    )?;
    let mut ok = true;
    let mut keys: Vec<TrustedKey> = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let path = read::index_path(path, i);
        let Some(text) = read::string(c, &path, item, "write the key as a string") else {
            ok = false;
            continue;
        };
        match TrustedKey::parse(&text) {
            Ok(key) if keys.iter().any(|k| k.id == key.id) => {
                c.error(
                    &path,
                    format!("key {} is listed twice", key.id),
                    "list each key once",
                );
                ok = false;
            }
            Ok(key) => keys.push(key),
            Err(e) => {
                c.error(&path, e, "copy the second line of the signing key's .pub file (`braid registry keygen` or `minisign -G` writes it)");
                ok = false;
            }
        }
    }
    ok.then_some(keys)
}

/// A file named by `registry_ca_file` or `registry_cache` at `path`: a non-empty path.
fn read_file_name(c: &mut Collector, path: &str, value: &Value) -> Option<Option<String>> {
    let name = read::string(c, path, value, "write a path as a string")?;
    if name.is_empty() {
        c.error(
            path,
            "the path is empty",
            "name a file, or remove the field",
        );
        return None;
    }
    Some(Some(name))
}
