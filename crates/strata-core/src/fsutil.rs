//! File-system steps the log and the metadata share.
use std::io;
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
