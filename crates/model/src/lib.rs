//! braid's formats: the node config and the registry (ranet-compatible, with optional
//! extensions), and their validation. Pure: parsing takes text, never opens files.

pub mod config;
pub mod duplicates;
pub mod extensions;
pub mod family;
pub mod host;
pub mod jsonc;
pub mod keyfile;
pub mod keys;
pub mod mesh;
pub mod problem;
pub mod read;
pub mod registry;
pub mod registry_edit;
pub mod signed;
pub mod source;
pub mod support;

pub use config::{Config, Transport};
pub use family::AddressFamily;
pub use host::Host;
pub use keyfile::KeyFile;
pub use keys::{PrivateKey, PublicKey};
pub use problem::{Problem, Problems, Severity};
pub use registry::{Endpoint, Node, Registry};
