//! What the main loop reads back from the supervisor: the routing daemon's health.

/// The routing daemon's health, as the status document shows it (`routing.engine`).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct EngineHealth {
    /// `babeld` or `bird`; `None` when routing needs no daemon.
    #[serde(deserialize_with = "braid_bond::status::static_word_opt")]
    pub program: Option<braid_bond::status::Word>,
    /// Its process ID while it runs.
    pub pid: Option<u32>,
    /// Its control socket answered and it has braid's current interfaces or configuration.
    pub ready: bool,
    /// How often it was started again after it exited or failed to start.
    pub restarts: u32,
    /// Why it is not ready, when it is not.
    pub error: Option<String>,
    /// Routes it selected that are not in the kernel (see `routing::engine_routes`).
    pub missing_routes: Vec<String>,
}
