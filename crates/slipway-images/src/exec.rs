//! The default executor: customizers run inside the mounted image with
//! `chroot` (no KVM, no boot), their output prefixed `PACKER OUT` /
//! `PACKER ERR` in the run's `customization.log`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};

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

/// Prepares a mounted image for chroot work: the host's resolv.conf (the
/// image's own is kept aside), a `policy-rc.d` that stops package scripts
/// from starting services, and a `sudo` shim for scripts written for AIB.
pub fn prepare(root: &Path) -> Result<(), String> {
    let io = |what: &Path, e: std::io::Error| format!("{}: {e}", what.display());
    let host = std::fs::read("/etc/resolv.conf").unwrap_or_default();
    use_resolver(root, &host)?;
    let policy = root.join("usr/sbin/policy-rc.d");
    if !policy.exists() {
        std::fs::write(
            &policy,
            "#!/bin/sh\n# slipway: no service starts while customizing\nexit 101\n",
        )
        .map_err(|e| io(&policy, e))?;
        set_exec(&policy)?;
    }
    let shim_dir = root.join("tmp/.slipway/bin");
    std::fs::create_dir_all(&shim_dir).map_err(|e| io(&shim_dir, e))?;
    let sudo = shim_dir.join("sudo");
    std::fs::write(
        &sudo,
        "#!/bin/sh\n# slipway: customizers already run as root\nwhile [ $# -gt 0 ]; do case \"$1\" in -u|-g) shift 2;; -*) shift;; *) break;; esac; done\nexec \"$@\"\n",
    )
    .map_err(|e| io(&sudo, e))?;
    set_exec(&sudo)
}

/// Puts `resolv_conf` at the image's `/etc/resolv.conf` for the build,
/// keeping the image's own (file or symlink) aside for [`deprovision`].
pub fn use_resolver(root: &Path, resolv_conf: &[u8]) -> Result<(), String> {
    let io = |what: &Path, e: std::io::Error| format!("{}: {e}", what.display());
    let resolv = root.join("etc/resolv.conf");
    let kept = root.join("etc/resolv.conf.slipway-orig");
    if (resolv.exists() || resolv.is_symlink()) && !kept.exists() && !kept.is_symlink() {
        std::fs::rename(&resolv, &kept).map_err(|e| io(&resolv, e))?;
    }
    std::fs::write(&resolv, resolv_conf).map_err(|e| io(&resolv, e))
}

/// Undoes [`prepare`] / [`use_resolver`] and removes per-build identity:
/// machine id, SSH host keys (regenerated at first boot), and cloud-init's
/// instance state and logs (`cloud-init clean --logs`), so the image's
/// first boot provisions it afresh.
pub fn deprovision(root: &Path) -> Result<(), String> {
    let io = |what: &Path, e: std::io::Error| format!("{}: {e}", what.display());
    let resolv = root.join("etc/resolv.conf");
    let kept = root.join("etc/resolv.conf.slipway-orig");
    if kept.exists() || kept.is_symlink() {
        std::fs::rename(&kept, &resolv).map_err(|e| io(&kept, e))?;
    }
    let policy = root.join("usr/sbin/policy-rc.d");
    if std::fs::read_to_string(&policy).is_ok_and(|t| t.contains("slipway:")) {
        std::fs::remove_file(&policy).map_err(|e| io(&policy, e))?;
    }
    let _ = std::fs::remove_dir_all(root.join("tmp/.slipway"));
    let _ = std::fs::remove_dir_all(root.join("var/lib/cloud"));
    for log_file in ["var/log/cloud-init.log", "var/log/cloud-init-output.log"] {
        let _ = std::fs::remove_file(root.join(log_file));
    }
    let mid = root.join("etc/machine-id");
    if mid.exists() {
        std::fs::write(&mid, "").map_err(|e| io(&mid, e))?;
    }
    if let Ok(entries) = std::fs::read_dir(root.join("etc/ssh")) {
        for e in entries.flatten() {
            if e.file_name().to_string_lossy().starts_with("ssh_host_") {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
    // Debian's first boot makes new host keys only when this unit runs.
    let regen = root.join("etc/systemd/system/multi-user.target.wants/slipway-ssh-keygen.service");
    if root.join("usr/sbin/sshd").exists() && regen.symlink_metadata().is_err() {
        let unit = root.join("etc/systemd/system/slipway-ssh-keygen.service");
        std::fs::write(
            &unit,
            "[Unit]\nDescription=Generate SSH host keys\nBefore=ssh.service\nConditionPathExists=!/etc/ssh/ssh_host_ed25519_key\n\n[Service]\nType=oneshot\nExecStart=/usr/bin/ssh-keygen -A\n\n[Install]\nWantedBy=multi-user.target\n",
        )
        .map_err(|e| io(&unit, e))?;
        if let Some(d) = regen.parent() {
            std::fs::create_dir_all(d).map_err(|e| io(d, e))?;
        }
        std::os::unix::fs::symlink("/etc/systemd/system/slipway-ssh-keygen.service", &regen)
            .map_err(|e| io(&regen, e))?;
    }
    crate::base::write_boot_config(root)
}

fn set_exec(p: &Path) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755))
        .map_err(|e| format!("{}: {e}", p.display()))
}

/// Runs `argv` inside `root` with chroot, streaming its output to `log`;
/// the process group is killed when this future is dropped (timeout,
/// cancel) and after the command ends (stray background children).
///
/// Errors: "exit status N" (or the signal), or a spawn failure.
pub async fn chroot(root: &Path, argv: &[&str], log: &RunLog) -> Result<(), String> {
    let mut cmd = tokio::process::Command::new("chroot");
    cmd.arg(root)
        .args(argv)
        .env_clear()
        .env("PATH", CHROOT_PATH)
        .env("HOME", "/root")
        .env("LANG", "C.UTF-8")
        .env("TERM", "dumb")
        .env("DEBIAN_FRONTEND", "noninteractive")
        .current_dir(root);
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
) -> Result<(), String> {
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
    let mut child = cmd.spawn().map_err(|e| format!("{program}: {e}"))?;
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
    let status = child.wait().await.map_err(|e| format!("{program}: {e}"))?;
    drop(group);
    for t in tasks {
        let _ = t.await;
    }
    if status.success() {
        Ok(())
    } else {
        Err(match status.code() {
            Some(c) => format!("exit status {c}"),
            None => "killed by a signal".into(),
        })
    }
}
