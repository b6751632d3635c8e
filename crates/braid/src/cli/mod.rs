//! The `braid` subcommands.

pub mod check;
pub mod keys;
pub mod lab;
pub mod meta;
pub mod plan;
