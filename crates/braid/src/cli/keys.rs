//! `braid keygen` and `braid pubkey`: the same text formats as `wg genkey` and `wg pubkey`.

use anyhow::{Context, Result, bail};
use braid_model::PrivateKey;
use std::io::Read;

pub(crate) fn keygen() -> Result<()> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)
        .map_err(|e| anyhow::anyhow!("reading random bytes from the operating system: {e}"))?;
    println!("{}", PrivateKey::from_random_bytes(bytes).to_base64());
    Ok(())
}

pub(crate) fn pubkey() -> Result<()> {
    let mut input = String::new();
    std::io::stdin()
        .read_to_string(&mut input)
        .context("reading a private key from stdin")?;
    match PrivateKey::from_base64(&input) {
        Ok(key) => {
            println!("{}", key.public_key().to_base64());
            Ok(())
        }
        Err(e) => bail!("stdin: the private key {e}; pipe in the output of `braid keygen`"),
    }
}
