//! Man pages and shell completions, generated from the CLI's own definition (clap's
//! `Command`), so they cannot drift from `--help`: `braid man [DIR]` (clap_mangen) and
//! `braid completions SHELL` (clap_complete).

use anyhow::{Context, Result};
use std::path::Path;

/// The manual section of braid's pages: system administration (as wg(8) and ip(8)).
pub(crate) const SECTION: &str = "8";

/// Shells `braid completions` writes a script for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Shell {
    Bash,
    Zsh,
    Fish,
}

impl Shell {
    fn generator(self) -> clap_complete::Shell {
        match self {
            Self::Bash => clap_complete::Shell::Bash,
            Self::Zsh => clap_complete::Shell::Zsh,
            Self::Fish => clap_complete::Shell::Fish,
        }
    }
}

/// Writes the completion script for `shell` to `out`.
pub(crate) fn completions(mut cmd: clap::Command, shell: Shell, out: &mut dyn std::io::Write) {
    let name = cmd.get_name().to_string();
    clap_complete::generate(shell.generator(), &mut cmd, name, out);
}

/// Renders one page of a built command (`Command::build` gives each subcommand its
/// display name `braid-lab-up`, the page's name, and bin name `braid lab up`, its synopsis).
fn render(cmd: &clap::Command, source: &str) -> Result<(String, Vec<u8>)> {
    let man = clap_mangen::Man::new(cmd.clone())
        .section(SECTION)
        .source(source.to_string())
        .manual("braid manual");
    let mut page = Vec::new();
    let name = man.get_filename();
    man.render(&mut page)
        .with_context(|| format!("rendering the man page {name}"))?;
    Ok((name, page))
}

/// Every page: (file name, roff text), for the command and each visible subcommand at every
/// depth; the built-in `help` subcommand has none (its text is `--help`).
pub(crate) fn pages(cmd: clap::Command) -> Result<Vec<(String, Vec<u8>)>> {
    fn walk(cmd: &clap::Command, source: &str, out: &mut Vec<(String, Vec<u8>)>) -> Result<()> {
        for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
            walk(sub, source, out)?;
        }
        out.push(render(cmd, source)?);
        Ok(())
    }
    let mut cmd = cmd.disable_help_subcommand(true);
    cmd.build();
    let source = format!(
        "{} {}",
        cmd.get_name(),
        cmd.get_version().unwrap_or_default()
    );
    let mut out = Vec::new();
    walk(&cmd, &source, &mut out)?;
    out.sort();
    Ok(out)
}

/// `braid man [DIR]`: without DIR, the braid(8) page on stdout; with DIR, every page written
/// into it (created if missing), one path per line on stdout.
pub(crate) fn man(cmd: clap::Command, dir: Option<&Path>) -> Result<()> {
    use std::io::Write;
    let pages = pages(cmd)?;
    let mut stdout = std::io::stdout().lock();
    let Some(dir) = dir else {
        let top = format!("braid.{SECTION}");
        if let Some((_, text)) = pages.iter().find(|(name, _)| *name == top) {
            stdout.write_all(text)?;
        }
        return Ok(());
    };
    std::fs::create_dir_all(dir)
        .with_context(|| format!("{}: creating the man page directory", dir.display()))?;
    for (name, text) in &pages {
        let path = dir.join(name);
        std::fs::write(&path, text).with_context(|| format!("{}: writing", path.display()))?;
        writeln!(stdout, "{}", path.display())?;
    }
    Ok(())
}
