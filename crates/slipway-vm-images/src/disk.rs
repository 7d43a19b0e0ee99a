//! Disk files: partition discovery, loop mounts with the chroot binds,
//! sparse copies (optionally as a fixed VHD), growth and format conversion.
//! Everything here shells out to util-linux, e2fsprogs and qemu-img.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};
use slipway_core::images::vhd;

use crate::BuildError;

/// Runs a command to completion and returns its stdout.
///
/// Errors: [`BuildError::ToolMissing`] when it cannot start,
/// [`BuildError::ToolFailed`] (command line and what it said) when it fails.
pub fn run(program: &str, args: &[&str]) -> Result<String, BuildError> {
    let out = Command::new(program)
        .args(args)
        .output()
        .map_err(|source| BuildError::ToolMissing {
            program: program.into(),
            source,
        })?;
    output_of(program, args, out)
}

/// The stdout of `program args`, which ended with `out`.
///
/// Errors: [`BuildError::ToolFailed`] with what it said when it failed.
pub(crate) fn output_of(
    program: &str,
    args: &[&str],
    out: std::process::Output,
) -> Result<String, BuildError> {
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(failed(program, args, &out.stderr, &out.stdout))
    }
}

/// How much of a failed program's standard output its error quotes, bytes.
const STDOUT_TAIL: usize = 2000;

/// [`BuildError::ToolFailed`] for `program args`: its stderr, then the
/// tail of its stdout when it printed any — some tools report their errors
/// there (debootstrap's `E:` lines).
fn failed(program: &str, args: &[&str], stderr: &[u8], stdout: &[u8]) -> BuildError {
    let mut output = String::from_utf8_lossy(stderr).trim().to_string();
    let stdout = String::from_utf8_lossy(stdout);
    let stdout = tail(stdout.trim(), STDOUT_TAIL);
    if !stdout.is_empty() {
        if !output.is_empty() {
            output.push('\n');
        }
        output.push_str("stdout: ");
        output.push_str(stdout);
    }
    BuildError::ToolFailed {
        command: format!("{program} {}", args.join(" ")),
        output,
    }
}

/// The last `n` bytes of `s` (fewer, to start on a character boundary).
pub(crate) fn tail(s: &str, n: usize) -> &str {
    let mut i = s.len().saturating_sub(n);
    while !s.is_char_boundary(i) {
        i += 1;
    }
    &s[i..]
}

/// Runs `sfdisk ARGS` with `script` on its stdin (sfdisk's input format).
pub fn sfdisk(args: &[&str], script: &str) -> Result<(), BuildError> {
    let mut child = Command::new("sfdisk")
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|source| BuildError::ToolMissing {
            program: "sfdisk".into(),
            source,
        })?;
    if let Some(mut i) = child.stdin.take() {
        i.write_all(script.as_bytes())
            .map_err(BuildError::io("sfdisk's input"))?;
    }
    let out = child
        .wait_with_output()
        .map_err(BuildError::io("waiting for sfdisk"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(failed("sfdisk", args, &out.stderr, &[]))
    }
}

/// Where the root filesystem sits in a disk file, bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RootPartition {
    /// Offset from the start of the disk.
    pub offset: u64,
    /// Length; `None` = to the end (no partition table).
    pub size: Option<u64>,
    /// 1-based partition number, `None` for a whole-disk filesystem.
    pub number: Option<u32>,
}

/// GPT type of an EFI System Partition.
pub const ESP_TYPE: &str = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B";
/// GPT type of a Linux filesystem partition.
pub const LINUX_TYPE: &str = "0FC63DAF-8483-4772-8E79-3D69D8477DE4";

/// The firmware a disk boots with — Azure's `hyperVGeneration`: `V1`
/// images boot from an MBR with BIOS, `V2` images from an EFI System
/// Partition with UEFI.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Firmware {
    /// BIOS (Azure generation 1, `V1`).
    Bios,
    /// UEFI (Azure generation 2, `V2`).
    Uefi,
}

impl Firmware {
    /// Azure's `hyperVGeneration` for it: `V1` or `V2`.
    pub fn hyper_v_generation(self) -> &'static str {
        match self {
            Firmware::Bios => "V1",
            Firmware::Uefi => "V2",
        }
    }
}

