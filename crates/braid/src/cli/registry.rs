//! `braid registry keygen | sign | verify`: minisign signing keys and signatures for the
//! registry (docs/registry.md, "Signed registries"); and reading a registry source from
//! the command line.

use anyhow::{Context, Result, anyhow, bail};
use braid_model::registry_edit::{self, EditError, Selector};
use braid_model::signed::{self, TrustedKey};
use braid_model::source::RegistrySource;
use std::path::{Path, PathBuf};

/// The environment variable that gives the secret key's password without a prompt.
pub(crate) const PASSWORD_VAR: &str = "BRAID_REGISTRY_PASSWORD";

#[derive(clap::Subcommand)]
pub(crate) enum RegistryCommand {
    /// Make a signing key pair (minisign format): a secret key file (0600) and a public key.
    #[command(
        after_help = "Examples:\n  braid registry keygen -s /root/braid-registry.key -p braid-registry.pub\n  braid registry keygen --no-password -s k.key -p k.pub\n\nPrints the public key line for the configs' registry_keys. The files work with minisign too\n(`minisign -Sm registry.json -s KEY`, `minisign -Vm registry.json -p PUB`)."
    )]
    Keygen {
        /// The secret key file to write (mode 0600; refused if it exists).
        #[arg(short, long, value_name = "PATH", default_value = "braid-registry.key")]
        secret_key: PathBuf,
        /// The public key file to write (refused if it exists).
        #[arg(short, long, value_name = "PATH", default_value = "braid-registry.pub")]
        public_key: PathBuf,
        /// Leave the secret key unencrypted (like minisign -W); else it is encrypted with a
        /// password (BRAID_REGISTRY_PASSWORD, else asked on the terminal).
        #[arg(long)]
        no_password: bool,
    },
    /// Sign a registry file: writes REGISTRY.minisig (minisign format, a newer timestamp).
    #[command(
        after_help = "Example:\n  braid registry sign -s /root/braid-registry.key registry.json\n\nRefuses a registry with errors. The trusted comment is minisign's: timestamp:<unix>\\tfile:<name>\\thashed,\nthe timestamp later than that of the signature it replaces (the registry's version)."
    )]
    Sign {
        /// The secret key (from `braid registry keygen` or `minisign -G`).
        #[arg(short, long, value_name = "PATH")]
        secret_key: PathBuf,
        /// The registry file.
        registry: PathBuf,
    },
    /// Check a registry's signature and content.
    #[command(
        after_help = "Examples:\n  braid registry verify -P RWQ... registry.json\n  braid registry verify -p braid-registry.pub registry.json\n  braid registry verify -c /etc/braid/config.json registry.json   # the config's registry_keys\n\nExit status 0 when the signature is valid with one of the keys and the registry has no errors."
    )]
    Verify {
        /// A trusted public key (the base64 line); repeatable.
        #[arg(short = 'P', long = "key", value_name = "KEY")]
        keys: Vec<String>,
        /// A trusted public key file (.pub); repeatable.
        #[arg(short = 'p', long = "public-key", value_name = "PATH")]
        public_keys: Vec<PathBuf>,
        /// Trust the keys in this config's registry_keys.
        #[arg(short, long, value_name = "CONFIG")]
        config: Option<PathBuf>,
        /// The signature file [default: REGISTRY.minisig].
        #[arg(short = 'x', long, value_name = "PATH")]
        signature: Option<PathBuf>,
        /// The registry file.
        registry: PathBuf,
    },
    /// Append a node's entry (from `braid meta` or `braid init`) to a registry file.
    #[command(
        after_help = "Examples:\n  braid meta -c node.json | braid registry add-node registry.json\n  braid registry add-node registry.json n6.entry.json --sign /root/braid-registry.key\n\nRefuses (and writes nothing) when the result does not validate: a public key, send port or index\nalready used, a bad field. Comments and layout of the file are kept."
    )]
    AddNode {
        /// The registry file to edit.
        registry: PathBuf,
        /// The entry (JSON, comments allowed) [default: stdin].
        entry: Option<PathBuf>,
        /// Sign the edited registry with this secret key (as `braid registry sign`).
        #[arg(long, value_name = "SECRET_KEY")]
        sign: Option<PathBuf>,
    },
    /// Remove a node from a registry file, by public key or name.
    #[command(
        after_help = "Examples:\n  braid registry remove-node registry.json --name n6\n  braid registry remove-node registry.json --key sZp4uL3r...= --sign /root/braid-registry.key\n\nComments on the node's own lines go with it; the rest of the file is kept."
    )]
    RemoveNode {
        /// The registry file to edit.
        registry: PathBuf,
        /// The node's public key (base64).
        #[arg(
            long,
            value_name = "PUBLIC_KEY",
            conflicts_with = "name",
            required_unless_present = "name"
        )]
        key: Option<String>,
        /// The node's name.
        #[arg(long)]
        name: Option<String>,
        /// Sign the edited registry with this secret key (as `braid registry sign`).
        #[arg(long, value_name = "SECRET_KEY")]
        sign: Option<PathBuf>,
    },
}

