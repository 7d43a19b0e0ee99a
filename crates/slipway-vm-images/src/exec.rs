//! The default executor: customizers run over the mounted image in a
//! sandbox of their own (bubblewrap: own namespaces, no host `/proc` or
//! devices, the runner capability set and egress policy; no KVM, no boot),
//! their output prefixed `PACKER OUT` / `PACKER ERR` in the run's
//! `customization.log`. Every file the server itself writes into the image
//! goes through an image [`Tree`].

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};

use command_fds::{CommandFdExt, FdMapping};
use slipway_hostfs::Tree;

use crate::sandbox_root::{SandboxRoot, USER_NAMESPACE_FD};

use crate::BuildError;
use tokio::io::{AsyncBufReadExt, BufReader};

/// `PATH` inside the image; the `sudo` shim dir comes last so a real
/// `sudo` wins.
const CHROOT_PATH: &str =
    "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:/tmp/.slipway/bin";

/// `sh -ec` script of the `File` customizer in both executors: moves `$2`
/// to `$1` from inside the image (so symlinks resolve there), making
/// `$1`'s folder.
pub const MOVE_INTO_PLACE: &str = "mkdir -p \"$(dirname \"$1\")\" && mv \"$2\" \"$1\"";

/// A run's `customization.log`: append-only lines.
#[derive(Debug, Clone)]
pub struct RunLog {
    path: PathBuf,
    file: Arc<Mutex<std::fs::File>>,
}

impl RunLog {
    /// Opens (creating) the log at `path`.
    pub fn open(path: &Path) -> std::io::Result<RunLog> {
        if let Some(d) = path.parent() {
            std::fs::create_dir_all(d)?;
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        Ok(RunLog {
            path: path.to_path_buf(),
            file: Arc::new(Mutex::new(file)),
        })
    }

    /// The log file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends `PACKER OUT <line>`.
    pub fn out(&self, line: &str) {
        self.write("PACKER OUT", line)
    }

    /// Appends `PACKER ERR <line>`.
    pub fn err(&self, line: &str) {
        self.write("PACKER ERR", line)
    }

    fn write(&self, prefix: &str, line: &str) {
        if let Ok(mut f) = self.file.lock() {
            let _ = writeln!(f, "{prefix} {line}");
        }
    }
}

/// Kills a process group when dropped (so a timed-out or canceled script
/// takes its children with it and the image can be unmounted).
struct GroupKill(u32);

impl Drop for GroupKill {
    fn drop(&mut self) {
        let _ = std::process::Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.0)])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// The mounted image root as a [`Tree`]: everything the server writes into
/// an image (which customizers and image sources control) resolves beneath
/// it; a symlink planted to lead out is an error naming the entry.
pub fn image_tree(root: &Path) -> Result<Tree, BuildError> {
    Ok(Tree::open(root)?)
}

/// Prepares a mounted image for customizing: the host's resolv.conf (the
/// image's own is kept aside), a `policy-rc.d` that stops package scripts
/// from starting services, and a `sudo` shim for scripts written for AIB.
pub fn prepare(root: &Path) -> Result<(), BuildError> {
    let host = std::fs::read("/etc/resolv.conf").unwrap_or_default();
    use_resolver(root, &host)?;
    let tree = image_tree(root)?;
    if !tree.entry_exists("usr/sbin/policy-rc.d") {
        tree.write(
            "usr/sbin/policy-rc.d",
            b"#!/bin/sh\n# slipway: no service starts while customizing\nexit 101\n",
            0o755,
        )?;
    }
    tree.write(
        "tmp/.slipway/bin/sudo",
        b"#!/bin/sh\n# slipway: customizers already run as root\nwhile [ $# -gt 0 ]; do case \"$1\" in -u|-g) shift 2;; -*) shift;; *) break;; esac; done\nexec \"$@\"\n",
        0o755,
    )?;
    Ok(())
}

/// Puts `resolv_conf` at the image's `/etc/resolv.conf` for the build,
/// keeping the image's own (file or symlink) aside for [`deprovision`].
pub fn use_resolver(root: &Path, resolv_conf: &[u8]) -> Result<(), BuildError> {
    let tree = image_tree(root)?;
    let (resolv, kept) = ("etc/resolv.conf", "etc/resolv.conf.slipway-orig");
    if tree.entry_exists(resolv) && !tree.entry_exists(kept) {
        tree.rename(resolv, kept)?;
    }
    Ok(tree.write(resolv, resolv_conf, 0o644)?)
}

