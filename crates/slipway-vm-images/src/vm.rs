//! The full-boot executor: the working disk boots under qemu (KVM when it
//! works, TCG otherwise) with a cloud-init NoCloud seed that creates the
//! build user with a per-run SSH key; customizers then run over SSH as root
//! (`sudo -n`), their output in the run's `customization.log` like the
//! chroot executor's. This is the Packer `qemu` builder's model
//! (`../shared/reference/image-builder.md` §3.3, §4.1 "Full boot").
//!
//! Per run, in the staging folder: `ssh_key{,.pub}`, `seed/{user-data,
//! meta-data}` and `seed.iso` (volume id `cidata`), `console.log` (the
//! guest's serial console) and `qemu.log` (qemu's own output).

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use command_fds::{CommandFdExt, FdMapping};
use slipway_core::isolation;
use slipway_core::shell::quote;

use crate::exec::{self, RunLog};
use crate::BuildError;

/// The user cloud-init creates for the build (passwordless sudo, the run's
/// SSH key); deprovisioning removes it.
pub const BUILD_USER: &str = "slipway";
/// How long a booting VM may take to answer SSH (TCG boots take ~30 s here;
/// Packer users raise this to 20–60 minutes for slow emulation).
const SSH_WAIT: Duration = Duration::from_secs(20 * 60);
/// How long the serial console may stay silent before SSH answers: past
/// this the boot counts as hung and the VM boots once more. Guest kernels
/// under TCG have been seen to stop for good right after choosing their
/// clocksource; a booting Debian or Ubuntu image writes to its console
/// every few seconds until its login prompt.
const CONSOLE_SILENCE: Duration = Duration::from_secs(5 * 60);
/// How many times one accelerator boots a VM whose boot hung.
const HUNG_BOOT_ATTEMPTS: usize = 2;
/// The CPU model under TCG: a named x86-64-v2 model that TCG emulates in
/// full (no "TCG doesn't support requested feature" warnings). `max`
/// exposes every TCG feature and has hung SMP guests at boot. Tests that
/// boot a built image themselves use it too.
pub const TCG_CPU: &str = "Nehalem";
/// How long `systemctl poweroff` may take before qemu is killed.
const POWEROFF_WAIT: Duration = Duration::from_secs(5 * 60);
/// UEFI firmware code (Debian's `ovmf`), read-only, for disks with an EFI
/// System Partition (Azure generation 2).
const OVMF_CODE: &str = "/usr/share/OVMF/OVMF_CODE_4M.fd";
/// The UEFI variable store each boot of such a disk starts from (copied
/// into the run's staging folder: the firmware writes to it).
const OVMF_VARS: &str = "/usr/share/OVMF/OVMF_VARS_4M.fd";
/// `resolv.conf` for the build VM: qemu's user-mode network DNS forwarder.
pub const VM_RESOLV_CONF: &[u8] =
    b"# slipway build VM: qemu user-network DNS\nnameserver 10.0.2.3\n";

/// Which qemu accelerator builds use (`slipway serve --vm-accel`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum AccelMode {
    /// KVM when `/dev/kvm` opens and KVM has not failed on this host since
    /// the server started, else TCG; a KVM failure while booting (qemu
    /// ending before SSH answers, or its `KVM internal error`) falls back to
    /// TCG within the same run.
    #[default]
    Auto,
    /// KVM only.
    Kvm,
    /// TCG (software emulation) only.
    Tcg,
}

/// A VM accelerator name other than `auto`, `kvm` or `tcg`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("VM accelerator '{0}' is not known: expected auto, kvm or tcg")]
pub struct UnknownAccelMode(pub String);

impl FromStr for AccelMode {
    type Err = UnknownAccelMode;

    /// `auto` | `kvm` | `tcg`.
    fn from_str(s: &str) -> Result<AccelMode, UnknownAccelMode> {
        match s {
            "auto" => Ok(AccelMode::Auto),
            "kvm" => Ok(AccelMode::Kvm),
            "tcg" => Ok(AccelMode::Tcg),
            other => Err(UnknownAccelMode(other.to_string())),
        }
    }
}

/// The accelerator policy of one server, remembering a KVM failure.
#[derive(Debug, Default)]
pub struct Accel {
    mode: AccelMode,
    kvm_failed: AtomicBool,
}

