//! Log setup: `--log-level` (else `BRAID_LOG`, else `RUST_LOG`, else `info`) and
//! `--log-format text|json`, on stderr (journald keeps it under systemd).

use tracing_subscriber::EnvFilter;

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Format {
    /// Human-readable lines (coloured on a terminal).
    Text,
    /// One JSON object per line (`timestamp`, `level`, `target`, `message`, and the event's
    /// fields at the top level), for log shippers.
    Json,
}

/// Level names `--log-level` accepts on their own (a filter with `=` or `,` is also taken).
const LEVELS: [&str; 6] = ["off", "error", "warn", "info", "debug", "trace"];

/// Parses `--log-level`: a level name, or a tracing filter (`info,braid_link=debug`).
///
/// A bare word that is not a level would be read by `EnvFilter` as a module name and
/// silence everything else, so it is refused with the accepted names.
pub(crate) fn parse_level(value: &str) -> Result<String, String> {
    let is_filter = value.contains('=') || value.contains(',');
    if !is_filter && !LEVELS.contains(&value.to_ascii_lowercase().as_str()) {
        return Err(format!(
            "not a log level; use one of {}, or a filter such as info,braid_link=debug",
            LEVELS.join(", ")
        ));
    }
    EnvFilter::try_new(value).map_err(|e| {
        format!("not a valid filter ({e}); use a level such as debug, or a filter such as info,braid_link=debug")
    })?;
    Ok(value.to_string())
}

/// The filter in force and, when an environment variable was ignored, why.
fn filter(level: Option<&str>) -> (EnvFilter, Option<String>) {
    if let Some(level) = level {
        // Checked by `parse_level` already.
        return (EnvFilter::new(level), None);
    }
    for var in ["BRAID_LOG", "RUST_LOG"] {
        let Ok(value) = std::env::var(var) else {
            continue;
        };
        return match EnvFilter::try_new(&value) {
            Ok(filter) => (filter, None),
            Err(e) => (
                EnvFilter::new("info"),
                Some(format!(
                    "{var}={value:?} is not a log filter ({e}); logging at info"
                )),
            ),
        };
    }
    (EnvFilter::new("info"), None)
}

/// Installs the global subscriber, writing to stderr.
pub(crate) fn init(level: Option<&str>, format: Format) {
    let (filter, ignored) = filter(level);
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        Format::Text => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
        Format::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .init(),
    }
    if let Some(why) = ignored {
        tracing::warn!("{why}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_and_filters_are_taken() {
        for ok in [
            "debug",
            "INFO",
            "off",
            "info,braid_link=debug",
            "braid_daemon=trace",
        ] {
            assert_eq!(parse_level(ok).as_deref(), Ok(ok));
        }
    }

    #[test]
    fn a_bare_word_is_refused_with_the_names() {
        let err = parse_level("verbose").unwrap_err();
        assert!(
            err.contains("off, error, warn, info, debug, trace"),
            "{err}"
        );
        assert!(parse_level("info,braid=[").is_err());
    }
}