/// Undoes [`prepare`] / [`use_resolver`] and removes per-build identity:
/// machine id, SSH host keys (regenerated at first boot), and cloud-init's
/// instance state and logs (`cloud-init clean --logs`), so the image's
/// first boot provisions it afresh. Runs after customizers, so every path
/// goes through the image [`Tree`]: nothing they planted leads a write out.
pub fn deprovision(root: &Path) -> Result<(), BuildError> {
    let tree = image_tree(root)?;
    let (resolv, kept) = ("etc/resolv.conf", "etc/resolv.conf.slipway-orig");
    if tree.entry_exists(kept) {
        tree.remove_all(resolv)?;
        tree.rename(kept, resolv)?;
    }
    let policy = "usr/sbin/policy-rc.d";
    if tree
        .read_to_string(policy, 4096)
        .is_ok_and(|t| t.contains("slipway:"))
    {
        tree.remove_file(policy)?;
    }
    for gone in [
        "tmp/.slipway",
        "var/lib/cloud",
        "var/log/cloud-init.log",
        "var/log/cloud-init-output.log",
    ] {
        tree.remove_all(gone)?;
    }
    if tree.is_file("etc/machine-id") {
        tree.write("etc/machine-id", b"", 0o444)?;
    }
    for name in tree.list("etc/ssh").unwrap_or_default() {
        if name.starts_with("ssh_host_") {
            tree.remove_file(&format!("etc/ssh/{name}"))?;
        }
    }
    // Debian's first boot makes new host keys only when this unit runs.
    let regen = "etc/systemd/system/multi-user.target.wants/slipway-ssh-keygen.service";
    if tree.exists("usr/sbin/sshd") && !tree.entry_exists(regen) {
        tree.write(
            "etc/systemd/system/slipway-ssh-keygen.service",
            b"[Unit]\nDescription=Generate SSH host keys\nBefore=ssh.service\nConditionPathExists=!/etc/ssh/ssh_host_ed25519_key\n\n[Service]\nType=oneshot\nExecStart=/usr/bin/ssh-keygen -A\n\n[Install]\nWantedBy=multi-user.target\n",
            0o644,
        )
        ?;
        tree.symlink("/etc/systemd/system/slipway-ssh-keygen.service", regen)?;
    }
    crate::base::write_boot_config(root)
}

/// Runs `argv` over the image `root` in the customizer sandbox
/// ([`slipway_core::isolation::customizer_command`]: root of the build's
/// user namespace, own mount, PID, IPC and UTS namespaces, fresh `/proc`,
/// minimal `/dev`, kept capabilities only; network `netns` or none),
/// streaming its output to `log`; the process group is killed when this
/// future is dropped (timeout, cancel) and after the command ends (stray
/// background children).
///
/// Errors: "exit status N" (or the signal), or a spawn failure.
pub async fn run_confined(
    root: &SandboxRoot,
    netns: Option<&str>,
    argv: &[&str],
    log: &RunLog,
) -> Result<(), BuildError> {
    let env = [
        ("PATH", CHROOT_PATH),
        ("HOME", "/root"),
        ("LANG", "C.UTF-8"),
        ("TERM", "dumb"),
        ("DEBIAN_FRONTEND", "noninteractive"),
    ];
    let full = slipway_core::isolation::customizer_command(
        &root.path().to_string_lossy(),
        netns,
        &SandboxRoot::user_namespace_path(),
        &env,
        argv,
    );
    let mut cmd = tokio::process::Command::new(&full[0]);
    cmd.args(&full[1..]).env_clear().current_dir("/");
    cmd.fd_mappings(vec![FdMapping {
        parent_fd: root.user_namespace()?,
        child_fd: USER_NAMESPACE_FD,
    }])
    .map_err(|_| BuildError::Builder("the customizer's descriptors collide".into()))?;
    if let Some(path) = std::env::var_os("PATH") {
        cmd.env("PATH", path);
    }
    logged(cmd, None, log).await
}

/// Runs `cmd` in its own process group with `stdin` (or nothing) as its
/// input, its stdout and stderr appended to `log` as `PACKER OUT` /
/// `PACKER ERR` lines. The group is killed when the future is dropped and
/// after the command ends.
///
/// Errors: "exit status N", "killed by a signal", or the spawn failure
/// naming the program.
pub async fn logged(
    mut cmd: tokio::process::Command,
    stdin: Option<Vec<u8>>,
    log: &RunLog,
) -> Result<(), BuildError> {
    let program = cmd.as_std().get_program().to_string_lossy().into_owned();
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .process_group(0)
    .kill_on_drop(true);
    let mut child = cmd.spawn().map_err(|source| BuildError::ToolMissing {
        program: program.clone(),
        source,
    })?;
    let group = GroupKill(child.id().unwrap_or(0));
    let mut tasks = Vec::new();
    if let (Some(bytes), Some(mut pipe)) = (stdin, child.stdin.take()) {
        tasks.push(tokio::spawn(async move {
            use tokio::io::AsyncWriteExt;
            // A command that stops reading early closes the pipe; its exit
            // status tells what happened.
            let _ = pipe.write_all(&bytes).await;
        }));
    }
    if let Some(out) = child.stdout.take() {
        let log = log.clone();
        tasks.push(tokio::spawn(async move {
            let mut lines = BufReader::new(out).lines();
            while let Ok(Some(l)) = lines.next_line().await {
                log.out(&l);
            }
        }));
    }
    if let Some(err) = child.stderr.take() {
        let log = log.clone();
        tasks.push(tokio::spawn(async move {
            let mut lines = BufReader::new(err).lines();
            while let Ok(Some(l)) = lines.next_line().await {
                log.err(&l);
            }
        }));
    }
    let status = child
        .wait()
        .await
        .map_err(BuildError::io(format!("waiting for {program}")))?;
    drop(group);
    for t in tasks {
        let _ = t.await;
    }
    if status.success() {
        Ok(())
    } else {
        Err(BuildError::Exited {
            code: status.code(),
        })
    }
}
