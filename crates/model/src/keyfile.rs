//! The config's private key, inline (`private_key`, ranet's field) or in a file of its own
//! (`private_key_file`, braid's extension). The model stays pure: the caller reads the file
//! (see [`KeyFile`]) and this module judges what was read.

use crate::keys::PrivateKey;
use crate::problem::Collector;
use crate::read;
use serde_json::{Map, Value};

/// What the caller found at the path `private_key_file` names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyFile {
    /// The file's text and its permission bits (`st_mode & 0o777`).
    Read {
        /// The path as opened (relative paths already resolved), for messages.
        path: String,
        /// The file's contents.
        text: String,
        /// Its permission bits.
        mode: u32,
    },
    /// It could not be read: why, and how to fix that.
    Unreadable {
        /// The path as opened.
        path: String,
        /// Why it could not be read.
        message: String,
        /// What to do about it.
        fix: String,
    },
}

/// Reads key files for [`crate::Config::parse_with`]; called with the path as written.
pub type KeyFileReader<'a> = &'a dyn Fn(&str) -> KeyFile;

/// A reader for callers that parse text only (tests, tools): every key file is unreadable.
pub fn no_files(path: &str) -> KeyFile {
    KeyFile::Unreadable {
        path: path.to_string(),
        message: "this reader parses text only and opens no files".into(),
        fix: "load the config with `braid check -c CONFIG`, which reads the key file".into(),
    }
}

/// Permission bits a private key file may not have: any for group or others (OpenSSH
/// refuses such key files the same way: "UNPROTECTED PRIVATE KEY FILE").
pub const FORBIDDEN_MODE_BITS: u32 = 0o077;

const BOTH_FIX: &str = "keep one: \"private_key_file\" (a file only root can read, as `braid init` writes it) or \"private_key\"";

/// Reads `private_key` or `private_key_file` from the config's top-level `map`; returns the
/// key and the key file's path as written (`None` for an inline key).
pub(crate) fn read_private_key(
    c: &mut Collector,
    map: &Map<String, Value>,
    key_files: KeyFileReader<'_>,
) -> Option<(PrivateKey, Option<String>)> {
    let inline = read::field(c, map, "", "private_key", None);
    let file = read::field(c, map, "", "private_key_file", None);
    match (inline, file) {
        (Some(_), Some(_)) => {
            c.error(
                "private_key_file",
                "both private_key and private_key_file are set",
                BOTH_FIX,
            );
            None
        }
        (None, None) => {
            c.error(
                "private_key",
                "missing required field `private_key` (or `private_key_file`)",
                "add \"private_key_file\": \"/etc/braid/private.key\" (`braid init` writes it; or `braid keygen > FILE`, `chmod 600 FILE`), or \"private_key\": the output of `braid keygen` (or `wg genkey`)",
            );
            None
        }
        (Some(v), None) => {
            let text = read::string(c, "private_key", v, "write the key as a base64 string")?;
            match PrivateKey::from_base64(&text) {
                Ok(key) => Some((key, None)),
                Err(e) => {
                    c.error(
                        "private_key",
                        format!("the private key {e}"),
                        "generate one with `braid keygen` (or `wg genkey`) and paste it here",
                    );
                    None
                }
            }
        }
        (None, Some(v)) => {
            let written = read::string(
                c,
                "private_key_file",
                v,
                "write the key file's path as a string",
            )?;
            if written.is_empty() {
                c.error(
                    "private_key_file",
                    "the private key file's path is empty",
                    "name the file holding this node's private key, e.g. \"/etc/braid/private.key\"",
                );
                return None;
            }
            let key = judge(c, key_files(&written))?;
            Some((key, Some(written)))
        }
    }
}

/// The key in a key file that was read, or `None` after recording why it is refused.
fn judge(c: &mut Collector, file: KeyFile) -> Option<PrivateKey> {
    let (path, text, mode) = match file {
        KeyFile::Unreadable { path, message, fix } => {
            c.error(
                "private_key_file",
                format!("cannot read the private key file {path}: {message}"),
                fix,
            );
            return None;
        }
        KeyFile::Read { path, text, mode } => (path, text, mode),
    };
    if mode & FORBIDDEN_MODE_BITS != 0 {
        c.error(
            "private_key_file",
            format!(
                "the private key file {path} can be read or written by other users (mode {mode:04o})"
            ),
            format!("chmod 600 {path} (and chown it to the user braid runs as)"),
        );
        return None;
    }
    // `wg genkey > FILE` writes the key and a newline; any surrounding whitespace is fine,
    // anything else on other lines is not.
    let key_text = text.trim();
    if key_text.lines().count() > 1 {
        c.error(
            "private_key_file",
            format!("the private key file {path} holds more than one line"),
            format!("write only the key to it: `braid keygen > {path}`"),
        );
        return None;
    }
    match PrivateKey::from_base64(key_text) {
        Ok(key) => Some(key),
        Err(e) => {
            c.error(
                "private_key_file",
                format!("the private key in {path} {e}"),
                format!("write a key to it: `braid keygen > {path}` (or `wg genkey`)"),
            );
            None
        }
    }
}
