//! The `braid` subcommands.

pub(crate) mod check;
pub(crate) mod control;
pub(crate) mod docgen;
pub(crate) mod init;
pub(crate) mod keys;
pub(crate) mod lab;
pub(crate) mod lab_checks;
pub(crate) mod lab_wan;
pub(crate) mod logging;
pub(crate) mod meta;
pub(crate) mod plan;
pub(crate) mod registry;
pub(crate) mod routes;
pub(crate) mod run;
pub(crate) mod service;
pub(crate) mod status_table;
