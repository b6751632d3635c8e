//! The `braid` subcommands.

pub mod check;
pub mod control;
pub mod docgen;
pub mod init;
pub mod keys;
pub mod lab;
pub mod lab_checks;
pub mod logging;
pub mod meta;
pub mod plan;
pub mod registry;
pub mod routes;
pub mod run;
pub mod service;
pub mod status_table;
