//! Reading a config and the registry it names from disk, validating both and computing the
//! plan. Every problem, I/O included, is collected and reported together.

use braid_model::problem::{Problem, Problems, Severity};
use braid_model::{Config, Registry, mesh};
use braid_plan::{Plan, Sources};
use std::path::{Path, PathBuf};

/// A config, its registry and the plan, with any warnings.
pub struct Loaded {
    /// The node's config, validated.
    pub config: Config,
    /// The file the registry was read from: the configured path, or a URL source's cache.
    pub registry_path: PathBuf,
    /// What the registry's valid signature says (when the config trusts signing keys).
    pub signed: Option<braid_model::signed::Signed>,
    /// Versions of the inputs: the first 16 hex digits of the SHA-256 of each file.
    pub config_hash: String,
    /// The registry's version, as `config_hash`.
    pub registry_hash: String,
    /// The plan computed from the config and the registry.
    pub plan: Plan,
    /// Problems that do not stop the load (each with its file, field and fix).
    pub warnings: Problems,
}

fn read(path: &Path, what: &str) -> Result<String, Problems> {
    let problem = |message: String, fix: String| {
        Problems(vec![Problem {
            severity: Severity::Error,
            file: path.display().to_string(),
            path: String::new(),
            message,
            fix,
        }])
    };
    let bytes = std::fs::read(path)
        .map_err(|e| problem(format!("cannot read the {what}: {e}"), read_fix(&e, what)))?;
    String::from_utf8(bytes).map_err(|e| {
        let (line, column) = position_of_byte(e.as_bytes(), e.utf8_error().valid_up_to());
        problem(
            format!(
                "the {what} is not UTF-8 text: invalid byte 0x{:02x} at line {line}, column {column}",
                e.as_bytes()[e.utf8_error().valid_up_to()]
            ),
            "save the file as UTF-8 (JSON text is UTF-8, RFC 8259 section 8.1); `iconv -f LATIN1 -t UTF-8` converts Latin-1".into(),
        )
    })
}

/// 1-based line and column (in characters) of byte `at` of `bytes`, which are valid UTF-8
/// before `at`.
fn position_of_byte(bytes: &[u8], at: usize) -> (usize, usize) {
    let before = String::from_utf8_lossy(&bytes[..at.min(bytes.len())]);
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

/// Other users can read the config, which holds the node's private key: a warning (as
/// OpenSSH warns about a private key file with group or other permissions).
fn private_key_exposure(config_path: &Path) -> Option<Problem> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(config_path).ok()?.permissions().mode() & 0o777;
    (mode & 0o077 != 0).then(|| Problem {
        severity: Severity::Warning,
        file: config_path.display().to_string(),
        path: "private_key".into(),
        message: format!(
            "the config holds this node's private key and other users can read it (mode {mode:04o})"
        ),
        fix: format!("chmod 600 {}", config_path.display()),
    })
}

/// How to fix a failed read: the cause named, not guessed (running out of descriptors is
/// not a permission problem).
fn read_fix(e: &std::io::Error, what: &str) -> String {
    use std::io::ErrorKind;
    if crate::fds::exhausted(e) {
        return crate::fds::exhausted_fix();
    }
    match e.kind() {
        ErrorKind::NotFound => format!("check the path; the {what} must exist"),
        ErrorKind::PermissionDenied => format!("make the {what} readable by this user"),
        ErrorKind::IsADirectory => format!("name the {what} file, not a directory"),
        _ => format!("the system refused to read the {what}: check the file and its file system"),
    }
}

/// A path from the config (the registry, the private key file), relative to the config's
/// directory when relative.
pub fn registry_path(config_path: &Path, registry: &str) -> PathBuf {
    let registry = Path::new(registry);
    if registry.is_absolute() {
        registry.to_path_buf()
    } else {
        config_path
            .parent()
            .unwrap_or(Path::new("."))
            .join(registry)
    }
}

/// Loads the config only (no registry), and the private key file it names. Warns when
/// other users can read a config that holds the key inline.
pub fn config(config_path: &Path) -> Result<(Config, Problems), Problems> {
    config_from_text(config_path, &read(config_path, "config")?)
}

/// As [`config`], from the config's `text` already read from `config_path` (a reload reads
/// the file once: its version and its settings come from the same bytes).
fn config_from_text(config_path: &Path, text: &str) -> Result<(Config, Problems), Problems> {
    let key_files = |written: &str| read_key_file(&registry_path(config_path, written));
    let (config, mut warnings) =
        Config::parse_with(&config_path.display().to_string(), text, &key_files)?;
    if config.private_key_file.is_none() {
        warnings.0.extend(private_key_exposure(config_path));
    }
    Ok((config, warnings))
}

