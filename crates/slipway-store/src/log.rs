//! Reading a growing log from an offset: operation logs and task-run logs
//! (blobs) and VM image `customization.log` files alike.
//!
//! A read seeks to the offset and returns at most a bounded chunk, cut so
//! that it never splits a UTF-8 character: a reader that adds the chunk's
//! byte length to its offset reads the next chunk exactly where this one
//! ended, and no character is ever lost or replaced at a cut.

use std::path::Path;

use tokio::io::{AsyncReadExt, AsyncSeekExt};

/// The largest chunk one read returns, in bytes (1 MiB).
pub const MAX_LOG_CHUNK: usize = 1 << 20;

/// Longest UTF-8 encoding of one character, in bytes.
const MAX_CHAR_BYTES: usize = 4;

/// One chunk of a log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogChunk {
    /// The text from the (boundary-adjusted) offset; never splits a
    /// character. Invalid UTF-8 a writer produced is replaced with U+FFFD
    /// (the byte accounting below stays exact).
    pub text: String,
    /// Offset (bytes) at which the next read continues.
    pub next_offset: u64,
    /// Size of the log at the time of the read (bytes); `next_offset ==
    /// size` means everything written so far was returned.
    pub size: u64,
}

/// Reads at most `max` bytes (at least [`MAX_CHAR_BYTES`]) of the log at
/// `path` from byte `offset`. An absent file is an empty log. An offset
/// inside a character moves forward to the next character; an offset past
/// the end returns an empty chunk at the end.
///
/// Errors: I/O errors other than a missing file.
pub async fn read_log_chunk(path: &Path, offset: u64, max: usize) -> std::io::Result<LogChunk> {
    let mut f = match tokio::fs::File::open(path).await {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Ok(LogChunk {
                text: String::new(),
                next_offset: 0,
                size: 0,
            })
        }
        Err(e) => return Err(e),
    };
    let size = f.metadata().await?.len();
    let start = offset.min(size);
    f.seek(std::io::SeekFrom::Start(start)).await?;
    let want = (size - start).min(max.max(MAX_CHAR_BYTES) as u64) as usize;
    let mut buf = vec![0u8; want];
    f.read_exact(&mut buf).await?;
    // Skip continuation bytes at the start (an offset inside a character).
    let lead = buf
        .iter()
        .take(MAX_CHAR_BYTES - 1)
        .take_while(|b| is_continuation(**b))
        .count();
    // Cut before a character the chunk does not hold whole: its writer may
    // still be appending it, and the next read starts with it.
    let end = lead + complete_prefix(&buf[lead..]);
    let text = String::from_utf8_lossy(&buf[lead..end]).into_owned();
    Ok(LogChunk {
        text,
        next_offset: start + end as u64,
        size,
    })
}

fn is_continuation(b: u8) -> bool {
    b & 0b1100_0000 == 0b1000_0000
}

/// Length of the longest prefix of `bytes` that does not end inside a
/// character (the last, incomplete character is left for the next read).
fn complete_prefix(bytes: &[u8]) -> usize {
    // Walk back over at most 3 bytes to the last lead byte.
    let n = bytes.len();
    for back in 1..=MAX_CHAR_BYTES.min(n) {
        let b = bytes[n - back];
        if is_continuation(b) {
            continue;
        }
        let need = match b {
            0x00..=0x7F => 1,
            0xC0..=0xDF => 2,
            0xE0..=0xEF => 3,
            0xF0..=0xF7 => 4,
            _ => 1, // not a lead byte: invalid, take it as is
        };
        return if back >= need { n } else { n - back };
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn chunks(text: &[u8], max: usize) -> Vec<String> {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("log");
        std::fs::write(&p, text).unwrap();
        let mut out = Vec::new();
        let mut offset = 0;
        loop {
            let c = read_log_chunk(&p, offset, max).await.unwrap();
            if c.next_offset == offset {
                assert_eq!(c.next_offset, c.size);
                return out;
            }
            offset = c.next_offset;
            out.push(c.text);
        }
    }

    #[tokio::test]
    async fn chunks_never_split_a_character_and_lose_nothing() {
        let text = "añb€c😀d\n".repeat(7);
        for max in 4..=13 {
            let got = chunks(text.as_bytes(), max).await;
            assert_eq!(got.concat(), text, "max {max}");
            assert!(got.iter().all(|c| !c.contains('\u{FFFD}')), "max {max}");
        }
    }

    #[tokio::test]
    async fn an_offset_inside_a_character_moves_to_the_next_and_a_missing_log_is_empty() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("log");
        std::fs::write(&p, "€x").unwrap();
        let c = read_log_chunk(&p, 1, 100).await.unwrap();
        assert_eq!((c.text.as_str(), c.next_offset, c.size), ("x", 4, 4));
        let past = read_log_chunk(&p, 99, 100).await.unwrap();
        assert_eq!((past.text.as_str(), past.next_offset), ("", 4));
        let none = read_log_chunk(&dir.path().join("nope"), 5, 100)
            .await
            .unwrap();
        assert_eq!(
            (none.text.as_str(), none.next_offset, none.size),
            ("", 0, 0)
        );
    }

    #[tokio::test]
    async fn a_character_still_being_written_waits_for_the_next_read() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("log");
        let euro = "€".as_bytes();
        std::fs::write(&p, [b"a".as_slice(), &euro[..2]].concat()).unwrap();
        let c = read_log_chunk(&p, 0, 100).await.unwrap();
        assert_eq!((c.text.as_str(), c.next_offset, c.size), ("a", 1, 3));
        std::fs::write(&p, "a€").unwrap();
        let c = read_log_chunk(&p, 1, 100).await.unwrap();
        assert_eq!((c.text.as_str(), c.next_offset), ("€", 4));
    }
}
