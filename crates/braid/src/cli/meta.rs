//! `braid meta`: this node's registry entry, derived from its config (like ranet's meta).

use anyhow::Result;
use braid_daemon::load;
use serde_json::json;
use std::path::Path;

pub fn run(config_path: &Path) -> Result<bool> {
    let (config, _) = match load::config(config_path) {
        Ok(loaded) => loaded,
        Err(problems) => {
            eprintln!("{problems}");
            return Ok(false);
        }
    };
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
    let entry = json!({
        "public_key": config.private_key.public_key().to_base64(),
        "endpoints": endpoints,
        "remarks": config.remarks,
    });
    println!("{}", serde_json::to_string_pretty(&entry)?);
    Ok(true)
}
