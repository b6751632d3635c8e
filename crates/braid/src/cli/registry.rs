//! `braid registry ...`: tools for the registry file, and reading a registry source from
//! the command line.

use anyhow::{Context, Result};
use braid_model::source::RegistrySource;
use std::path::Path;

/// The registry's text from `source` (a config's `registry` value; relative paths are
/// relative to `config_path`'s directory); `None` when a path or file:// URL names no file.
pub fn read_source(source: &str, config_path: &Path) -> Result<Option<String>> {
    let source = RegistrySource::parse(source)
        .map_err(|e| anyhow::anyhow!("registry {source}: {e}; fix: {}", e.fix()))?;
    let path = match &source {
        RegistrySource::Path(p) => braid_daemon::load::registry_path(config_path, p),
        RegistrySource::File(p) => p.into(),
        RegistrySource::Https(url) => {
            anyhow::bail!(
                "{url}: fetching a registry over HTTPS is not supported by this command yet"
            )
        }
    };
    match std::fs::read_to_string(&path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading the registry {}", path.display())),
    }
}
