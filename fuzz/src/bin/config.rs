//! AFL entry point of the `config` target (see the crate docs and ../README.md).
fn main() {
    afl::fuzz!(|data: &[u8]| braid_fuzz::config(data));
}
