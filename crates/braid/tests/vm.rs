//! Kernel WireGuard and VRF isolation, verified on Debian's stock kernel in a VM (this
//! machine's kernel has neither). scripts/vm/build.sh fetches the kernel package and builds
//! an initramfs with busybox, iproute2, wg, ping and the braid binary under test; qemu boots
//! it with software emulation (TCG); scripts/vm/guest.sh runs the checks inside, in network
//! namespaces, and prints one `VMTEST PASS|FAIL name` line per check on the console. Any
//! failure, a missing summary or a timeout fails this test. Where qemu, busybox-static or
//! the kernel package cannot be had, it says so loudly and skips.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The whole VM run, boot to power-off; the suite takes a few minutes under TCG.
const VM_TIMEOUT: Duration = Duration::from_secs(540);

/// Checks that must be among the passes (the guest script names them).
const REQUIRED: &[&str] = &[
    "mesh: braid up on n1",
    "mesh: wg show on n1's ip4 link to n2 agrees with the plan",
    "mesh: every link has a handshake",
    "mesh: ping n3 -> n2 over the ip6 link",
    "mesh: ping n1 -> n3's network (static routes)",
    "mesh: n1 reports its links to n2 unchanged",
    "mesh: n1's links to n2 untouched (same ifindex and session)",
    "mesh: n1's ip4 link to n3 removed",
    "mesh: braid up with an invalid registry fails naming it",
    "mesh: invalid input left n1's links as they were",
    "mesh: nothing of braid's left on n3",
    "vrf: n1's links and bridge are in VRF brdvrf",
    "vrf: n2's braid routes are in the VRF's table",
    "vrf: n3 has no braid route in the main table",
    "vrf: ping n2 -> n1's network (static routes)",
    "vrf: nothing of braid's left on n1",
    "mixed: n1 status: backend auto chose kernel",
    "mixed: n2 status: backend userspace",
    "mixed: handshakes between kernel and userspace",
    "mixed: n1 status counts the kernel links' packets",
    "mixed: n2's TUN links and bridge are in VRF brdvrf",
    "mixed: n2's braid routes are in the VRF's table",
    "mixed: n2 has no braid route in the main table",
    "mixed: ping n2 -> n1's network (from its VRF)",
    "mixed: ping userspace n2 -> kernel n1 over the ip4 link",
    "mixed: nothing of braid's left on n2",
    "mixed: reload on n1 (keepalive 3) updates both links",
    "mixed: n1's link updated in place (same ifindex)",
    "mixed: n1's link has keepalive 3",
];

/// Checks of babeld over kernel links, required when this machine has babeld (it goes into
/// the VM).
const REQUIRED_BABEL: &[&str] = &[
    "babel: every link has a handshake",
    "babel: n1 learns both peers' networks",
    "babel: ping n3 -> n1's network",
    "babel: n1's deleted kernel link is made again",
    "babel: ping n1 -> n2 over the link made again",
    "babel: nothing of braid's left on n2",
];

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn on_path(tool: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(tool).is_file()))
}

/// qemu, killed (by its PID, through the child handle) and reaped when dropped.
struct Qemu(Child);

impl Drop for Qemu {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn kernel_backend_vrf_and_a_mixed_mesh_in_a_vm() {
    let needed = [
        "qemu-system-x86_64",
        "busybox",
        "dpkg-deb",
        "depmod",
        "cpio",
        "apt-get",
        "wg",
        "ping",
        "ip",
    ];
    let missing: Vec<&str> = needed.into_iter().filter(|t| !on_path(t)).collect();
    if !missing.is_empty() {
        eprintln!(
            "WARNING: SKIPPED the VM test (kernel backend, VRF): {} not installed; run scripts/deps.sh",
            missing.join(", ")
        );
        return;
    }
    let work = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let out = work.path().join("vm");
    let started = Instant::now();
    let build = Command::new("bash")
        .arg(repo_root().join("scripts/vm/build.sh"))
        .arg(env!("CARGO_BIN_EXE_braid"))
        .arg(&out)
        .output()
        .expect("run scripts/vm/build.sh");
    let build_log = String::from_utf8_lossy(&build.stderr);
    match build.status.code() {
        Some(0) => eprintln!("{}", build_log.trim()),
        Some(2) => {
            eprintln!(
                "WARNING: SKIPPED the VM test (kernel backend, VRF): {}",
                build_log.trim()
            );
            return;
        }
        _ => panic!("scripts/vm/build.sh failed:\n{build_log}"),
    }
    let built = started.elapsed();