/// A disk's partition table as sfdisk reads it: its label (`dos`, `gpt`),
/// sector size in bytes and partitions (sfdisk's JSON objects: `start`
/// and `size` in sectors, `type`); `None` without one.
fn partition_table(
    disk: &Path,
) -> Result<Option<(String, u64, Vec<serde_json::Value>)>, BuildError> {
    let path = disk
        .to_str()
        .ok_or(BuildError::NotUtf8 { what: "disk path" })?;
    let Ok(text) = run("sfdisk", &["--json", path]) else {
        return Ok(None);
    };
    let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| BuildError::ToolFailed {
        command: format!("sfdisk --json {path}"),
        output: format!("unreadable answer: {e}"),
    })?;
    let table = &v["partitiontable"];
    Ok(Some((
        table["label"].as_str().unwrap_or("").to_string(),
        table["sectorsize"].as_u64().unwrap_or(512),
        table["partitions"].as_array().cloned().unwrap_or_default(),
    )))
}

/// The firmware `disk` (raw) boots with: UEFI when its GPT has an EFI
/// System Partition, else BIOS.
///
/// Errors: the path is not UTF-8; sfdisk's answer cannot be read.
pub fn firmware(disk: &Path) -> Result<Firmware, BuildError> {
    let esp = |p: &serde_json::Value| {
        p["type"]
            .as_str()
            .is_some_and(|t| t.eq_ignore_ascii_case(ESP_TYPE))
    };
    Ok(match partition_table(disk)? {
        Some((label, _, parts)) if label == "gpt" && parts.iter().any(esp) => Firmware::Uefi,
        _ => Firmware::Bios,
    })
}

/// Finds the root filesystem: the largest Linux partition (MBR type 83 or
/// GPT "Linux filesystem"), else the largest partition, else the whole disk.
pub fn root_partition(disk: &Path) -> Result<RootPartition, BuildError> {
    let whole = RootPartition {
        offset: 0,
        size: None,
        number: None,
    };
    let Some((_, sector, parts)) = partition_table(disk)? else {
        return Ok(whole);
    };
    let linux = |p: &serde_json::Value| {
        let t = p["type"].as_str().unwrap_or("");
        t == "83" || t.eq_ignore_ascii_case(LINUX_TYPE)
    };
    let pick = parts
        .iter()
        .enumerate()
        .filter(|(_, p)| linux(p))
        .max_by_key(|(_, p)| p["size"].as_u64().unwrap_or(0))
        .or_else(|| {
            parts
                .iter()
                .enumerate()
                .max_by_key(|(_, p)| p["size"].as_u64().unwrap_or(0))
        });
    Ok(match pick {
        Some((i, p)) => RootPartition {
            offset: p["start"].as_u64().unwrap_or(0) * sector,
            size: Some(p["size"].as_u64().unwrap_or(0) * sector),
            // The node's trailing digits (`disk.raw15`): GPT numbers may
            // have gaps (Ubuntu's cloud images use 1, 14 and 15).
            number: Some(partition_number(p).unwrap_or(i as u32 + 1)),
        },
        None => whole,
    })
}

/// A partition's number, from the digits that end sfdisk's `node`.
fn partition_number(p: &serde_json::Value) -> Option<u32> {
    let node = p["node"].as_str()?;
    let digits = node.len() - node.trim_end_matches(|c: char| c.is_ascii_digit()).len();
    node[node.len() - digits..].parse().ok()
}

/// A loop device over a disk's root filesystem; dropping it detaches it.
#[derive(Debug)]
pub struct LoopDevice {
    dev: String,
}

impl LoopDevice {
    /// Attaches the first free loop device to `part` of `disk` (its offset
    /// and size limit), so no partition nodes are needed.
    ///
    /// Errors: losetup's stderr.
    pub fn attach(disk: &Path, part: &RootPartition) -> Result<LoopDevice, BuildError> {
        let disk_s = disk
            .to_str()
            .ok_or(BuildError::NotUtf8 { what: "disk path" })?;
        let offset = part.offset.to_string();
        let size = part.size.map(|s| s.to_string());
        let mut args = vec!["--find", "--show", "--offset", offset.as_str()];
        if let Some(s) = &size {
            args.extend(["--sizelimit", s.as_str()]);
        }
        args.push(disk_s);
        let dev = run("losetup", &args)?.trim().to_string();
        Ok(LoopDevice { dev })
    }

    /// `/dev/loopN`.
    pub fn path(&self) -> &str {
        &self.dev
    }
}

impl Drop for LoopDevice {
    fn drop(&mut self) {
        let _ = run("losetup", &["-d", &self.dev]);
    }
}