pub(crate) fn run(command: RegistryCommand) -> Result<bool> {
    match command {
        RegistryCommand::Keygen {
            secret_key,
            public_key,
            no_password,
        } => keygen(&secret_key, &public_key, no_password),
        RegistryCommand::Sign {
            secret_key,
            registry,
        } => sign(&secret_key, &registry),
        RegistryCommand::Verify {
            keys,
            public_keys,
            config,
            signature,
            registry,
        } => verify(&keys, &public_keys, config.as_deref(), signature, &registry),
        RegistryCommand::AddNode {
            registry,
            entry,
            sign,
        } => add_node(&registry, entry.as_deref(), sign.as_deref()),
        RegistryCommand::RemoveNode {
            registry,
            key,
            name,
            sign,
        } => {
            let which = match (key, name) {
                (Some(key), _) => Selector::Key(key),
                (None, Some(name)) => Selector::Name(name),
                (None, None) => bail!("give --key or --name"),
            };
            remove_node(&registry, &which, sign.as_deref())
        }
    }
}

fn read_registry(path: &Path) -> Result<String> {
    std::fs::read_to_string(path)
        .with_context(|| format!("reading the registry {}", path.display()))
}

/// Replaces `path` with `text` atomically, keeping its permissions.
fn replace(path: &Path, text: &str) -> Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    std::fs::write(&tmp, text)
        .and_then(|()| match std::fs::metadata(path) {
            Ok(m) => std::fs::set_permissions(&tmp, m.permissions()),
            Err(_) => Ok(()),
        })
        .and_then(|()| std::fs::rename(&tmp, path))
        .with_context(|| format!("writing {}", path.display()))
}

/// After an edit: sign with `key`, or say that the old signature no longer matches.
fn after_edit(registry: &Path, key: Option<&Path>) -> Result<bool> {
    match key {
        Some(key) => sign(key, registry),
        None => {
            let sig = signed::signature_location(&registry.display().to_string());
            if Path::new(&sig).exists() {
                eprintln!(
                    "warning: {sig} no longer matches the registry: nodes that check signatures refuse it until you sign it: braid registry sign -s SECRET_KEY {}",
                    registry.display()
                );
            }
            Ok(true)
        }
    }
}

fn edit_refused(registry: &Path, e: EditError) -> Result<bool> {
    match e {
        EditError::Invalid(problems) => eprintln!("{problems}"),
        other => eprintln!("error: {}: {other}", registry.display()),
    }
    eprintln!("{}: unchanged", registry.display());
    Ok(false)
}

fn add_node(registry: &Path, entry: Option<&Path>, key: Option<&Path>) -> Result<bool> {
    let entry_text = match entry {
        Some(path) if path != Path::new("-") => std::fs::read_to_string(path)
            .with_context(|| format!("reading the entry {}", path.display()))?,
        _ => {
            let mut text = String::new();
            std::io::Read::read_to_string(&mut std::io::stdin(), &mut text)
                .context("reading the entry from stdin")?;
            text
        }
    };
    let entry: serde_json::Value = serde_json::from_str(&braid_model::jsonc::strip(&entry_text))
        .map_err(|e| {
            anyhow!("the entry is not JSON: {e}; give the output of `braid meta -c CONFIG`")
        })?;
    let text = read_registry(registry)?;
    let edited = match registry_edit::add_node(&registry.display().to_string(), &text, &entry) {
        Ok(edited) => edited,
        Err(e) => return edit_refused(registry, e),
    };
    replace(registry, &edited)?;
    eprintln!(
        "added {} to {}",
        entry["name"]
            .as_str()
            .or(entry["public_key"].as_str())
            .unwrap_or("the node"),
        registry.display()
    );
    after_edit(registry, key)
}

fn remove_node(registry: &Path, which: &Selector, key: Option<&Path>) -> Result<bool> {
    let text = read_registry(registry)?;
    let (edited, label) =
        match registry_edit::remove_node(&registry.display().to_string(), &text, which) {
            Ok(done) => done,
            Err(e) => return edit_refused(registry, e),
        };
    replace(registry, &edited)?;
    eprintln!("removed {label} from {}", registry.display());
    after_edit(registry, key)
}

