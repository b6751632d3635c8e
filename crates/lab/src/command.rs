//! Running the tools the lab drives (`ip`, `tc`, `nft`), with errors that name the command
//! and carry its stderr.

use crate::LabError;
use std::io::Write;
use std::process::{Command, Output, Stdio};

fn command_line(program: &str, args: &[&str]) -> String {
    std::iter::once(program)
        .chain(args.iter().copied())
        .collect::<Vec<_>>()
        .join(" ")
}

fn check(command: String, output: Output) -> Result<Output, LabError> {
    if output.status.success() {
        Ok(output)
    } else {
        let mut stderr = String::from_utf8_lossy(&output.stderr).trim().to_string();
        if stderr.is_empty() {
            stderr = format!("exited with {}", output.status);
        }
        Err(LabError::Command { command, stderr })
    }
}

/// Runs `program args...` and returns its output whatever its exit status; only a failure
/// to start it is an error.
pub fn run_unchecked(program: &str, args: &[&str]) -> Result<Output, LabError> {
    tracing::debug!(command = %command_line(program, args), "lab: run");
    Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|source| LabError::Spawn {
            command: command_line(program, args),
            source,
        })
}

/// Runs `program args...`; a nonzero exit is an error carrying the command and its stderr.
pub fn run(program: &str, args: &[&str]) -> Result<Output, LabError> {
    let output = run_unchecked(program, args)?;
    check(command_line(program, args), output)
}

/// Runs `program args...` with `input` on its stdin; a nonzero exit is an error carrying
/// the command, the input and its stderr.
pub fn run_with_input(program: &str, args: &[&str], input: &str) -> Result<Output, LabError> {
    let line = command_line(program, args);
    tracing::debug!(command = %line, input, "lab: run");
    let spawn_error = |source| LabError::Spawn {
        command: line.clone(),
        source,
    };
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(spawn_error)?;
    // Dropping stdin after the write closes it, so the tool sees the end of its input.
    let written = child
        .stdin
        .take()
        .map(|mut stdin| stdin.write_all(input.as_bytes()));
    let output = child.wait_with_output().map_err(spawn_error)?;
    if let Some(Err(source)) = written
        && output.status.success()
    {
        return Err(spawn_error(source));
    }
    check(format!("{line} <<< {input:?}"), output)
}

/// Runs `ip args...`.
pub fn ip(args: &[&str]) -> Result<Output, LabError> {
    run("ip", args)
}

/// Runs `ip -batch -` with one `ip` command per line (`ip -n NS -batch -` inside the
/// namespace `ns` when given); it stops at the first failing line.
pub fn ip_batch(ns: Option<&str>, lines: &[String]) -> Result<(), LabError> {
    if lines.is_empty() {
        return Ok(());
    }
    let mut script = lines.join("\n");
    script.push('\n');
    match ns {
        Some(ns) => run_with_input("ip", &["-n", ns, "-batch", "-"], &script),
        None => run_with_input("ip", &["-batch", "-"], &script),
    }
    .map(drop)
}

/// Runs a command inside a namespace: `ip netns exec NS program args...`.
pub fn in_netns(ns: &str, program: &str, args: &[&str]) -> Result<Output, LabError> {
    let mut all = vec!["netns", "exec", ns, program];
    all.extend_from_slice(args);
    ip(&all)
}

/// Feeds a script to `nft -f -` inside a namespace.
pub fn nft_script(ns: &str, script: &str) -> Result<(), LabError> {
    run_with_input("ip", &["netns", "exec", ns, "nft", "-f", "-"], script).map(drop)
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
