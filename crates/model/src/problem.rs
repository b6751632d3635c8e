//! A problem found in an input file: which file, where in it (a JSON path), what is wrong,
//! and how to fix it. Validation collects every problem instead of stopping at the first.

use std::fmt;

/// How bad a problem is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// The input cannot be used.
    Error,
    /// The input is used, but probably not as meant.
    Warning,
}

/// One problem in one input file; `Display` prints `severity: file: path: message; fix: ...`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Problem {
    /// Error or warning.
    pub severity: Severity,
    /// The file as the user named it, e.g. `/etc/braid/registry.json`.
    pub file: String,
    /// Where in the file: a JSON path such as `[3].endpoints[0].send_port`, or
    /// `line 4, column 7` for syntax errors; empty for the whole file.
    pub path: String,
    /// What is wrong.
    pub message: String,
    /// How to fix it.
    pub fix: String,
}

impl Problem {
    /// Whether the problem is an error.
    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let severity = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        write!(f, "{severity}: {}", self.file)?;
        if !self.path.is_empty() {
            write!(f, ": {}", self.path)?;
        }
        write!(f, ": {}", self.message)?;
        if !self.fix.is_empty() {
            write!(f, "; fix: {}", self.fix)?;
        }
        Ok(())
    }
}

/// Every problem found in one validation run; an error when at least one is an error.
#[derive(Debug, Clone, Default, PartialEq, Eq, thiserror::Error)]
pub struct Problems(pub Vec<Problem>);

impl Problems {
    /// Whether any problem is an error.
    pub fn has_errors(&self) -> bool {
        self.0.iter().any(Problem::is_error)
    }
    /// The errors, in order.
    pub fn errors(&self) -> impl Iterator<Item = &Problem> {
        self.0.iter().filter(|p| p.is_error())
    }
    /// The warnings, in order.
    pub fn warnings(&self) -> impl Iterator<Item = &Problem> {
        self.0.iter().filter(|p| !p.is_error())
    }
    /// Appends `other`'s problems.
    pub fn extend(&mut self, other: Self) {
        self.0.extend(other.0);
    }
}

impl fmt::Display for Problems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, problem) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{problem}")?;
        }
        Ok(())
    }
}

/// Collects problems for one file while a document is read.
#[derive(Debug)]
pub struct Collector {
    file: String,
    /// The problems so far, in the order found.
    pub problems: Vec<Problem>,
}

impl Collector {
    /// A collector for `file` (as the user named it).
    pub fn new(file: &str) -> Self {
        Self {
            file: file.to_string(),
            problems: Vec::new(),
        }
    }

    /// The file the problems are about.
    pub fn file(&self) -> &str {
        &self.file
    }

    /// Records an error at JSON path `path`: what is wrong and how to fix it.
    pub fn error(&mut self, path: &str, message: impl Into<String>, fix: impl Into<String>) {
        self.push(Severity::Error, path, message.into(), fix.into());
    }

    /// Records a warning at JSON path `path`: what is wrong and how to fix it.
    pub fn warn(&mut self, path: &str, message: impl Into<String>, fix: impl Into<String>) {
        self.push(Severity::Warning, path, message.into(), fix.into());
    }

    fn push(&mut self, severity: Severity, path: &str, message: String, fix: String) {
        self.problems.push(Problem {
            severity,
            file: self.file.clone(),
            path: path.to_string(),
            message,
            fix,
        });
    }

    /// Whether any problem so far is an error.
    pub fn has_errors(&self) -> bool {
        self.problems.iter().any(Problem::is_error)
    }

    /// The problems collected.
    pub fn into_problems(self) -> Problems {
        Problems(self.problems)
    }
}
