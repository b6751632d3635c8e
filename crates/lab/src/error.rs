//! The lab's error type.

/// Everything that can go wrong while building, driving or removing a lab.
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    /// A tool (`ip`, `tc`, `nft`, or a program run in a node) could not be started.
    #[error("`{command}` could not start: {source}")]
    Spawn {
        /// The command line.
        command: String,
        /// Why it could not start.
        source: std::io::Error,
    },
    /// A tool ran and failed.
    #[error("`{command}` failed: {stderr}")]
    Command {
        /// The command line (and its input, for scripts fed on stdin).
        command: String,
        /// Its standard error, trimmed.
        stderr: String,
    },
    /// The lab name is not 1..=8 characters of a-z, 0-9.
    #[error("lab name `{0}` must be 1..=8 characters of a-z, 0-9")]
    BadName(String),
    /// The node count is out of range.
    #[error("a lab needs 1..=50 nodes, not {0}")]
    BadSize(usize),
    /// A node index is not one of the lab's nodes.
    #[error("node {node} is not in the lab (nodes are 1..={nodes})")]
    BadNode {
        /// The index asked for.
        node: usize,
        /// How many nodes the lab has.
        nodes: usize,
    },
    /// A `--wans` list (`LabSpec::with_wans`) is malformed or does not fit the lab.
    #[error("--wans: {0}")]
    Wans(String),
    /// An uplink index is not one of the node's uplinks.
    #[error("node {node} has uplinks 0..={last} (wan0..wan{last}), not {wan}", last = wans.saturating_sub(1))]
    BadWan {
        /// The node.
        node: usize,
        /// The uplink asked for.
        wan: usize,
        /// How many uplinks the node has.
        wans: usize,
    },
    /// An operation that needs the other underlay (the pair mesh or the uplinks).
    #[error("{0}")]
    Topology(String),
    /// The impairment forwarder: bad settings, or it could not be started or reached.
    #[error("uplink impairment: {0}")]
    Impair(String),
    /// A pair names the same node twice.
    #[error("a pair needs two different nodes, not {0} and {0}")]
    SameNode(usize),
    /// A file could not be written (or a log file opened).
    #[error("writing {path}: {source}")]
    Write {
        /// The file or directory.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The send ports of the configs would pass 65535.
    #[error(
        "base port {base_port} leaves no room for the send ports of {nodes} nodes (2 per node)"
    )]
    PortRange {
        /// `ConfigOptions::base_port`.
        base_port: u16,
        /// How many nodes the lab has.
        nodes: usize,
    },
    /// The system's random source failed while making keys.
    #[error("random bytes for keys: {0}")]
    Random(String),
}