/// Reads a private key file for the model to judge: its text and permission bits.
pub fn read_key_file(path: &Path) -> braid_model::KeyFile {
    use std::os::unix::fs::PermissionsExt;
    let shown = path.display().to_string();
    let unreadable = |e: std::io::Error| braid_model::KeyFile::Unreadable {
        path: shown.clone(),
        message: e.to_string(),
        fix: read_fix(&e, "private key file"),
    };
    let mode = match std::fs::metadata(path) {
        Ok(m) => m.permissions().mode() & 0o777,
        Err(e) => return unreadable(e),
    };
    // A key is 44 characters: 4 KiB is plenty, and a huge file is not read whole.
    let mut bytes = Vec::new();
    let read = std::fs::File::open(path)
        .and_then(|f| std::io::Read::read_to_end(&mut std::io::Read::take(f, 4096), &mut bytes));
    match read {
        // Anything not UTF-8 is simply not a key, which the model reports as bad base64.
        Ok(_) => braid_model::KeyFile::Read {
            path: shown.clone(),
            text: String::from_utf8_lossy(&bytes).into_owned(),
            mode,
        },
        Err(e) => unreadable(e),
    }
}

/// The control socket a config names, read as leniently as possible so that a broken
/// edit does not hide the running daemon: the config's `control_socket` when it is valid
/// JSON (the default when it has none), `None` when it cannot be read or parsed.
pub fn control_socket_despite_errors(config_path: &Path) -> Option<PathBuf> {
    let text = std::fs::read(config_path).ok()?;
    let text = String::from_utf8_lossy(&text);
    let doc: serde_json::Value = serde_json::from_str(&braid_model::jsonc::strip(&text)).ok()?;
    match doc.get("control_socket") {
        None | Some(serde_json::Value::Null) => {
            Some(PathBuf::from(braid_model::config::DEFAULT_CONTROL_SOCKET))
        }
        Some(v) => v.as_str().filter(|s| s.starts_with('/')).map(PathBuf::from),
    }
}

/// Loads and validates everything; `Err` holds every problem (errors and warnings).
pub fn load(config_path: &Path) -> Result<Loaded, Problems> {
    load_with_uplinks(config_path, &[])
}

/// A registry handed to the load instead of read from its file: a fetched copy, verified,
/// that is validated with the config before it is kept (see `fetch`).
#[derive(Debug, Clone)]
pub struct Candidate {
    /// The registry's text.
    pub text: String,
    /// What its valid signature says, when the config trusts signing keys.
    pub signed: Option<braid_model::signed::Signed>,
}

/// As [`load`], with the uplinks found now, which the plan turns into the paths of
/// transports with `wan: "auto"` (none found: the default route, one path; see
/// [`braid_plan::links::transport_paths`]). The config itself is kept as written.
pub fn load_with_uplinks(config_path: &Path, uplinks: &[String]) -> Result<Loaded, Problems> {
    load_inner(config_path, uplinks, None)
}

/// As [`load`] with `candidate` as the registry; problems name the configured source.
pub fn load_candidate(config_path: &Path, candidate: Candidate) -> Result<Loaded, Problems> {
    load_inner(config_path, &[], Some(candidate))
}

fn load_inner(
    config_path: &Path,
    uplinks: &[String],
    candidate: Option<Candidate>,
) -> Result<Loaded, Problems> {
    let config_file = config_path.display().to_string();
    let text = read(config_path, "config")?;
    let config_hash = digest(&text);
    let (config, mut problems) = match config_from_text(config_path, &text) {
        Ok(loaded) => loaded,
        Err(mut problems) => {
            problems.extend(registry_problems_despite_config_errors(config_path, &text));
            return Err(problems);
        }
    };
    // What this build cannot run: the same refusals `braid run` and `braid up` make.
    problems.extend(braid_model::support::unsupported(&config, &config_file));
    let location = crate::registry_file::locate(config_path, &config);
    let registry_path = location.file.clone();
    let registry_file = match &candidate {
        Some(_) => location.source.clone(),
        None => registry_path.display().to_string(),
    };
    let verified = registry_text(&location, &config, candidate);
    let registry = verified.and_then(|v| {
        Registry::parse(&registry_file, &v.text).map(|(r, w)| (r, w, digest(&v.text), v.signed))
    });
    let (registry, registry_hash, signed) = match registry {
        Ok((registry, warnings, hash, signed)) => {
            problems.extend(warnings);
            (registry, hash, signed)
        }
        Err(errors) => {
            problems.extend(errors);
            return Err(problems);
        }
    };
    problems.extend(mesh::check(
        &config,
        &config_file,
        &registry,
        &registry_file,
    ));
    let sources = Sources {
        config: &config_file,
        registry: &registry_file,
    };
    match braid_plan::plan_with_uplinks(&config, &registry, sources, uplinks) {
        Ok(plan) if !problems.has_errors() => Ok(Loaded {
            config,
            registry_path,
            signed,
            config_hash,
            registry_hash,
            plan,
            warnings: problems,
        }),
        Ok(_) => Err(problems),
        Err(errors) => {
            problems.extend(errors);
            Err(problems)
        }
    }
}

