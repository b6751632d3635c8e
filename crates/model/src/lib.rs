//! braid's formats: the node config and the registry (ranet-compatible, with optional
//! extensions), and their validation. Pure: parsing takes text, never opens files.

pub mod keys;
