//! The `braid` subcommands.

pub mod check;
pub mod control;
pub mod init;
pub mod keys;
pub mod lab;
pub mod lab_checks;
pub mod meta;
pub mod plan;
pub mod registry;
pub mod routes;
pub mod run;
pub mod status_table;