impl Accel {
    /// A policy in `mode`.
    pub fn new(mode: AccelMode) -> Accel {
        Accel {
            mode,
            kvm_failed: AtomicBool::new(false),
        }
    }

    /// Accelerators to try, in order (`kvm`, `tcg`).
    fn candidates(&self) -> Vec<&'static str> {
        match self.mode {
            AccelMode::Tcg => vec!["tcg"],
            AccelMode::Kvm => vec!["kvm"],
            AccelMode::Auto => {
                let usable = std::fs::OpenOptions::new()
                    .read(true)
                    .write(true)
                    .open("/dev/kvm")
                    .is_ok();
                if usable && !self.kvm_failed.load(Ordering::Relaxed) {
                    vec!["kvm", "tcg"]
                } else {
                    vec!["tcg"]
                }
            }
        }
    }
}

/// vCPUs and memory of the build VM (from `vmProfile.vmSize`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shape {
    /// Virtual CPUs.
    pub vcpus: u32,
    /// Memory, MiB.
    pub memory_mib: u32,
}

/// A running build VM. Dropping it kills qemu (timeout, cancel).
#[derive(Debug)]
pub struct Vm {
    child: tokio::process::Child,
    /// The network namespace qemu runs in, which `ssh` enters too.
    netns: Option<String>,
    port: u16,
    key: PathBuf,
    console: PathBuf,
    qemu_log: PathBuf,
    /// The accelerator it runs with, `kvm` or `tcg`.
    pub accel: &'static str,
}

enum BootError {
    /// KVM could not run the guest; TCG may.
    Kvm(String),
    /// The console went silent, the guest kernel reported a stall
    /// ([`kernel_stall`]), or TCG's qemu was ended by a signal it did not
    /// get from us (qemu 7.2's TCG has crashed in a vCPU thread here),
    /// before SSH answered; a new boot may work.
    Hung(String),
    Failed(String),
}

/// Watches the size of a serial console to tell a slow boot (the console
/// grows) from a hung one (silent for a whole silence; build VMs use
/// [`CONSOLE_SILENCE`]).
#[derive(Debug)]
pub struct ConsoleWatch {
    len: u64,
    changed: Instant,
    silence: Duration,
}

impl ConsoleWatch {
    /// A watch of a console that is empty at `now` and may stay silent for
    /// `silence`.
    pub fn new(now: Instant, silence: Duration) -> ConsoleWatch {
        ConsoleWatch {
            len: 0,
            changed: now,
            silence,
        }
    }

    /// Records the console's size (bytes) at `now`; true once it has not
    /// changed for the whole silence.
    pub fn silent(&mut self, len: u64, now: Instant) -> bool {
        if len != self.len {
            self.len = len;
            self.changed = now;
        }
        now.duration_since(self.changed) >= self.silence
    }
}

/// What a guest kernel prints on its console when it stops making progress:
/// RCU stall reports (`rcu: INFO: rcu_sched detected stalls on CPUs/tasks`,
/// `self-detected stall on CPU`), the soft-lockup watchdog, the hung-task
/// detector and a panic (Linux's `kernel/rcu/tree_stall.h`,
/// `kernel/watchdog.c`, `kernel/hung_task.c`, `kernel/panic.c`). None
/// showed in 28 TCG boots of a Debian 12 image here, four at a time on two
/// cores; a TCG guest that stopped making progress in a CI run kept
/// printing kernel stack dumps instead of going silent.
pub const KERNEL_STALL_REPORTS: [&str; 4] = [
    "detected stall",
    "BUG: soft lockup",
    "blocked for more than",
    "Kernel panic",
];

/// The first console line holding one of [`KERNEL_STALL_REPORTS`], trimmed:
/// `Some` when the guest kernel says it stopped making progress.
pub fn kernel_stall(console: &str) -> Option<&str> {
    console
        .lines()
        .find(|l| KERNEL_STALL_REPORTS.iter().any(|r| l.contains(r)))
        .map(str::trim)
}

