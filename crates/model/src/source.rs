//! Where the registry comes from: the config's `registry` field is a path (ranet's meaning)
//! or a URL, `file://` or `https://` (braid's extension; docs/registry.md).

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
    #[error("the registry path is empty")]
    Empty,
    #[error("`{0}` is plain HTTP: anyone on the path could change the registry")]
    PlainHttp(String),
    #[error("`{0}` has a scheme braid does not fetch")]
    Scheme(String),
    #[error("`{0}` is not a file:// URL of an absolute path")]
    FileUrl(String),
    #[error("`{0}` has no host")]
    NoHost(String),
}

impl SourceError {
    /// How to fix it.
    pub fn fix(&self) -> &'static str {
        match self {
            SourceError::Empty => {
                "set it to the path of the shared registry file, or an https:// URL"
            }
            SourceError::PlainHttp(_) => {
                "serve the registry over https:// (and sign it: `braid registry sign`)"
            }
            SourceError::Scheme(_) => "use a path, a file:///absolute/path URL or an https:// URL",
            SourceError::FileUrl(_) => {
                "write file:// followed by an absolute path: file:///etc/braid/registry.json"
            }
            SourceError::NoHost(_) => {
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
