//! Running the tools the lab drives (`ip`, `tc`, `nft`), with errors that name the command.

use crate::LabError;
use std::process::{Command, Output, Stdio};

/// Runs `program args...`; a nonzero exit is an error carrying the command and its stderr.
pub fn run(program: &str, args: &[&str]) -> Result<Output, LabError> {
    let output = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|source| LabError::Spawn {
            command: format!("{program} {}", args.join(" ")),
            source,
        })?;
    if !output.status.success() {
        return Err(LabError::Command {
            command: format!("{program} {}", args.join(" ")),
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_string(),
        });
    }
    Ok(output)
}

/// Runs `ip args...`.
pub fn ip(args: &[&str]) -> Result<Output, LabError> {
    run("ip", args)
}

/// Runs a command inside a namespace: `ip netns exec NS program args...`.
pub fn in_netns(ns: &str, program: &str, args: &[&str]) -> Result<Output, LabError> {
    let mut all = vec!["netns", "exec", ns, program];
    all.extend_from_slice(args);
    ip(&all)
}

/// Feeds a script to `nft -f -` inside a namespace.
pub fn nft_script(ns: &str, script: &str) -> Result<(), LabError> {
    use std::io::Write;
    let command = format!("ip netns exec {ns} nft -f -");
    let mut child = Command::new("ip")
        .args(["netns", "exec", ns, "nft", "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| LabError::Spawn {
            command: command.clone(),
            source,
        })?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(script.as_bytes())
            .map_err(|source| LabError::Spawn {
                command: command.clone(),
                source,
            })?;
    }
    let output = child.wait_with_output().map_err(|source| LabError::Spawn {
        command: command.clone(),
        source,
    })?;
    if !output.status.success() {
        return Err(LabError::Command {
            command: format!("{command} <<< {script}"),
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_string(),
        });
    }
    Ok(())
}

/// The namespaces that exist now (`ip netns list`).
pub fn namespaces() -> Result<Vec<String>, LabError> {
    let out = ip(&["netns", "list"])?;
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_string)
        .collect())
}