/// `/proc`, `/sys`, `/dev` and `/dev/pts` mounted into a root tree for
/// chroot; dropping it unmounts them (lazily if busy), last first.
#[derive(Debug)]
pub struct SystemMounts {
    mounts: Vec<PathBuf>,
}

impl SystemMounts {
    /// Mounts the API filesystems under `root`.
    ///
    /// Errors: mount failures with their stderr (what was mounted is
    /// unmounted again).
    pub fn mount(root: &Path) -> Result<SystemMounts, BuildError> {
        let mut m = SystemMounts { mounts: Vec::new() };
        for (what, kind, dir) in [
            ("proc", Some("proc"), "proc"),
            ("sysfs", Some("sysfs"), "sys"),
            ("/dev", None, "dev"),
            ("/dev/pts", None, "dev/pts"),
        ] {
            let target = root.join(dir);
            std::fs::create_dir_all(&target)
                .map_err(BuildError::io(format!("creating {}", target.display())))?;
            let t = target
                .to_str()
                .ok_or(BuildError::NotUtf8 { what: "mount path" })?;
            match kind {
                Some(k) => run("mount", &["-t", k, what, t])?,
                None => run("mount", &["--bind", what, t])?,
            };
            m.mounts.push(target);
        }
        Ok(m)
    }
}

impl Drop for SystemMounts {
    fn drop(&mut self) {
        for m in self.mounts.iter().rev() {
            unmount(m);
        }
    }
}

/// Unmounts `m` (lazily if busy); failures are left to the next
/// [`release_leftovers`].
pub(crate) fn unmount(m: &Path) {
    let p = m.to_string_lossy();
    if run("umount", &[&p]).is_err() {
        let _ = run("umount", &["-l", &p]);
    }
}

/// Releases what a killed process left beneath `dir` (its drop guards never
/// ran): unmounts every mount point beneath it, deepest first (lazily if
/// busy), then detaches every loop device whose backing file lies beneath
/// it. Returns how many mounts and loop devices it released. Blocking.
///
/// Errors: `losetup --list` failing.
pub fn release_leftovers(dir: &Path) -> Result<usize, BuildError> {
    let dir = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
    // Deepest first; a point mounted twice is listed (and unmounted) twice.
    let mut points = mounts_beneath(&dir);
    points.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    let mut released = points.len();
    for p in &points {
        tracing::warn!(mount = %p.display(), "unmounting a mount a killed build left");
        unmount(p);
    }
    let list = run(
        "losetup",
        &["--list", "--noheadings", "--output", "NAME,BACK-FILE"],
    )?;
    for line in list.lines() {
        let Some((dev, file)) = line.trim().split_once(char::is_whitespace) else {
            continue;
        };
        let file = file.trim().trim_end_matches(" (deleted)");
        if Path::new(file).starts_with(&dir) {
            tracing::warn!(
                device = dev,
                file,
                "detaching a loop device a killed build left"
            );
            if run("losetup", &["-d", dev]).is_ok() {
                released += 1;
            }
        }
    }
    Ok(released)
}

/// The mount points at or beneath `dir` (from `/proc/self/mountinfo`;
/// empty when it cannot be read).
pub fn mounts_beneath(dir: &Path) -> Vec<PathBuf> {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    // Field 5 is the mount point, with space, tab, newline and backslash
    // written as octal escapes (proc(5)).
    mountinfo
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|p| PathBuf::from(unescape_octal(p)))
        .filter(|p| p.starts_with(dir))
        .collect()
}