fn keygen(secret: &Path, public: &Path, no_password: bool) -> Result<bool> {
    for path in [secret, public] {
        if path.symlink_metadata().is_ok() {
            bail!(
                "{}: exists; braid registry keygen does not overwrite keys: choose another path",
                path.display()
            );
        }
    }
    let pair = if no_password {
        minisign::KeyPair::generate_unencrypted_keypair()
    } else {
        minisign::KeyPair::generate_encrypted_keypair(std::env::var(PASSWORD_VAR).ok())
    }
    .map_err(|e| anyhow!("generating a key pair: {e}"))?;
    let secret_text = pair
        .sk
        .to_box(Some("braid registry signing key (minisign format)"))
        .map_err(|e| anyhow!("encoding the secret key: {e}"))?
        .into_string();
    let public_text = pair
        .pk
        .to_box()
        .map_err(|e| anyhow!("encoding the public key: {e}"))?
        .into_string();
    super::init::write_new(secret, secret_text.as_bytes(), 0o600)?;
    if let Err(e) = super::init::write_new(public, public_text.as_bytes(), 0o644) {
        let _ = std::fs::remove_file(secret);
        return Err(e);
    }
    let key = TrustedKey::parse(&public_text).map_err(|e| anyhow!("{e}"))?;
    eprintln!(
        "wrote {} (secret, 0600: keep it offline) and {}; key ID {}. List this public key in every node's registry_keys:",
        secret.display(),
        public.display(),
        key.id
    );
    println!("{}", key.text);
    Ok(true)
}

/// Loads a minisign secret key file: unencrypted keys directly, encrypted ones with the
/// password from [`PASSWORD_VAR`] or asked on the terminal.
fn load_secret(path: &Path) -> Result<minisign::SecretKey> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the secret key {}", path.display()))?;
    let sk_box = minisign::SecretKeyBox::from_string(&text)
        .map_err(|e| anyhow!("{}: not a minisign secret key: {e}", path.display()))?;
    // The key's second line: algorithm (2 bytes), then the KDF algorithm: 0,0 when not
    // encrypted (minisign's format).
    let encrypted = text
        .lines()
        .nth(1)
        .and_then(|l| {
            base64::Engine::decode(&base64::engine::general_purpose::STANDARD, l.trim()).ok()
        })
        .is_some_and(|b| b.get(2..4) != Some(&[0, 0]));
    let key = if encrypted {
        let password = std::env::var(PASSWORD_VAR).ok();
        minisign::SecretKey::from_box(sk_box, password)
    } else {
        minisign::SecretKey::from_unencrypted_box(with_checksum(&text).into())
    };
    key.map_err(|e| anyhow!("{}: {e}", path.display()))
}

/// minisign (`minisign -G -W`, reference minisign.c) leaves the checksum of an unencrypted
/// secret key zero and never checks it; the minisign crate checks it. Fills it in
/// (BLAKE2b-256 of sig_alg, key number and secret key, as minisign.c's seckey_compute_chk)
/// so both tools' unencrypted keys load. Layout of the 158 bytes: sig_alg 2, kdf_alg 2,
/// chk_alg 2, salt 32, opslimit 8, memlimit 8, key number 8, secret key 64, checksum 32.
fn with_checksum(text: &str) -> String {
    use base64::Engine as _;
    use blake2::Digest as _;
    let engine = base64::engine::general_purpose::STANDARD;
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    let Some(mut bytes) = lines.get(1).and_then(|l| engine.decode(l.trim()).ok()) else {
        return text.to_string();
    };
    if bytes.len() != 158 || bytes[126..].iter().any(|b| *b != 0) {
        return text.to_string();
    }
    let mut hash = blake2::Blake2b::<blake2::digest::consts::U32>::new();
    hash.update(&bytes[0..2]);
    hash.update(&bytes[54..126]);
    bytes[126..].copy_from_slice(&hash.finalize());
    lines[1] = engine.encode(&bytes);
    lines.join("\n") + "\n"
}

