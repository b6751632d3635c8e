//! AFL entry point of the `control` target (see the crate docs and ../README.md).
fn main() {
    afl::fuzz!(|data: &[u8]| braid_fuzz::control(data));
}
