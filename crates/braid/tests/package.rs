//! The Debian package: built by `packaging/build-deb.sh` (cargo-deb) from the binary under
//! test, installed on this machine with `dpkg -i`, checked (binary, units, man pages,
//! completions, docs, example config; the units neither enabled nor started), then removed
//! with `dpkg -r` and purged, checking that everything went. Needs root; the package is
//! purged on success, failure and panic.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

const TEST: &str = "deb_package_installs_and_removes_cleanly";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn run(program: &str, args: &[&str]) -> Output {
    Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e}"))
}

/// dpkg, retried while another process (apt on this shared machine) holds its lock.
fn dpkg(args: &[&str]) -> Output {
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let out = run("dpkg", args);
        let locked = !out.status.success() && text(&out).contains("lock");
        if !locked || Instant::now() > deadline {
            return out;
        }
        std::thread::sleep(Duration::from_secs(2));
    }
}

/// The package's status word ("installed", "config-files", "not-installed").
fn package_state() -> String {
    let out = run("dpkg-query", &["-W", "-f=${db:Status-Status}", "braid"]);
    if out.status.success() {
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    } else {
        "not-installed".to_string()
    }
}

/// The mask `dpkg -r` leaves (`deb-systemd-helper mask`) until the purge.
const MASK: &str = "/etc/systemd/system/braid.service";

fn masked() -> bool {
    std::fs::read_link(MASK).is_ok_and(|target| target == Path::new("/dev/null"))
}

/// Purges the package on drop, whatever happened, and removes a mask of braid.service that
/// the package left behind.
struct Installed;

impl Drop for Installed {
    fn drop(&mut self) {
        if package_state() != "not-installed" {
            let out = dpkg(&["--purge", "braid"]);
            if !out.status.success() {
                eprintln!("WARNING: dpkg --purge braid failed: {}", text(&out));
            }
        }
        // Only ours: the test refuses to start while one exists.
        if masked() {
            let _ = std::fs::remove_file(MASK);
        }
    }
}

/// Files the package must install.
const FILES: &[&str] = &[
    "/usr/bin/braid",
    "/usr/lib/systemd/system/braid.service",
    "/usr/lib/systemd/system/braid@.service",
    "/usr/share/man/man8/braid.8.gz",
    "/usr/share/man/man8/braid-run.8.gz",
    "/usr/share/man/man8/braid-lab-up.8.gz",
    "/usr/share/bash-completion/completions/braid",
    "/usr/share/zsh/vendor-completions/_braid",
    "/usr/share/fish/vendor_completions.d/braid.fish",
    "/usr/share/doc/braid/README.md",
    "/usr/share/doc/braid/docs/install.md",
    "/usr/share/doc/braid/docs/config.md",
    "/usr/share/doc/braid/examples/config.json",
    "/usr/share/doc/braid/examples/three-nodes/registry.json",
    "/usr/share/doc/braid/copyright",
];

/// Links that would enable or start a unit at boot.
const ENABLE_LINKS: &[&str] = &[
    "/etc/systemd/system/multi-user.target.wants/braid.service",
    MASK,
];

fn check_installed(deb: &Path) {
    for file in FILES {
        assert!(Path::new(file).exists(), "{file} not installed");
    }
    let version = run("/usr/bin/braid", &["--version"]);
    assert!(version.status.success(), "{}", text(&version));
    assert!(String::from_utf8_lossy(&version.stdout).starts_with("braid "));
    // Every page in the package, found by man.
    let listing = run("dpkg-deb", &["-c", deb.to_str().unwrap()]);
    let pages = String::from_utf8_lossy(&listing.stdout)
        .lines()
        .filter(|l| l.contains("/man8/") && l.ends_with(".8.gz"))
        .count();
    let mut subcommands = 0;
    let dir = std::fs::read_dir("/usr/share/man/man8").unwrap();
    for entry in dir {
        let name = entry.unwrap().file_name().to_string_lossy().to_string();
        if name.starts_with("braid") {
            subcommands += 1;
        }
    }
    assert_eq!(pages, subcommands, "man pages in the package vs on disk");
    assert!(pages >= 15, "{pages} man pages");
    let man = run("man", &["-w", "8", "braid-run"]);
    assert_eq!(
        String::from_utf8_lossy(&man.stdout).trim(),
        "/usr/share/man/man8/braid-run.8.gz",
        "{}",
        text(&man)
    );
    // The installed bash completion loads as bash-completion would load it.
    let bash = run(
        "bash",
        &[
            "-c",
            "source /usr/share/bash-completion/completions/braid && complete -p braid",
        ],
    );
    assert!(
        String::from_utf8_lossy(&bash.stdout).contains("-F _braid braid"),
        "{}",
        text(&bash)
    );
    // Neither enabled nor started; no maintainer script starts or enables it.
    for link in ENABLE_LINKS {
        assert!(
            std::fs::symlink_metadata(link).is_err(),
            "{link} exists after install"
        );
    }
    let postinst = std::fs::read_to_string("/var/lib/dpkg/info/braid.postinst").unwrap();
    assert!(!postinst.contains("deb-systemd-invoke start"), "{postinst}");
    for line in postinst.lines().filter(|l| l.contains(" enable ")) {
        // Only re-enabling what the admin had enabled before (upgrades).
        assert!(postinst.contains("was-enabled braid.service"), "{line}");
    }
    // The installed units verify as installed (ExecStart, man:braid-run(8) exist now).
    if Path::new("/usr/bin/systemd-analyze").exists() {
        for unit in ["braid.service", "braid@mesh.service"] {
            let out = run(
                "systemd-analyze",
                &["verify", &format!("/usr/lib/systemd/system/{unit}")],
            );
            let lines: Vec<String> = text(&out)
                .lines()
                .filter(|l| l.contains("braid"))
                .map(str::to_string)
                .collect();
            assert!(
                out.status.success() && lines.is_empty(),
                "{unit}: {lines:?}"
            );
        }
    } else {
        eprintln!("SKIPPED part of {TEST}: systemd-analyze is not installed");
    }
    check_example_config();
}

