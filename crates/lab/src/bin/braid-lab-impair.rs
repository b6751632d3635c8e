//! The lab's impairment forwarder as a program of its own, for the lab crate's tests and
//! for scripts: `ip netns exec brd-<lab>-hub braid-lab-impair`. The `braid` binary runs the
//! same thing as `braid lab impair`. It serves until it is killed; see
//! `braid_lab::impair`.

fn main() {
    if let Err(e) = braid_lab::impair::serve() {
        eprintln!("braid-lab-impair: {e}");
        std::process::exit(1);
    }
}