    let mut qemu = Qemu(
        Command::new("qemu-system-x86_64")
            .args(["-accel", "tcg", "-cpu", "max", "-m", "1024", "-smp", "1"])
            .args(["-nographic", "-no-reboot", "-nic", "none"])
            .arg("-kernel")
            .arg(out.join("vmlinuz"))
            .arg("-initrd")
            .arg(out.join("initramfs.gz"))
            .args([
                "-append",
                "console=ttyS0 panic=-1 quiet loglevel=3 rdinit=/init",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start qemu-system-x86_64"),
    );
    let (tx, rx) = mpsc::channel::<String>();
    let stdout = qemu.0.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).split(b'\n') {
            let Ok(line) = line else { break };
            let line = String::from_utf8_lossy(&line).trim_end().to_string();
            if tx.send(line).is_err() {
                break;
            }
        }
    });

    let deadline = Instant::now() + VM_TIMEOUT;
    let mut console = Vec::new();
    let mut finished = false;
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        match rx.recv_timeout(left) {
            Ok(line) => {
                if line.contains("VMTEST") {
                    eprintln!("{line}");
                }
                let end = line.contains("VMTEST END");
                console.push(line);
                if end {
                    finished = true;
                    break;
                }
            }
            Err(_) => break, // timed out, or qemu closed its console
        }
    }
    let elapsed = started.elapsed();
    drop(qemu);
    let _ = reader.join();

    let lines: Vec<&str> = console
        .iter()
        .filter_map(|l| l.split_once("VMTEST ").map(|(_, rest)| rest))
        .collect();
    let all = console.join("\n");
    assert!(
        finished,
        "the VM did not finish within {VM_TIMEOUT:?} (or qemu stopped early); console:\n{all}"
    );
    assert!(
        lines.iter().any(|l| l.starts_with("BOOT kernel")),
        "no boot line; console:\n{all}"
    );
    let failures: Vec<&&str> = lines.iter().filter(|l| l.starts_with("FAIL")).collect();
    assert!(
        failures.is_empty(),
        "{} VM checks failed:\n{}\n\nconsole:\n{all}",
        failures.len(),
        failures
            .iter()
            .map(|l| l.to_string())
            .collect::<Vec<_>>()
            .join("\n")
    );
    let passed: Vec<&str> = lines
        .iter()
        .filter_map(|l| l.strip_prefix("PASS "))
        .collect();
    let babel: &[&str] = if on_path("babeld") {
        REQUIRED_BABEL
    } else {
        eprintln!(
            "WARNING: babeld is not installed: Babel over kernel links is not checked in the VM"
        );
        &[]
    };
    for name in REQUIRED.iter().chain(babel) {
        assert!(
            passed.contains(name),
            "check `{name}` did not run; console:\n{all}"
        );
    }
    let done = lines
        .iter()
        .find(|l| l.starts_with("DONE"))
        .unwrap_or_else(|| panic!("no summary line; console:\n{all}"));
    assert!(done.contains("fail=0"), "{done}");
    eprintln!(
        "VM suite: {} checks passed on Debian's kernel {}; build {:.0?}, total {:.0?} ({done})",
        passed.len(),
        std::fs::read_to_string(out.join("kernel-version"))
            .unwrap_or_default()
            .trim(),
        built,
        elapsed
    );
}