/// Classifies a TCG qemu that ended with `status` before its guest
/// answered SSH: ended by a signal (a crash) a [`BootError::Hung`] boot
/// that may work the next time, any other end [`BootError::Failed`].
/// `logs` (console and qemu log tails) ends the message.
fn tcg_ended(status: std::process::ExitStatus, logs: &str) -> BootError {
    use std::os::unix::process::ExitStatusExt;
    let message = format!("qemu ended ({status}) before the build VM answered SSH; {logs}");
    match status.signal() {
        Some(_) => BootError::Hung(message),
        None => BootError::Failed(message),
    }
}

fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Runs a helper program to completion off the async threads with
/// [`crate::disk::run`]. Errors: the program and its stderr.
async fn helper(program: &'static str, args: &[&str]) -> Result<(), BuildError> {
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    crate::blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        crate::disk::run(program, &args).map(|_| ())
    })
    .await
}

/// Writes the NoCloud seed (`user-data`, `meta-data`) for `instance_id`
/// with the build user holding `public_key`, and packs it as an ISO 9660
/// volume labelled `cidata` (cloud-init's NoCloud contract).
///
/// Errors: I/O, or genisoimage's message.
async fn make_seed(
    work: &Path,
    instance_id: &str,
    public_key: &str,
) -> Result<PathBuf, BuildError> {
    let dir = work.join("seed");
    std::fs::create_dir_all(&dir).map_err(BuildError::io(dir.display().to_string()))?;
    let user_data = format!(
        "#cloud-config\nusers:\n  - name: {BUILD_USER}\n    sudo: \"ALL=(ALL) NOPASSWD:ALL\"\n    shell: /bin/sh\n    lock_passwd: true\n    ssh_authorized_keys:\n      - {}\n",
        public_key.trim()
    );
    let meta_data = format!("instance-id: {instance_id}\nlocal-hostname: slipway-build\n");
    for (name, text) in [("user-data", user_data), ("meta-data", meta_data)] {
        let p = dir.join(name);
        std::fs::write(&p, text).map_err(BuildError::io(p.display().to_string()))?;
    }
    let iso = work.join("seed.iso");
    let (iso_s, ud, md) = (
        iso.to_string_lossy().into_owned(),
        dir.join("user-data").to_string_lossy().into_owned(),
        dir.join("meta-data").to_string_lossy().into_owned(),
    );
    helper(
        "genisoimage",
        &[
            "-quiet", "-output", &iso_s, "-volid", "cidata", "-joliet", "-rock", &ud, &md,
        ],
    )
    .await?;
    Ok(iso)
}

/// A command running `program` in network namespace `netns` (a path under
/// `/run/netns`, entered as [`isolation::in_network`] says), or in the
/// server's own without one.
fn in_netns(netns: Option<&str>, program: &str) -> tokio::process::Command {
    let mut argv = isolation::in_network(netns);
    argv.push(program.to_string());
    let mut c = tokio::process::Command::new(&argv[0]);
    c.args(&argv[1..]);
    c
}

/// The host files a build VM's qemu uses, opened by the server and handed
/// to qemu as descriptors (`-add-fd`, then `/dev/fdset/<n>` as the file):
/// qemu runs as a user of its own ([`isolation::unprivileged`]) that can
/// open nothing in the server's folders. The file's path goes along as the
/// fd set's `opaque` note, so qemu's command line still names it.
struct QemuFiles {
    args: Vec<String>,
    mappings: Vec<FdMapping>,
    sets: u32,
}

/// How qemu may use a file handed to it.
#[derive(Clone, Copy)]
enum Access {
    /// Read only (the seed).
    Read,
    /// Read and write (disks, the UEFI variable store): qemu's block layer
    /// asks for a read-only descriptor while probing, so the set holds one
    /// of each.
    ReadWrite,
    /// Created or truncated, written only (the serial console's log).
    Create,
}

impl QemuFiles {
    fn new() -> QemuFiles {
        QemuFiles {
            args: Vec::new(),
            mappings: Vec::new(),
            sets: 0,
        }
    }