fn unescape_octal(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let octal = b
            .get(i + 1..i + 4)
            .filter(|d| d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match (b[i], octal) {
            (b'\\', Some(d)) => {
                let n = d.iter().fold(0u32, |n, c| n * 8 + u32::from(c - b'0'));
                out.push(u8::try_from(n).unwrap_or(b'?'));
                i += 4;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A disk's root filesystem mounted through a loop device, with
/// [`SystemMounts`] for chroot. Dropping it unmounts everything (lazily if
/// busy) and detaches the loop device.
#[derive(Debug)]
pub struct Mounted {
    root: PathBuf,
    loop_dev: Option<LoopDevice>,
    system: Option<SystemMounts>,
    mounted: bool,
}

impl Mounted {
    /// Mounts `disk`'s root filesystem on `at` (created if missing).
    ///
    /// Errors: losetup/mount failures with their stderr.
    pub fn mount(disk: &Path, at: &Path) -> Result<Mounted, BuildError> {
        let part = root_partition(disk)?;
        std::fs::create_dir_all(at)
            .map_err(BuildError::io(format!("creating {}", at.display())))?;
        let dev = LoopDevice::attach(disk, &part)?;
        let dev_s = dev.path().to_string();
        let mut m = Mounted {
            root: at.to_path_buf(),
            loop_dev: Some(dev),
            system: None,
            mounted: false,
        };
        let at_s = at
            .to_str()
            .ok_or(BuildError::NotUtf8 { what: "mount path" })?
            .to_string();
        run("mount", &[&dev_s, &at_s])?;
        m.mounted = true;
        m.system = Some(SystemMounts::mount(at)?);
        Ok(m)
    }

    /// The mounted root.
    pub fn root(&self) -> &Path {
        &self.root
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        drop(self.system.take());
        if self.mounted {
            unmount(&self.root);
        }
        drop(self.loop_dev.take());
    }
}

/// Result of a copy: bytes in the output and their sha256 (lower-case hex).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    /// Output length, bytes.
    pub size: u64,
    /// sha256 of the whole output.
    pub sha256: String,
}

/// Copies `src` to `dst` (via a temp file + rename), leaving holes where
/// `src` has zero MiBs. With `vhd_footer`, the virtual size is rounded up
/// to whole MiB and a fixed VHD footer is appended (`../shared/reference/
/// image-builder.md` §4.5).
pub fn sparse_copy(src: &Path, dst: &Path, vhd_footer: bool) -> Result<Written, BuildError> {
    let ctx = |source| BuildError::Io {
        context: format!("copying {} to {}", src.display(), dst.display()),
        source,
    };
    let mut input = File::open(src).map_err(ctx)?;
    let len = input.metadata().map_err(ctx)?.len();
    let tmp = dst.with_extension("partial");
    if let Some(dir) = dst.parent() {
        std::fs::create_dir_all(dir).map_err(ctx)?;
    }
    let mut out = File::create(&tmp).map_err(ctx)?;
    let mut hash = Sha256::new();
    let mut buf = vec![0u8; vhd::MIB as usize];
    let zeros = vec![0u8; vhd::MIB as usize];
    let mut pos = 0u64;
    while pos < len {
        let want = ((len - pos) as usize).min(buf.len());
        input.read_exact(&mut buf[..want]).map_err(ctx)?;
        hash.update(&buf[..want]);
        if buf[..want] == zeros[..want] {
            out.seek(SeekFrom::Current(want as i64)).map_err(ctx)?;
        } else {
            out.write_all(&buf[..want]).map_err(ctx)?;
        }
        pos += want as u64;
    }
    let mut size = len;
    if vhd_footer {
        let virt = vhd::round_up_mib(len);
        let mut pad = virt - len;
        while pad > 0 {
            let n = pad.min(zeros.len() as u64) as usize;
            hash.update(&zeros[..n]);
            pad -= n as u64;
        }
        out.set_len(virt).map_err(ctx)?;
        out.seek(SeekFrom::Start(virt)).map_err(ctx)?;
        let footer = vhd::fixed_footer(
            virt,
            chrono::Utc::now().timestamp(),
            *uuid::Uuid::new_v4().as_bytes(),
        );
        out.write_all(&footer).map_err(ctx)?;
        hash.update(footer);
        size = virt + vhd::FOOTER_LEN as u64;
    } else {
        out.set_len(len).map_err(ctx)?;
    }
    out.sync_all().map_err(ctx)?;
    drop(out);
    std::fs::rename(&tmp, dst).map_err(ctx)?;
    Ok(Written {
        size,
        sha256: hex::encode(hash.finalize()),
    })
}

/// sha256 of a file (lower-case hex) and its length.
pub fn hash_file(path: &Path) -> Result<Written, BuildError> {
    let ctx = |source| BuildError::Io {
        context: format!("reading {}", path.display()),
        source,
    };
    let mut f = File::open(path).map_err(ctx)?;
    let mut hash = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut size = 0u64;
    loop {
        let n = f.read(&mut buf).map_err(ctx)?;
        if n == 0 {
            break;
        }
        hash.update(&buf[..n]);
        size += n as u64;
    }
    Ok(Written {
        size,
        sha256: hex::encode(hash.finalize()),
    })
}

/// Converts `src` (any format qemu-img reads: raw, qcow2, vpc, vmdk…) to
/// `format` (`raw` or `qcow2`) at `dst`, via a temp file + rename.
pub fn convert(src: &Path, dst: &Path, format: &str) -> Result<(), BuildError> {
    let tmp = dst.with_extension("partial");
    run(
        "qemu-img",
        &[
            "convert",
            "-O",
            format,
            &src.to_string_lossy(),
            &tmp.to_string_lossy(),
        ],
    )?;
    std::fs::rename(&tmp, dst).map_err(BuildError::io(format!("renaming {}", tmp.display())))
}

/// Grows a raw disk to `size` bytes, its root partition to the end and the
/// ext2/3/4 filesystem in it. Never shrinks.
///
/// Errors: the disk is larger than `size`, or a tool failed.
pub fn grow(disk: &Path, size: u64) -> Result<(), BuildError> {
    let ctx = || BuildError::io(disk.display().to_string());
    let len = std::fs::metadata(disk).map_err(ctx())?.len();
    if size < len {
        return Err(BuildError::Template(format!(
            "vmProfile.osDiskSizeGB: {size} bytes is smaller than the source disk ({len} bytes); disks only grow"
        )));
    }
    if size == len {
        return Ok(());
    }
    let part = root_partition(disk)?;
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(disk)
        .map_err(ctx())?;
    f.set_len(size).map_err(ctx())?;
    drop(f);
    let d = disk.to_string_lossy();
    if let Some(n) = part.number {
        sfdisk(&["--no-reread", "-q", "-N", &n.to_string(), &d], ", +\n")?;
    }
    let loop_dev = LoopDevice::attach(disk, &root_partition(disk)?)?;
    let dev = loop_dev.path();
    // e2fsck exits 1 or 2 when it fixed something; resize2fs wants a fresh check.
    let fsck = Command::new("e2fsck")
        .args(["-f", "-p", dev])
        .output()
        .map_err(|source| BuildError::ToolMissing {
            program: "e2fsck".into(),
            source,
        });
    let r = match fsck {
        Ok(o) if matches!(o.status.code(), Some(0..=2)) => run("resize2fs", &[dev]),
        Ok(o) => Err(failed("e2fsck", &["-f", "-p", dev], &o.stderr, &o.stdout)),
        Err(e) => Err(e),
    };
    r.map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_escapes_are_read_back() {
        assert_eq!(unescape_octal(r"/tmp/a\040b\011c\134d"), "/tmp/a b\tc\\d");
        assert_eq!(unescape_octal(r"/short\04"), r"/short\04");
        assert_eq!(unescape_octal(r"/not\089"), r"/not\089");
    }

    #[test]
    fn a_failed_tool_is_quoted_from_both_streams() {
        // debootstrap's way: the error on stdout, nothing on stderr.
        let e = run(
            "sh",
            &[
                "-c",
                "echo 'I: Retrieving InRelease'; echo 'E: No such script: noble'; exit 1",
            ],
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.ends_with("stdout: I: Retrieving InRelease\nE: No such script: noble"),
            "{e}"
        );
        let e = run(
            "sh",
            &["-c", "echo progress; echo 'bad superblock' >&2; exit 8"],
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains(": bad superblock\nstdout: progress"), "{e}");
        // A long stdout is cut to its end.
        let e = run(
            "sh",
            &[
                "-c",
                "head -c 100000 /dev/zero | tr '\\0' x; echo END; exit 1",
            ],
        )
        .unwrap_err()
        .to_string();
        assert!(e.ends_with("xxxxEND") && e.len() < 2200, "{}", e.len());
    }

    #[test]
    fn sparse_copy_appends_a_valid_vhd_footer() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("d.raw");
        let mut f = File::create(&src).unwrap();
        f.write_all(b"boot").unwrap();
        f.set_len(3 * vhd::MIB + 1000).unwrap();
        drop(f);
        let out = dir.path().join("d.vhd");
        let w = sparse_copy(&src, &out, true).unwrap();
        let bytes = std::fs::read(&out).unwrap();
        assert_eq!(bytes.len() as u64, 4 * vhd::MIB + 512);
        assert_eq!(w.size, bytes.len() as u64);
        assert_eq!(&bytes[..4], b"boot");
        let footer = &bytes[bytes.len() - 512..];
        assert_eq!(vhd::read_fixed_footer(footer), Some(4 * vhd::MIB));
        assert_eq!(w.sha256, hash_file(&out).unwrap().sha256);
    }
}
