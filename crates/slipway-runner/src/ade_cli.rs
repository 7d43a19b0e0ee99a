//! The static `ade` CLI Slipway mounts into every runner at
//! [`slipway_core::protocol::ADE_CLI_PATH`].

use std::path::{Path, PathBuf};

/// ELF program header type of the interpreter (dynamic loader) path.
const PT_INTERP: u32 = 3;

/// Whether `bytes` are a 64-bit little-endian ELF executable that needs no
/// dynamic loader (no `PT_INTERP` program header), so it runs in any
/// runner image (glibc, musl or none). Pure: the ELF header at offset 0,
/// `e_phoff` at 0x20, `e_phentsize` at 0x36, `e_phnum` at 0x38 (System V
/// ABI, ELF-64 object file format).
pub fn is_static_elf64(bytes: &[u8]) -> bool {
    let u16_at = |o: usize| {
        bytes
            .get(o..o + 2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]))
    };
    let u32_at = |o: usize| {
        bytes
            .get(o..o + 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    };
    let u64_at = |o: usize| {
        bytes
            .get(o..o + 8)
            .and_then(|b| <[u8; 8]>::try_from(b).ok())
            .map(u64::from_le_bytes)
    };
    // Magic, class 64-bit, little-endian.
    if bytes.get(0..6) != Some(&[0x7f, b'E', b'L', b'F', 2, 1][..]) {
        return false;
    }
    let (Some(phoff), Some(phentsize), Some(phnum)) = (u64_at(0x20), u16_at(0x36), u16_at(0x38))
    else {
        return false;
    };
    let Ok(phoff) = usize::try_from(phoff) else {
        return false;
    };
    (0..phnum as usize).all(|i| {
        let entry = phoff + i * phentsize as usize;
        u32_at(entry).is_some_and(|t| t != PT_INTERP)
    })
}

/// Checks that `path` is a static 64-bit executable to mount as the
/// runners' `ade`.
///
/// Errors: a message naming the path: unreadable, or not a static ELF-64
/// executable (build it with `RUSTFLAGS="-C target-feature=+crt-static"`,
/// as `runner-images/build` does).
pub fn check_runner_ade(path: &Path) -> Result<PathBuf, RunnerAdeError> {
    let unreadable = |e: std::io::Error| RunnerAdeError::Unreadable {
        path: path.to_path_buf(),
        source: e,
    };
    let bytes = std::fs::read(path).map_err(unreadable)?;
    if !is_static_elf64(&bytes) {
        return Err(RunnerAdeError::NotStatic(path.to_path_buf()));
    }
    path.canonicalize().map_err(unreadable)
}

/// A file that cannot serve as the runners' `ade`.
#[derive(Debug, thiserror::Error)]
pub enum RunnerAdeError {
    /// The file cannot be read or resolved.
    #[error("{}: {source}", path.display())]
    Unreadable {
        /// The path given.
        path: PathBuf,
        /// What the file system said.
        source: std::io::Error,
    },
    /// Not a statically linked ELF-64 executable.
    #[error("{} is not a static x86-64 executable: the runners' ade must run in any image (build it with RUSTFLAGS=\"-C target-feature=+crt-static\", as runner-images/build does)", .0.display())]
    NotStatic(PathBuf),
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal ELF-64 header with one program header of type `ptype`.
    fn elf(ptype: u32) -> Vec<u8> {
        let mut b = vec![0u8; 0x40 + 0x38];
        b[0..6].copy_from_slice(&[0x7f, b'E', b'L', b'F', 2, 1]);
        b[0x20..0x28].copy_from_slice(&0x40u64.to_le_bytes());
        b[0x36..0x38].copy_from_slice(&0x38u16.to_le_bytes());
        b[0x38..0x3a].copy_from_slice(&1u16.to_le_bytes());
        b[0x40..0x44].copy_from_slice(&ptype.to_le_bytes());
        b
    }

    #[test]
    fn only_executables_without_an_interpreter_are_static() {
        assert!(is_static_elf64(&elf(1)), "PT_LOAD only");
        assert!(!is_static_elf64(&elf(PT_INTERP)));
        assert!(!is_static_elf64(b"#!/bin/sh\necho ade\n"));
        let mut truncated = elf(1);
        truncated.truncate(0x42);
        assert!(!is_static_elf64(&truncated), "program header cut off");
        // This test binary itself is dynamically linked (cargo's default).
        let me = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        assert!(!is_static_elf64(&me));
    }
}
