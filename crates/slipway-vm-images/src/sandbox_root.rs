//! The image as the chroot executor's customizers see it: mounted
//! id-mapped into a user namespace of the build's own, so customizer root
//! is an unprivileged host user (one block of
//! [`slipway_core::isolation::BUILD_USER_IDS`]) while every file the image's root owns
//! is still its own, and what it writes lands on the disk with the image's
//! ids (the idmapped mounts of Linux 5.12+, `mount_setattr(2)`).

use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use slipway_core::isolation::USER_NAMESPACE_SIZE;

use crate::BuildError;

/// The descriptor number the build's user namespace has in a customizer
/// command's `nsenter` (see [`SandboxRoot::user_namespace_path`]).
pub const USER_NAMESPACE_FD: i32 = 3;

/// A user namespace whose ids 0–65535 are host ids `base`…, held by a
/// descriptor (no process lives in it until a customizer runs).
#[derive(Debug)]
struct BuildUserNamespace {
    fd: OwnedFd,
}

impl BuildUserNamespace {
    /// Makes one: a short-lived `sleep` unshares a user namespace before
    /// it execs, the server writes its id maps and opens it, then ends it.
    ///
    /// Errors: [`BuildError::Io`] when the process cannot be started or
    /// the maps cannot be written (the kernel refuses user namespaces).
    fn create(base: u32) -> Result<BuildUserNamespace, BuildError> {
        let mut cmd = std::process::Command::new("sleep");
        cmd.arg("infinity")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        slipway_runner::process::killed_with_server(&mut cmd);
        // SAFETY: the closure runs in the forked child before exec and only
        // makes one system call; it allocates nothing.
        unsafe {
            cmd.pre_exec(|| {
                if libc::unshare(libc::CLONE_NEWUSER) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut child = cmd
            .spawn()
            .map_err(BuildError::io("starting the build's user namespace"))?;
        let pid = child.id();
        let made = (|| {
            let map = format!("0 {base} {USER_NAMESPACE_SIZE}\n");
            std::fs::write(format!("/proc/{pid}/uid_map"), &map)?;
            std::fs::write(format!("/proc/{pid}/gid_map"), &map)?;
            std::fs::File::open(format!("/proc/{pid}/ns/user")).map(OwnedFd::from)
        })();
        let _ = child.kill();
        let _ = child.wait();
        Ok(BuildUserNamespace {
            fd: made.map_err(BuildError::io(format!(
                "mapping the build's user namespace to host ids {base}…"
            )))?,
        })
    }
}

/// `struct mount_attr` of `mount_setattr(2)` (linux/mount.h).
#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

/// `MOUNT_ATTR_IDMAP` (linux/mount.h).
const MOUNT_ATTR_IDMAP: u64 = 0x0010_0000;

/// The image root (its root file system only, not what is mounted beneath
/// it) mounted again at a folder of its own, id-mapped into a build user
/// namespace. Dropping it unmounts the view (lazily if busy) and lets the
/// namespace go; the image's own mount stays.
#[derive(Debug)]
pub struct SandboxRoot {
    at: PathBuf,
    userns: BuildUserNamespace,
    base: u32,
}

impl SandboxRoot {
    /// Mounts `root` id-mapped at `at` (created if missing) for a new
    /// build user namespace whose root is host id `base` (one of
    /// [`slipway_core::isolation::BUILD_USER_IDS`], from [`slipway_core::isolation::build_user_base`]).
    ///
    /// Errors: [`BuildError::Io`] naming the step that failed (a file
    /// system without idmapped-mount support answers `EINVAL`).
    pub fn mount(root: &Path, at: &Path, base: u32) -> Result<SandboxRoot, BuildError> {
        use rustix::mount::{move_mount, open_tree, MoveMountFlags, OpenTreeFlags};
        let userns = BuildUserNamespace::create(base)?;
        let tree = open_tree(
            rustix::fs::CWD,
            root,
            OpenTreeFlags::OPEN_TREE_CLONE | OpenTreeFlags::OPEN_TREE_CLOEXEC,
        )
        .map_err(|e| {
            BuildError::io(format!("cloning the mount of {}", root.display()))(e.into())
        })?;
        let attr = MountAttr {
            attr_set: MOUNT_ATTR_IDMAP,
            attr_clr: 0,
            propagation: 0,
            userns_fd: userns.fd.as_raw_fd() as u64,
        };
        // SAFETY: every pointer is valid for the call: an empty C string
        // (with AT_EMPTY_PATH the descriptor itself is changed) and `attr`,
        // whose size is passed; the descriptors are open.
        let r = unsafe {
            libc::syscall(
                libc::SYS_mount_setattr,
                tree.as_raw_fd(),
                c"".as_ptr(),
                libc::AT_EMPTY_PATH,
                &attr as *const MountAttr,
                std::mem::size_of::<MountAttr>(),
            )
        };
        if r != 0 {
            return Err(BuildError::io(format!(
                "id-mapping the mount of {}",
                root.display()
            ))(std::io::Error::last_os_error()));
        }
        std::fs::create_dir_all(at)
            .map_err(BuildError::io(format!("creating {}", at.display())))?;
        move_mount(
            tree.as_fd(),
            "",
            rustix::fs::CWD,
            at,
            MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH,
        )
        .map_err(|e| {
            BuildError::io(format!("mounting the id-mapped view at {}", at.display()))(e.into())
        })?;
        Ok(SandboxRoot {
            at: at.to_path_buf(),
            userns,
            base,
        })
    }

    /// Where the view is mounted: the root customizers get.
    pub fn path(&self) -> &Path {
        &self.at
    }

    /// The host id customizer root is.
    pub fn host_root(&self) -> u32 {
        self.base
    }

    /// A new descriptor of the build's user namespace, for a customizer
    /// command's [`USER_NAMESPACE_FD`].
    ///
    /// Errors: the descriptor table is full.
    pub fn user_namespace(&self) -> Result<OwnedFd, BuildError> {
        self.userns
            .fd
            .try_clone()
            .map_err(BuildError::io("duplicating the build's user namespace"))
    }

    /// The path a customizer command's `nsenter` opens the namespace by:
    /// its own [`USER_NAMESPACE_FD`].
    pub fn user_namespace_path() -> String {
        format!("/proc/self/fd/{USER_NAMESPACE_FD}")
    }
}

impl Drop for SandboxRoot {
    fn drop(&mut self) {
        crate::disk::unmount(&self.at);
    }
}
