//! `braid meta`: this node's registry entry, derived from its config (like ranet's meta,
//! plus braid's `name`, `index` and `exit_preference` when the config sets them).

use anyhow::Result;
use braid_daemon::load;
use braid_model::Config;
use serde_json::{Map, Value, json};
use std::path::Path;

pub(crate) fn run(config_path: &Path) -> Result<bool> {
    let (config, _) = match load::config(config_path) {
        Ok(loaded) => loaded,
        Err(problems) => {
            eprintln!("{problems}");
            return Ok(false);
        }
    };
    println!("{}", serde_json::to_string_pretty(&entry(&config))?);
    Ok(true)
}

/// The registry entry of the node `config` describes: its public key, one endpoint per
/// transport, and the extensions the config sets (name, index, exit preference when it is
/// an exit), then its remarks. ranet's fields come in ranet's order.
pub(crate) fn entry(config: &Config) -> Value {
    let endpoints: Vec<_> = config
        .transports
        .iter()
        .map(|t| {
            json!({
                "send_port": t.send_port,
                "address_family": t.address_family,
                "address": t.address.as_ref().map(|h| h.to_string()).unwrap_or_default(),
            })
        })
        .collect();
    let mut entry = Map::new();
    entry.insert(
        "public_key".into(),
        json!(config.private_key.public_key().to_base64()),
    );
    if let Some(name) = &config.name {
        entry.insert("name".into(), json!(name));
    }
    if let Some(index) = config.index {
        entry.insert("index".into(), json!(index));
    }
    if let Some(exit) = &config.exit {
        entry.insert("exit_preference".into(), json!(exit.preference));
    }
    entry.insert("endpoints".into(), json!(endpoints));
    entry.insert("remarks".into(), json!(config.remarks));
    Value::Object(entry)
}
