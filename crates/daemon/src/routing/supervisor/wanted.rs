//! What the main loop asks of the supervisor: which routing daemon, and what it must be
//! told ([`Wanted`]); and which of that, when it changes, needs the daemon started again
//! ([`RestartKey`]).

use super::super::babel;
use super::super::bird::{self, BirdInputs};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The routing daemon braid wants, and what it must be told. Computed by the main loop
/// from the loaded inputs (see `routing::wanted_engine`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Wanted {
    /// babeld (RFC 8966), told its interfaces over its local control socket (babeld(8)).
    Babel {
        /// Where its config, control socket, pid file, state and log live.
        dir: PathBuf,
        /// The overlay namespace babeld runs in, when the config has one.
        netns: Option<String>,
        /// babeld's config file (see `babel::config_text`); a change restarts babeld.
        config: String,
        /// Each link's babeld interface parameters (see `babel::interface_parameters`).
        link_parameters: String,
        /// The links babeld speaks on, told over its control socket (no restart).
        links: BTreeSet<String>,
        /// Links whose `rxcost` is not the one in `link_parameters` (lossy links, see
        /// `routing::cost`), with theirs: babeld gets them by removing the interface and
        /// adding it again (it keeps an existing interface's cost otherwise).
        rxcosts: BTreeMap<String, u16>,
    },
    /// BIRD 2 with its babel protocol, configured by file and `birdc configure`.
    Bird {
        /// Where its config, control socket, pid file and log live.
        dir: PathBuf,
        /// The overlay namespace BIRD runs in, when the config has one.
        netns: Option<String>,
        /// BIRD's configuration; a change is applied with `birdc configure`.
        inputs: BirdInputs,
    },
}

/// What, when it changes, needs the routing daemon started again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct RestartKey {
    program: &'static str,
    dir: PathBuf,
    netns: Option<String>,
    config: Option<String>,
}

impl Wanted {
    /// The program's name (`babeld`, `bird`).
    pub fn program(&self) -> &'static str {
        match self {
            Self::Babel { .. } => babel::PROGRAM,
            Self::Bird { .. } => bird::PROGRAM,
        }
    }

    /// What of this, when it changes, needs the daemon started again: the program, its
    /// directory and namespace, and babeld's config file (BIRD is reconfigured in place).
    pub(super) fn restart_key(&self) -> RestartKey {
        match self {
            Self::Babel {
                dir, netns, config, ..
            } => RestartKey {
                program: self.program(),
                dir: dir.clone(),
                netns: netns.clone(),
                config: Some(config.clone()),
            },
            Self::Bird { dir, netns, .. } => RestartKey {
                program: self.program(),
                dir: dir.clone(),
                netns: netns.clone(),
                config: None,
            },
        }
    }
}

impl Wanted {
    /// Where the daemon's files live.
    pub(super) fn dir(&self) -> &Path {
        match self {
            Self::Babel { dir, .. } | Self::Bird { dir, .. } => dir,
        }
    }

    /// The network namespace the daemon runs in, when the config has one.
    pub(super) fn netns(&self) -> Option<&str> {
        match self {
            Self::Babel { netns, .. } | Self::Bird { netns, .. } => netns.as_deref(),
        }
    }
}