/// The example config, with a fresh key and a registry holding this node, is valid;
/// unedited, it names the field to fix.
fn check_example_config() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.json");
    let example = std::fs::read_to_string("/usr/share/doc/braid/examples/config.json").unwrap();
    std::fs::write(&config, &example).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o600)).unwrap();
    let config_s = config.to_str().unwrap();
    let unedited = run("/usr/bin/braid", &["check", "-c", config_s]);
    assert_eq!(unedited.status.code(), Some(1));
    assert!(
        text(&unedited).contains("private_key") && text(&unedited).contains("braid keygen"),
        "{}",
        text(&unedited)
    );
    let key = run("/usr/bin/braid", &["keygen"]);
    let key = String::from_utf8_lossy(&key.stdout).trim().to_string();
    let edited = example
        .replace("PASTE-THE-OUTPUT-OF-braid-keygen", &key)
        .replace("/etc/braid/registry.json", "registry.json");
    std::fs::write(&config, edited).unwrap();
    let meta = run("/usr/bin/braid", &["meta", "-c", config_s]);
    assert!(meta.status.success(), "{}", text(&meta));
    let entry = String::from_utf8_lossy(&meta.stdout).to_string();
    std::fs::write(dir.path().join("registry.json"), format!("[{entry}]")).unwrap();
    let check = run("/usr/bin/braid", &["check", "-c", config_s]);
    assert!(check.status.success(), "{}", text(&check));
}

#[test]
fn deb_package_installs_and_removes_cleanly() {
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("\n*** SKIPPED {TEST}: installing a package needs root ***\n");
        return;
    }
    if Command::new("dpkg").arg("--version").output().is_err() {
        eprintln!("\n*** SKIPPED {TEST}: dpkg is not installed (not a Debian system) ***\n");
        return;
    }
    // Never overwrite a braid this test did not install.
    if package_state() != "not-installed"
        || Path::new("/usr/bin/braid").exists()
        || std::fs::symlink_metadata(MASK).is_ok()
    {
        eprintln!(
            "\n*** SKIPPED {TEST}: a braid package (state {}), /usr/bin/braid or {MASK} is already on this machine; not touching it ***\n",
            package_state()
        );
        return;
    }
    let out_dir = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let build = Command::new(repo().join("packaging/build-deb.sh"))
        .args(["--binary", env!("CARGO_BIN_EXE_braid"), "--fast", "--out"])
        .arg(out_dir.path())
        .output()
        .unwrap();
    if build.status.code() == Some(3) {
        eprintln!(
            "\n*** SKIPPED {TEST}: cargo-deb is not installed and could not be installed from crates.io; the package is NOT tested:\n{} ***\n",
            text(&build)
        );
        return;
    }
    assert!(build.status.success(), "build-deb.sh: {}", text(&build));
    let stdout = String::from_utf8_lossy(&build.stdout).to_string();
    let deb = PathBuf::from(stdout.lines().last().unwrap_or_default().trim());
    assert!(
        deb.is_file(),
        "no .deb at {}: {}",
        deb.display(),
        text(&build)
    );
    eprintln!("built {} in {:?}", deb.display(), started.elapsed());

    let _purge = Installed;
    let install = dpkg(&["-i", deb.to_str().unwrap()]);
    assert!(install.status.success(), "dpkg -i: {}", text(&install));
    assert_eq!(package_state(), "installed");
    check_installed(&deb);

    // dpkg -r removes every file; the package leaves no conffiles behind.
    let remove = dpkg(&["-r", "braid"]);
    assert!(remove.status.success(), "dpkg -r: {}", text(&remove));
    for file in FILES {
        assert!(!Path::new(file).exists(), "{file} left after dpkg -r");
    }
    assert!(!Path::new("/usr/share/doc/braid").exists());
    // The purge undoes the mask `dpkg -r` leaves for the unit (as for any Debian service)
    // and forgets the package.
    let purge = dpkg(&["--purge", "braid"]);
    assert!(purge.status.success(), "dpkg --purge: {}", text(&purge));
    assert_eq!(package_state(), "not-installed");
    for link in ENABLE_LINKS {
        assert!(
            std::fs::symlink_metadata(link).is_err(),
            "{link} left after purge"
        );
    }
    for state in [
        "/var/lib/systemd/deb-systemd-helper-enabled/braid.service.dsh-also",
        "/var/lib/systemd/deb-systemd-helper-masked/braid.service",
    ] {
        assert!(!Path::new(state).exists(), "{state} left after purge");
    }
}