fn sign(secret: &Path, registry: &Path) -> Result<bool> {
    let text = std::fs::read_to_string(registry)
        .with_context(|| format!("reading the registry {}", registry.display()))?;
    if let Err(problems) = braid_model::Registry::parse(&registry.display().to_string(), &text) {
        eprintln!("{problems}");
        bail!(
            "{}: not signed: the registry has errors",
            registry.display()
        );
    }
    let sig_path = PathBuf::from(signed::signature_location(&registry.display().to_string()));
    // The version must grow: later than now's second and than the signature replaced.
    let previous = std::fs::read_to_string(&sig_path)
        .ok()
        .and_then(|s| s.lines().nth(2).map(str::to_string))
        .and_then(|l| signed::comment_timestamp(l.trim_start_matches("trusted comment: ")));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let timestamp = previous.map_or(now, |p| now.max(p + 1));
    let name = registry
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let comment = format!("timestamp:{timestamp}\tfile:{name}\thashed");
    let sk = load_secret(secret)?;
    let signature = minisign::sign(
        None,
        &sk,
        std::io::Cursor::new(text.as_bytes()),
        Some(&comment),
        Some("signature from braid registry sign (minisign format)"),
    )
    .map_err(|e| anyhow!("signing: {e}"))?;
    let mut tmp = sig_path.clone().into_os_string();
    tmp.push(".tmp");
    std::fs::write(&tmp, signature.into_string())
        .and_then(|()| std::fs::rename(&tmp, &sig_path))
        .with_context(|| format!("writing {}", sig_path.display()))?;
    eprintln!(
        "signed {}: {} (version timestamp {timestamp})",
        registry.display(),
        sig_path.display()
    );
    Ok(true)
}

fn verify(
    keys: &[String],
    public_keys: &[PathBuf],
    config: Option<&Path>,
    signature: Option<PathBuf>,
    registry: &Path,
) -> Result<bool> {
    let mut trusted = Vec::new();
    for key in keys {
        trusted.push(TrustedKey::parse(key).map_err(|e| anyhow!("--key: {e}"))?);
    }
    for path in public_keys {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading the public key {}", path.display()))?;
        trusted.push(TrustedKey::parse(&text).map_err(|e| anyhow!("{}: {e}", path.display()))?);
    }
    if let Some(config) = config {
        let (config, _) =
            braid_daemon::load::config(config).map_err(|problems| anyhow!("{problems}"))?;
        trusted.extend(config.registry_options.keys);
    }
    if trusted.is_empty() {
        bail!("no trusted key: give --key, --public-key or --config (with registry_keys)");
    }
    let bytes = std::fs::read(registry)
        .with_context(|| format!("reading the registry {}", registry.display()))?;
    let sig_path = signature.unwrap_or_else(|| {
        PathBuf::from(signed::signature_location(&registry.display().to_string()))
    });
    let sig_text = match std::fs::read_to_string(&sig_path) {
        Ok(t) => Some(t),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(e).with_context(|| format!("reading {}", sig_path.display())),
    };
    let verified = signed::verify(
        &bytes,
        sig_text.as_deref(),
        &sig_path.display().to_string(),
        &trusted,
    );
    let signed = match verified {
        Ok(s) => s,
        Err(e) => {
            eprintln!(
                "error: {}: registry refused: {e}; fix: {}",
                registry.display(),
                e.fix()
            );
            return Ok(false);
        }
    };
    let text = String::from_utf8_lossy(&bytes);
    if let Err(problems) = braid_model::Registry::parse(&registry.display().to_string(), &text) {
        eprintln!("{problems}");
        return Ok(false);
    }
    println!(
        "{}: valid; signed by key {} with version timestamp {} ({})",
        registry.display(),
        signed.key_id,
        signed.timestamp,
        signed.trusted_comment.replace('\t', " ")
    );
    Ok(true)
}

/// The registry's text from `source` (a config's `registry` value; relative paths are
/// relative to `config_path`'s directory); `None` when a path or file:// URL names no file.
/// An https:// source is fetched once (with the CAs of `ca_file`, else the system's roots).
pub(crate) fn read_source(
    source: &str,
    config_path: &Path,
    ca_file: Option<&str>,
) -> Result<Option<String>> {
    let source = RegistrySource::parse(source)
        .map_err(|e| anyhow!("registry {source}: {e}; fix: {}", e.fix()))?;
    let path = match &source {
        RegistrySource::Path(p) => braid_daemon::load::registry_path(config_path, p),
        RegistrySource::File(p) => p.into(),
        RegistrySource::Https(url) => {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let fetched = runtime
                .block_on(braid_daemon::fetch::fetch_https(url, ca_file, false, None))
                .map_err(|e| anyhow!("{e}; fix: {}", e.fix()))?;
            return Ok(match fetched {
                braid_daemon::fetch::Fetched::Body { text, .. } => Some(text),
                braid_daemon::fetch::Fetched::NotModified => None,
            });
        }
    };
    match std::fs::read_to_string(&path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading the registry {}", path.display())),
    }
}