    /// Opens `path` for `access` and answers the name qemu opens it by.
    ///
    /// Errors: the file cannot be opened.
    fn add(&mut self, path: &Path, access: Access) -> Result<String, BuildError> {
        let open = |read: bool, write: bool| {
            let mut o = std::fs::OpenOptions::new();
            o.read(read).write(write);
            if !read {
                o.create(true).truncate(true);
            }
            o.open(path)
                .map(OwnedFd::from)
                .map_err(BuildError::io(path.display().to_string()))
        };
        let fds = match access {
            Access::Read => vec![open(true, false)?],
            Access::ReadWrite => vec![open(true, true)?, open(true, false)?],
            Access::Create => vec![open(false, true)?],
        };
        self.sets += 1;
        let opaque = qemu_option_value(&path.display().to_string());
        for fd in fds {
            // 0-2 are qemu's standard streams.
            let child_fd = 3 + self.mappings.len() as i32;
            self.args.push("-add-fd".into());
            self.args
                .push(format!("fd={child_fd},set={},opaque={opaque}", self.sets));
            self.mappings.push(FdMapping {
                parent_fd: fd,
                child_fd,
            });
        }
        Ok(format!("/dev/fdset/{}", self.sets))
    }
}

/// `value` inside a qemu option list, where a comma is written `,,`.
fn qemu_option_value(value: &str) -> String {
    value.replace(',', ",,")
}

/// qemu's firmware arguments for `disk`: none for a BIOS disk (qemu's
/// default SeaBIOS), OVMF's code (world-readable, by path) and a fresh copy
/// of its variable store (`<work>/efivars.fd`, handed over in `files`) as
/// pflash drives for a UEFI one.
///
/// Errors: the disk's partition table cannot be read; OVMF is not
/// installed.
fn firmware_drives(
    disk: &Path,
    work: &Path,
    files: &mut QemuFiles,
) -> Result<Vec<String>, BuildError> {
    if crate::disk::firmware(disk)? == crate::disk::Firmware::Bios {
        return Ok(Vec::new());
    }
    let vars = work.join("efivars.fd");
    std::fs::copy(OVMF_VARS, &vars).map_err(|source| BuildError::ToolMissing {
        program: format!(
            "UEFI firmware {OVMF_VARS} (Debian's ovmf package), to boot a generation 2 disk"
        ),
        source,
    })?;
    if let Err(source) = std::fs::metadata(OVMF_CODE) {
        return Err(BuildError::ToolMissing {
            program: format!(
                "UEFI firmware {OVMF_CODE} (Debian's ovmf package), to boot a generation 2 disk"
            ),
            source,
        });
    }
    let vars = files.add(&vars, Access::ReadWrite)?;
    Ok(vec![
        "-drive".into(),
        format!("if=pflash,format=raw,unit=0,readonly=on,file={OVMF_CODE}"),
        "-drive".into(),
        format!("if=pflash,format=raw,unit=1,file={vars}"),
    ])
}

/// The supplementary groups qemu needs for `accel`: the group of
/// `/dev/kvm` for KVM (an unprivileged qemu opens it through its group),
/// none for TCG.
fn accel_groups(accel: &str) -> Vec<u32> {
    use std::os::unix::fs::MetadataExt;
    match std::fs::metadata("/dev/kvm") {
        Ok(m) if accel == "kvm" => vec![m.gid()],
        _ => Vec::new(),
    }
}

fn free_port() -> Result<u16, BuildError> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(BuildError::io("a free port"))?;
    l.local_addr()
        .map(|a| a.port())
        .map_err(BuildError::io("a free port"))
}

