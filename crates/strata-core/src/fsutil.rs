//! File-system steps the log and the metadata share.
use std::io::{self, Read};
use std::path::Path;

/// fsyncs a directory, making its entries durable (files created, renamed, removed).
/// A no-op where directories cannot be synced (Windows).
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    #[cfg(unix)]
    std::fs::File::open(dir)?.sync_all()?;
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

/// Whether the next `n` bytes `r` reads are all zeros (an error if there are fewer): the
/// zero-filled tail a crash or a power loss leaves after the last frame or record.
pub(crate) fn rest_is_zero(r: &mut impl Read, mut n: u64) -> io::Result<bool> {
    let mut buf = [0u8; 64 * 1024];
    while n > 0 {
        let k = n.min(buf.len() as u64) as usize;
        r.read_exact(&mut buf[..k])?;
        if buf[..k].iter().any(|&b| b != 0) {
            return Ok(false);
        }
        n -= k as u64;
    }
    Ok(true)
}
