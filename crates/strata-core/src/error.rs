//! The one error type of the core. `strata-node` maps each variant to a stable code.
use std::fmt;

/// Every failure the core reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CoreError {
    /// A topic name or filter that MQTT forbids; the string says why.
    InvalidTopic(String),
    /// An I/O failure of the store; the string names the operation and the OS error.
    Io(String),
    /// The disk is full (ENOSPC/EDQUOT). Nothing already stored is affected; appends
    /// resume once space returns.
    DiskFull(String),
    /// The OS refused access (EACCES/EPERM/EROFS) to a store file or directory.
    PermissionDenied(String),
    /// Another process (or another handle in this one) holds the data directory's lock.
    StoreLocked(String),
    /// Options disagree with what the store recorded at first start (e.g. `n_shards`).
    ConfigMismatch(String),
    /// Data failed verification in a way recovery cannot repair by itself.
    Corrupt(String),
    /// A caller-supplied argument is out of range or malformed.
    InvalidArgument(String),
    /// A stream, generation or key that does not exist.
    NotFound(String),
    /// The store is closed (or its writer stopped after an unrecoverable fsync error).
    Closed(String),
    /// The metadata store (redb) reported an error.
    Meta(String),
}

impl CoreError {
    /// Stable machine-readable code, used by the binding and by JS callers.
    pub fn code(&self) -> &'static str {
        match self {
            CoreError::InvalidTopic(_) => "ERR_INVALID_TOPIC",
            CoreError::Io(_) => "ERR_STORE_IO",
            CoreError::DiskFull(_) => "ERR_STORE_DISK_FULL",
            CoreError::PermissionDenied(_) => "ERR_STORE_PERMISSION",
            CoreError::StoreLocked(_) => "ERR_STORE_LOCKED",
            CoreError::ConfigMismatch(_) => "ERR_STORE_CONFIG_MISMATCH",
            CoreError::Corrupt(_) => "ERR_STORE_CORRUPT",
            CoreError::InvalidArgument(_) => "ERR_INVALID_ARGUMENT",
            CoreError::NotFound(_) => "ERR_NOT_FOUND",
            CoreError::Closed(_) => "ERR_STORE_CLOSED",
            CoreError::Meta(_) => "ERR_STORE_META",
        }
    }
}

impl fmt::Display for CoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CoreError::InvalidTopic(why) => write!(f, "invalid topic: {why}"),
            CoreError::Io(m) => write!(f, "store I/O error: {m}"),
            CoreError::DiskFull(m) => write!(f, "disk full: {m}"),
            CoreError::PermissionDenied(m) => write!(f, "permission denied: {m}"),
            CoreError::StoreLocked(m) => write!(f, "store is locked by another opener: {m}"),
            CoreError::ConfigMismatch(m) => write!(f, "store configuration mismatch: {m}"),
            CoreError::Corrupt(m) => write!(f, "store data corrupt: {m}"),
            CoreError::InvalidArgument(m) => write!(f, "invalid argument: {m}"),
            CoreError::NotFound(m) => write!(f, "not found: {m}"),
            CoreError::Closed(m) => write!(f, "store closed: {m}"),
            CoreError::Meta(m) => write!(f, "metadata store error: {m}"),
        }
    }
}

impl std::error::Error for CoreError {}

impl CoreError {
    /// Maps an I/O error to the matching store variant, prefixing `context`.
    pub fn from_io(context: impl fmt::Display, e: &std::io::Error) -> Self {
        use std::io::ErrorKind as K;
        let m = format!("{context}: {e}");
        match e.kind() {
            K::StorageFull | K::QuotaExceeded => CoreError::DiskFull(m),
            K::PermissionDenied | K::ReadOnlyFilesystem => CoreError::PermissionDenied(m),
            _ => CoreError::Io(m),
        }
    }
}