impl Vm {
    /// Boots the raw `disk` (which must have cloud-init and sshd) with a
    /// fresh SSH key and NoCloud seed in `work`, and waits until the build
    /// user can log in over SSH (forwarded from 127.0.0.1) and cloud-init
    /// has finished. With [`AccelMode::Auto`], a KVM failure reboots the VM
    /// under TCG and is remembered. qemu runs in network namespace `netns`
    /// (a path under `/run/netns`; the server's own network without one),
    /// where `ssh` enters too, under its seccomp sandbox
    /// ([`isolation::BUILD_VM_SANDBOX`]) and as an unprivileged user of its
    /// own ([`isolation::unprivileged`]), with its files handed over as
    /// descriptors.
    ///
    /// Errors: a helper (ssh-keygen, genisoimage, qemu) failing, qemu
    /// exiting before SSH answers, or SSH not answering within 20 minutes;
    /// each names the console and qemu logs and quotes their tails.
    pub async fn boot(
        disk: &Path,
        work: &Path,
        instance_id: &str,
        shape: Shape,
        accel: &Accel,
        netns: Option<&str>,
        log: &RunLog,
    ) -> Result<Vm, BuildError> {
        let key = work.join("ssh_key");
        let _ = std::fs::remove_file(&key);
        let _ = std::fs::remove_file(key.with_extension("pub"));
        let key_s = key.to_string_lossy().into_owned();
        helper(
            "ssh-keygen",
            &[
                "-q",
                "-t",
                "ed25519",
                "-N",
                "",
                "-C",
                "slipway-build",
                "-f",
                &key_s,
            ],
        )
        .await?;
        let public = std::fs::read_to_string(work.join("ssh_key.pub"))
            .map_err(BuildError::io("reading the build key"))?;
        let seed = make_seed(work, instance_id, &public).await?;
        let candidates = accel.candidates();
        let mut attempts = Vec::new();
        for a in &candidates {
            attempts.extend(std::iter::repeat_n(*a, HUNG_BOOT_ATTEMPTS));
        }
        let mut attempts = attempts.into_iter().peekable();
        while let Some(a) = attempts.next() {
            let mut vm = Vm::start(disk, &seed, work, &key, shape, a, netns)?;
            log.out(&format!(
                "slipway: booting the build VM (qemu, accel={a}, {} vCPUs, {} MiB, SSH on 127.0.0.1:{})",
                shape.vcpus, shape.memory_mib, vm.port
            ));
            let started = Instant::now();
            match vm.wait_ssh().await {
                Ok(()) => {
                    log.out(&format!(
                        "slipway: SSH answered after {} s; waiting for cloud-init",
                        started.elapsed().as_secs()
                    ));
                    if let Err(e) =
                        exec::logged(vm.ssh("cloud-init status --wait"), None, log).await
                    {
                        log.err(&format!(
                            "slipway: cloud-init reported a problem ({e}); going on"
                        ));
                    }
                    return Ok(vm);
                }
                Err(BootError::Hung(m)) if attempts.peek() == Some(&a) => {
                    log.err(&format!("slipway: {m}; booting it again"));
                    drop(vm);
                }
                Err(BootError::Kvm(m)) if attempts.clone().any(|later| later != a) => {
                    accel.kvm_failed.store(true, Ordering::Relaxed);
                    log.err(&format!(
                        "slipway: KVM could not run the guest ({m}); booting again with TCG"
                    ));
                    drop(vm);
                    while attempts.peek() == Some(&a) {
                        attempts.next();
                    }
                }
                Err(BootError::Kvm(m)) | Err(BootError::Hung(m)) | Err(BootError::Failed(m)) => {
                    return Err(BuildError::Builder(m))
                }
            }
        }
        Err(BuildError::Builder(
            "no accelerator to boot the build VM with".into(),
        ))
    }

