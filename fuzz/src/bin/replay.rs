//! Runs one target on files, without AFL: `replay TARGET FILE...` (a crash to reproduce,
//! or a whole corpus to check). Exits non-zero (the panic) on the first input that fails.
fn main() {
    let mut args = std::env::args().skip(1);
    let name = args.next().unwrap_or_default();
    let Some((_, target)) = braid_fuzz::TARGETS.iter().find(|(n, _)| *n == name) else {
        let names: Vec<_> = braid_fuzz::TARGETS.iter().map(|(n, _)| *n).collect();
        eprintln!("usage: replay TARGET FILE...; targets: {}", names.join(" "));
        std::process::exit(2);
    };
    let mut count = 0;
    for file in args {
        let data = std::fs::read(&file).unwrap_or_else(|e| panic!("reading {file}: {e}"));
        eprintln!("{name}: {file}");
        target(&data);
        count += 1;
    }
    eprintln!("{name}: {count} inputs, no failure");
}