/// The registry's text and what its signature says: the `candidate` when one is handed
/// in (a fetched copy, verified already), else the file at `location` (the configured
/// path, or a URL source's cache), verified.
fn registry_text(
    location: &crate::registry_file::Location,
    config: &Config,
    candidate: Option<Candidate>,
) -> Result<crate::registry_file::Verified, Problems> {
    match candidate {
        Some(c) => Ok(crate::registry_file::Verified {
            text: c.text,
            signed: c.signed,
        }),
        None if location.cached && !location.file.exists() => {
            Err(Problems(vec![crate::registry_file::not_fetched_yet(
                location,
            )]))
        }
        None => read(
            &location.file,
            if location.cached {
                "registry (the last good copy of the config's `registry` URL)"
            } else {
                "registry (named by the config's `registry` field)"
            },
        )
        .and_then(|text| crate::registry_file::verify_at(location, config, text)),
    }
}

/// When the config has errors, the registry is still checked if the config names it, so
/// one run reports the problems of both files.
fn registry_problems_despite_config_errors(config_path: &Path, text: &str) -> Problems {
    let doc = serde_json::from_str::<serde_json::Value>(&braid_model::jsonc::strip(text));
    let Some(registry) = doc.ok().and_then(|d| {
        d.get("registry")
            .and_then(|r| r.as_str())
            .map(str::to_string)
    }) else {
        return Problems::default();
    };
    let path = registry_path(config_path, &registry);
    match std::fs::read_to_string(&path) {
        Ok(text) => match Registry::parse(&path.display().to_string(), &text) {
            Ok((_, warnings)) => warnings,
            Err(problems) => problems,
        },
        Err(_) => Problems::default(),
    }
}

/// A short version of an input: the first 16 hex digits of its SHA-256.
pub fn digest(text: &str) -> String {
    use sha2::Digest as _;
    sha2::Sha256::digest(text.as_bytes())
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_that_is_not_utf8_gets_an_encoding_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("registry.json");
        std::fs::write(&path, b"[\n  {\"name\": \"caf\xe9\"}\n]").unwrap();
        let text = read(&path, "registry").unwrap_err().to_string();
        assert!(
            text.contains("the registry is not UTF-8 text: invalid byte 0xe9 at line 2, column 16")
                && text.contains("save the file as UTF-8")
                && !text.contains("readable"),
            "{text}"
        );
    }

    #[test]
    fn a_config_others_can_read_is_warned_about() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        std::fs::write(&path, "{}").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let warning = private_key_exposure(&path).unwrap().to_string();
        assert!(
            warning.starts_with("warning: ")
                && warning.contains("private_key: the config holds this node's private key and other users can read it (mode 0644)")
                && warning.contains("fix: chmod 600"),
            "{warning}"
        );
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(private_key_exposure(&path).is_none());
    }

    #[test]
    fn the_control_socket_is_found_in_a_config_with_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        // Invalid as a config (a bad key, an unknown field), still readable JSON.
        std::fs::write(&path, "{\"private_key\": 1, \"colour\": 2, // a comment\n \"control_socket\": \"/run/x/braid.sock\",}").unwrap();
        assert_eq!(
            control_socket_despite_errors(&path),
            Some(PathBuf::from("/run/x/braid.sock"))
        );
        std::fs::write(&path, "{\"registry\": \"r.json\"}").unwrap();
        assert_eq!(
            control_socket_despite_errors(&path),
            Some(PathBuf::from("/run/braid/braid.sock"))
        );
        std::fs::write(&path, "{\"registry\": ").unwrap();
        assert_eq!(control_socket_despite_errors(&path), None);
    }

    #[test]
    fn read_errors_name_their_real_cause() {
        let emfile = std::io::Error::from_raw_os_error(libc::EMFILE);
        let fix = read_fix(&emfile, "config");
        assert!(
            fix.contains("out of file descriptors") && !fix.contains("readable"),
            "{fix}"
        );
        let denied = std::io::Error::from_raw_os_error(libc::EACCES);
        assert_eq!(
            read_fix(&denied, "config"),
            "make the config readable by this user"
        );
    }
}
