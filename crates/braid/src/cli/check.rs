//! `braid check`: validate a config and its registry.

use braid_daemon::load;
use std::path::Path;
use std::process::ExitCode;

pub(crate) fn run(config: &Path) -> ExitCode {
    match load::load(config) {
        Ok(loaded) => {
            for warning in &loaded.warnings.0 {
                eprintln!("{warning}");
            }
            println!(
                "{}: valid; {} links planned from {}",
                config.display(),
                loaded.plan.links.len(),
                loaded.registry_path.display()
            );
            ExitCode::SUCCESS
        }
        Err(problems) => {
            for problem in &problems.0 {
                eprintln!("{problem}");
            }
            let errors = problems.errors().count();
            eprintln!("{errors} error{} found", if errors == 1 { "" } else { "s" });
            ExitCode::FAILURE
        }
    }
}