    fn start(
        disk: &Path,
        seed: &Path,
        work: &Path,
        key: &Path,
        shape: Shape,
        accel: &'static str,
        netns: Option<&str>,
    ) -> Result<Vm, BuildError> {
        let port = free_port()?;
        let console = work.join("console.log");
        let qemu_log = work.join("qemu.log");
        let out = std::fs::File::create(&qemu_log)
            .map_err(BuildError::io(qemu_log.display().to_string()))?;
        let err = out
            .try_clone()
            .map_err(BuildError::io(qemu_log.display().to_string()))?;
        let mut files = QemuFiles::new();
        let firmware = firmware_drives(disk, work, &mut files)?;
        let disk_fd = files.add(disk, Access::ReadWrite)?;
        let seed_fd = files.add(seed, Access::Read)?;
        let console_fd = files.add(&console, Access::Create)?;
        let uid = isolation::build_vm_uid(uuid::Uuid::new_v4().as_u64_pair().0);
        let mut argv = isolation::in_network(netns);
        argv.extend(isolation::unprivileged(uid, &accel_groups(accel)));
        let mut cmd = tokio::process::Command::new(&argv[0]);
        cmd.args(&argv[1..]).arg("qemu-system-x86_64");
        // Killed on drop, and powered off (SIGTERM) when the server dies
        // however it dies: a TCG guest left booting would hold two cores.
        slipway_runner::process::end_with_server(cmd.as_std_mut());
        cmd.fd_mappings(std::mem::take(&mut files.mappings))
            .map_err(|_| BuildError::Builder("qemu's descriptors collide".into()))?;
        cmd.args(["-accel", accel])
            .args(["-cpu", if accel == "kvm" { "host" } else { TCG_CPU }])
            .args(["-m", &shape.memory_mib.to_string()])
            .args(["-smp", &shape.vcpus.to_string()])
            .args(["-display", "none", "-nodefaults", "-no-reboot"])
            .args(["-sandbox", isolation::BUILD_VM_SANDBOX])
            .args(&files.args)
            .args(firmware)
            .arg("-drive")
            .arg(format!("file={disk_fd},format=raw,if=virtio,cache=unsafe"))
            .arg("-drive")
            .arg(format!("file={seed_fd},format=raw,if=virtio,readonly=on"))
            .arg("-netdev")
            .arg(format!("user,id=net0,hostfwd=tcp:127.0.0.1:{port}-:22"))
            .args(["-device", "virtio-net-pci,netdev=net0"])
            .arg("-serial")
            .arg(format!("file:{console_fd}"))
            .args(["-monitor", "none"])
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .kill_on_drop(true);
        let child = cmd.spawn().map_err(|source| BuildError::ToolMissing {
            program: "qemu-system-x86_64".into(),
            source,
        })?;
        Ok(Vm {
            child,
            netns: netns.map(str::to_string),
            port,
            key: key.to_path_buf(),
            console,
            qemu_log,
            accel,
        })
    }

    fn logs_tail(&self) -> String {
        format!(
            "console ({}):\n{}\nqemu ({}):\n{}",
            self.console.display(),
            tail(&self.console, 15),
            self.qemu_log.display(),
            tail(&self.qemu_log, 5)
        )
    }

