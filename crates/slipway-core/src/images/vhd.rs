//! The fixed VHD footer (Microsoft VHD spec; qemu `block/vpc.c`): a fixed
//! VHD is the raw disk followed by this 512-byte big-endian footer. Azure
//! accepts only fixed VHDs whose virtual size is a whole number of MiB.
//!
//! Contract: `../shared/reference/image-builder.md` §4.4–4.5.

/// 1 MiB, bytes.
pub const MIB: u64 = 1 << 20;
/// Length of the footer, bytes.
pub const FOOTER_LEN: usize = 512;
/// Seconds between the Unix epoch and the VHD epoch (2000-01-01 UTC).
pub const VHD_EPOCH_OFFSET: i64 = 946_684_800;

/// `size` rounded up to a whole number of MiB.
pub fn round_up_mib(size: u64) -> u64 {
    size.div_ceil(MIB) * MIB
}

/// The footer of a fixed VHD of `virtual_size` bytes (a multiple of 512),
/// created at `unix_time` seconds, with `unique_id` (a random UUID's bytes).
/// Geometry is the "force size" marker 65535/16/255 that qemu writes when
/// the size is not CHS-derived; creator `slwy` 0.1 on `Wi2k`.
pub fn fixed_footer(virtual_size: u64, unix_time: i64, unique_id: [u8; 16]) -> [u8; FOOTER_LEN] {
    let mut f = [0u8; FOOTER_LEN];
    f[0..8].copy_from_slice(b"conectix");
    f[8..12].copy_from_slice(&2u32.to_be_bytes()); // features: reserved bit
    f[12..16].copy_from_slice(&0x0001_0000u32.to_be_bytes()); // format version 1.0
    f[16..24].copy_from_slice(&u64::MAX.to_be_bytes()); // data offset: none (fixed)
    let ts = (unix_time - VHD_EPOCH_OFFSET).clamp(0, u32::MAX as i64) as u32;
    f[24..28].copy_from_slice(&ts.to_be_bytes());
    f[28..32].copy_from_slice(b"slwy");
    f[32..36].copy_from_slice(&0x0000_0001u32.to_be_bytes()); // creator version 0.1
    f[36..40].copy_from_slice(b"Wi2k");
    f[40..48].copy_from_slice(&virtual_size.to_be_bytes()); // original size
    f[48..56].copy_from_slice(&virtual_size.to_be_bytes()); // current size
    f[56..58].copy_from_slice(&65535u16.to_be_bytes()); // cylinders
    f[58] = 16; // heads
    f[59] = 255; // sectors per track
    f[60..64].copy_from_slice(&2u32.to_be_bytes()); // disk type: fixed
    f[68..84].copy_from_slice(&unique_id);
    let sum: u32 = f.iter().map(|b| *b as u32).sum();
    f[64..68].copy_from_slice(&(!sum).to_be_bytes());
    f
}

/// Reads a footer: `Some(virtual_size)` when `f` is a valid fixed-disk
/// footer (cookie, disk type 2 and checksum all correct).
pub fn read_fixed_footer(f: &[u8]) -> Option<u64> {
    if f.len() != FOOTER_LEN || &f[0..8] != b"conectix" {
        return None;
    }
    let be32 = |r: std::ops::Range<usize>| u32::from_be_bytes(f[r].try_into().unwrap_or([0; 4]));
    let sum: u32 = f
        .iter()
        .enumerate()
        .filter(|(i, _)| !(64..68).contains(i))
        .map(|(_, b)| *b as u32)
        .sum();
    if be32(60..64) != 2 || be32(64..68) != !sum {
        return None;
    }
    Some(u64::from_be_bytes(f[48..56].try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn footer_round_trips_and_checksums() {
        let f = fixed_footer(100 * MIB, 1_700_000_000, [7; 16]);
        assert_eq!(&f[0..8], b"conectix");
        assert_eq!(read_fixed_footer(&f), Some(100 * MIB));
        assert_eq!(
            u32::from_be_bytes(f[24..28].try_into().unwrap()),
            753_315_200
        );
        let mut broken = f;
        broken[50] ^= 1;
        assert_eq!(
            read_fixed_footer(&broken),
            None,
            "checksum must catch a flipped bit"
        );
    }

    #[test]
    fn sizes_round_up_to_whole_mib() {
        assert_eq!(round_up_mib(0), 0);
        assert_eq!(round_up_mib(1), MIB);
        assert_eq!(round_up_mib(MIB), MIB);
        assert_eq!(round_up_mib(104_866_304), 101 * MIB);
    }
}