    async fn wait_ssh(&mut self) -> Result<(), BootError> {
        let deadline = Instant::now() + SSH_WAIT;
        let mut console = ConsoleWatch::new(Instant::now(), CONSOLE_SILENCE);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(self.ended_early(status));
            }
            if self.accel == "kvm" {
                let q = std::fs::read_to_string(&self.qemu_log).unwrap_or_default();
                if let Some(line) = q.lines().find(|l| l.contains("KVM internal error")) {
                    return Err(BootError::Kvm(line.trim().to_string()));
                }
            }
            let mut probe = self.ssh("true");
            probe
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .kill_on_drop(true);
            if probe.status().await.is_ok_and(|s| s.success()) {
                return Ok(());
            }
            let text = std::fs::read(&self.console).unwrap_or_default();
            if let Some(report) = kernel_stall(&String::from_utf8_lossy(&text)) {
                return Err(BootError::Hung(format!(
                    "the build VM's kernel reported it stopped making progress ('{report}') before SSH answered; {}",
                    self.logs_tail()
                )));
            }
            if console.silent(text.len() as u64, Instant::now()) {
                return Err(BootError::Hung(format!(
                    "the build VM's console has been silent for {} minutes before SSH answered; {}",
                    CONSOLE_SILENCE.as_secs() / 60,
                    self.logs_tail()
                )));
            }
            if Instant::now() > deadline {
                return Err(BootError::Failed(format!(
                    "the build VM did not answer SSH within {} minutes; {}",
                    SSH_WAIT.as_secs() / 60,
                    self.logs_tail()
                )));
            }
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
    }

    /// Why a boot failed whose qemu ended with `status` before SSH answered.
    fn ended_early(&self, status: std::process::ExitStatus) -> BootError {
        if self.accel == "kvm" {
            let reason = tail(&self.qemu_log, 2).replace('\n', " ");
            return BootError::Kvm(format!("qemu ended ({status}): {reason}"));
        }
        tcg_ended(status, &self.logs_tail())
    }

    /// `ssh … BUILD_USER@127.0.0.1 <remote>`; `remote` is shell text run
    /// by the build user's login shell.
    fn ssh(&self, remote: &str) -> tokio::process::Command {
        let mut c = in_netns(self.netns.as_deref(), "ssh");
        c.arg("-i")
            .arg(&self.key)
            .args(["-p", &self.port.to_string()])
            .args([
                "-o",
                "StrictHostKeyChecking=no",
                "-o",
                "UserKnownHostsFile=/dev/null",
                "-o",
                "BatchMode=yes",
                "-o",
                "LogLevel=ERROR",
                "-o",
                "ConnectTimeout=10",
                "-o",
                "ServerAliveInterval=15",
                "-o",
                "ServerAliveCountMax=8",
            ])
            .arg(format!("{BUILD_USER}@127.0.0.1"))
            .arg(remote);
        c
    }

    /// Copies `bytes` to `path` (in `/tmp/.slipway`) as the build user.
    async fn upload(&self, bytes: Vec<u8>, path: &str, log: &RunLog) -> Result<(), BuildError> {
        let cmd = self.ssh(&format!("mkdir -p /tmp/.slipway && cat > {}", quote(path)));
        exec::logged(cmd, Some(bytes), log)
            .await
            .map_err(|e| BuildError::Builder(format!("copying to the build VM: {e}")))
    }

    /// Runs `script` as root with `/bin/sh -e` (the `i`th customizer).
    ///
    /// Errors: "exit status N" of the script, or the copy failing.
    pub async fn run_script(
        &self,
        i: usize,
        script: Vec<u8>,
        log: &RunLog,
    ) -> Result<(), BuildError> {
        let path = format!("/tmp/.slipway/script-{i}.sh");
        self.upload(script, &path, log).await?;
        let cmd = self.ssh(&format!(
            "sudo -n env DEBIAN_FRONTEND=noninteractive /bin/sh -e {}",
            quote(&path)
        ));
        exec::logged(cmd, None, log).await
    }

    /// Puts `bytes` at `destination` as root, making its folder.
    ///
    /// Errors: the copy or the move failing ("exit status N").
    pub async fn put_file(
        &self,
        i: usize,
        bytes: Vec<u8>,
        destination: &str,
        log: &RunLog,
    ) -> Result<(), BuildError> {
        let incoming = format!("/tmp/.slipway/incoming-{i}");
        self.upload(bytes, &incoming, log).await?;
        let cmd = self.ssh(&format!(
            "sudo -n sh -ec {} sh {} {}",
            quote(exec::MOVE_INTO_PLACE),
            quote(destination),
            quote(&incoming)
        ));
        exec::logged(cmd, None, log).await
    }

    /// Removes the build's scratch files, powers the guest off and waits
    /// for qemu to end (killing it after 5 minutes).
    ///
    /// Errors: the guest not powering off in time, or qemu failing.
    pub async fn shutdown(mut self, log: &RunLog) -> Result<(), BuildError> {
        // The connection drops as the guest goes down; qemu's exit is the
        // answer that counts.
        let _ = exec::logged(
            self.ssh("sudo -n rm -rf /tmp/.slipway; sync; sudo -n systemctl poweroff"),
            None,
            log,
        )
        .await;
        match tokio::time::timeout(POWEROFF_WAIT, self.child.wait()).await {
            Ok(Ok(s)) if s.success() => {
                log.out("slipway: the build VM powered off");
                Ok(())
            }
            Ok(Ok(s)) => Err(BuildError::Builder(format!(
                "qemu ended with {s}; {}",
                self.logs_tail()
            ))),
            Ok(Err(e)) => Err(BuildError::io("waiting for qemu")(e)),
            Err(_) => Err(BuildError::Builder(format!(
                "the build VM did not power off within {} minutes; {}",
                POWEROFF_WAIT.as_secs() / 60,
                self.logs_tail()
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_console_that_keeps_growing_is_a_slow_boot_and_a_silent_one_hangs() {
        let t0 = Instant::now();
        let minute = Duration::from_secs(60);
        let mut watch = ConsoleWatch::new(t0, 5 * minute);
        assert!(
            !watch.silent(0, t0 + 4 * minute),
            "silent, but not for long"
        );
        assert!(!watch.silent(100, t0 + 6 * minute), "the console grew");
        assert!(
            !watch.silent(100, t0 + 10 * minute),
            "4 minutes since it grew"
        );
        assert!(
            watch.silent(100, t0 + 11 * minute),
            "5 minutes since it grew"
        );
        assert!(!watch.silent(200, t0 + 12 * minute), "it grew again");
    }

    #[test]
    fn a_kernel_that_reports_a_stall_or_panic_is_a_hung_boot() {
        let booting = "[    0.893366] clocksource: Switched to clocksource hpet\n\
             [   11.356132] systemd[1]: Installed transient /etc/machine-id file.\n\
             [  OK  ] Started ssh.service - OpenBSD Secure Shell server.\n";
        assert_eq!(kernel_stall(booting), None);
        for (report, line) in [
            (
                "[  568.3] rcu: INFO: rcu_sched detected stalls on CPUs/tasks:",
                "rcu: INFO: rcu_sched detected stalls",
            ),
            (
                "[   90.1] rcu: INFO: rcu_preempt self-detected stall on CPU",
                "self-detected stall on CPU",
            ),
            (
                "[   52.0] watchdog: BUG: soft lockup - CPU#1 stuck for 22s! [systemd-udevd:180]",
                "soft lockup - CPU#1",
            ),
            (
                "[  242.7] INFO: task jbd2/vda1-8:97 blocked for more than 120 seconds.",
                "jbd2/vda1-8:97",
            ),
            (
                "[    1.9] Kernel panic - not syncing: VFS: Unable to mount root fs",
                "Unable to mount root fs",
            ),
        ] {
            let console = format!("{booting}{report}\n[  568.4] RAX: 0000000000000000\n");
            let found = kernel_stall(&console).unwrap_or_default();
            assert!(found.contains(line), "{report}: {found}");
        }
    }

    #[test]
    fn a_tcg_qemu_that_crashed_is_booted_again_one_that_exited_is_not() {
        use std::os::unix::process::ExitStatusExt;
        let segv = std::process::ExitStatus::from_raw(11);
        match tcg_ended(segv, "console: ...") {
            BootError::Hung(m) => assert!(
                m.contains("signal: 11") && m.ends_with("console: ..."),
                "{m}"
            ),
            _ => panic!("a crash is a hung boot"),
        }
        let exit1 = std::process::ExitStatus::from_raw(1 << 8);
        match tcg_ended(exit1, "") {
            BootError::Failed(m) => assert!(m.contains("exit status: 1"), "{m}"),
            _ => panic!("qemu exiting 1 (bad arguments, a missing file) is no hang"),
        }
    }

    #[test]
    fn accel_modes_parse_and_name_the_choices() {
        assert_eq!("auto".parse::<AccelMode>(), Ok(AccelMode::Auto));
        assert_eq!("tcg".parse::<AccelMode>(), Ok(AccelMode::Tcg));
        let e = "hvf".parse::<AccelMode>().unwrap_err().to_string();
        assert!(e.contains("'hvf'") && e.contains("auto, kvm or tcg"), "{e}");
        assert_eq!(Accel::new(AccelMode::Tcg).candidates(), vec!["tcg"]);
        assert_eq!(Accel::new(AccelMode::Kvm).candidates(), vec!["kvm"]);
        let auto = Accel::new(AccelMode::Auto);
        auto.kvm_failed.store(true, Ordering::Relaxed);
        assert_eq!(auto.candidates(), vec!["tcg"]);
    }

    #[tokio::test]
    async fn the_seed_is_a_cidata_volume_with_the_build_user_and_key() {
        let dir = tempfile::tempdir().unwrap();
        let iso = make_seed(dir.path(), "r7", "ssh-ed25519 AAAA test")
            .await
            .unwrap();
        let bytes = std::fs::read(&iso).unwrap();
        // ISO 9660 primary volume descriptor at sector 16: "CD001", and the
        // volume id at offset 40.
        assert_eq!(&bytes[32769..32774], b"CD001");
        assert_eq!(&bytes[32808..32814], b"cidata");
        let ud = std::fs::read_to_string(dir.path().join("seed/user-data")).unwrap();
        assert!(ud.starts_with("#cloud-config\n"), "{ud}");
        assert!(
            ud.contains("name: slipway") && ud.contains("ssh-ed25519 AAAA test"),
            "{ud}"
        );
        let md = std::fs::read_to_string(dir.path().join("seed/meta-data")).unwrap();
        assert!(md.contains("instance-id: r7"), "{md}");
    }
}
