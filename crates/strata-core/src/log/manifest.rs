//! `STORE`: a store's identity — format, shard count, site id — written at first start
//! and checksummed:
//!
//! ```text
//! format=1
//! n_shards=4
//! site_id=<32 hex>
//! crc=<crc32c of the bytes above, 8 hex>
//! ```
//!
//! A `STORE` written before the `crc` line existed is accepted when its values are well
//! formed, and rewritten with one. A missing or damaged `STORE` in a directory that holds
//! a store is written again (the damaged file quarantined as `STORE.corrupt`) from what
//! else records the identity: the metadata's copy (`known`), else the shard directories
//! for the count and a new site id.
use super::salvage;
use crate::error::CoreError;
use std::fs::{self, File};
use std::io::Write;
use std::path::Path;

/// A store's identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    /// Shards, fixed at first start.
    pub n_shards: u32,
    /// Site id: 32 hex digits, random at first start.
    pub site_id: String,
}

/// What reading `STORE` found.
enum Read {
    Valid { m: Manifest, legacy: bool },
    Missing,
    Damaged(String),
}

fn render(m: &Manifest) -> String {
    let body = format!("format=1\nn_shards={}\nsite_id={}\n", m.n_shards, m.site_id);
    let crc = crc32c::crc32c(body.as_bytes());
    format!("{body}crc={crc:08x}\n")
}

fn parse(text: &str) -> Result<(Manifest, bool), String> {
    let get = |k: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(k).and_then(|r| r.strip_prefix('=')))
    };
    let legacy = match text.find("crc=") {
        Some(at) => {
            let want = get("crc").and_then(|v| u32::from_str_radix(v, 16).ok());
            if want != Some(crc32c::crc32c(&text.as_bytes()[..at])) {
                return Err("checksum does not match".into());
            }
            false
        }
        None => true,
    };
    let n: u32 = get("n_shards")
        .and_then(|v| v.parse().ok())
        .filter(|n| (1..=1024).contains(n))
        .ok_or("no valid n_shards")?;
    let site = get("site_id")
        .filter(|s| s.len() == 32 && s.bytes().all(|b| b.is_ascii_hexdigit()))
        .ok_or("no valid site_id")?;
    Ok((
        Manifest {
            n_shards: n,
            site_id: site.to_string(),
        },
        legacy,
    ))
}

fn read(path: &Path) -> Result<Read, CoreError> {
    match fs::read(path) {
        Ok(bytes) => Ok(
            match std::str::from_utf8(&bytes)
                .map_err(|_| "not text".to_string())
                .and_then(parse)
            {
                Ok((m, legacy)) => Read::Valid { m, legacy },
                Err(why) => Read::Damaged(why),
            },
        ),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Read::Missing),
        Err(e) => Err(CoreError::from_io(format!("read {}", path.display()), &e)),
    }
}

/// Writes `STORE` atomically (temp file, fsync, rename, fsync of the directory).
fn write(dir: &Path, m: &Manifest) -> std::io::Result<()> {
    let path = dir.join("STORE");
    let tmp = dir.join("STORE.tmp");
    {
        let mut f = File::create(&tmp)?;
        f.write_all(render(m).as_bytes())?;
        f.sync_all()?;
    }
    fs::rename(&tmp, &path)?;
    crate::fsutil::sync_dir(dir)
}

/// Shard directories present: one past the highest `shard-NNNN`.
fn shard_dirs(dir: &Path) -> Option<u32> {
    let mut n = None;
    for e in fs::read_dir(dir).ok()?.flatten() {
        let name = e.file_name();
        let Some(i) = name
            .to_str()
            .and_then(|s| s.strip_prefix("shard-"))
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        n = Some(n.unwrap_or(0).max(i + 1));
    }
    n
}

/// True when `dir` holds no log yet and nothing else records an identity (a first start).
fn fresh(dir: &Path, known: Option<&Manifest>) -> bool {
    known.is_none() && shard_dirs(dir).is_none()
}

fn random_hex128() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut out = String::new();
    for i in 0..2u64 {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u64(i);
        h.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos()),
        );
        h.write_u32(std::process::id());
        out.push_str(&format!("{:016x}", h.finish()));
    }
    out
}

/// The identity of the store in `dir` (locked by the caller), creating or rewriting
/// `STORE` as needed unless `check`. `want`: the shard count the options ask for (only
/// used at first start; a mismatch later is [`CoreError::ConfigMismatch`]). Returns the
/// manifest and, when `STORE` had to be written again, why.
pub(crate) fn resolve(
    dir: &Path,
    want: Option<u32>,
    known: Option<&Manifest>,
    check: bool,
) -> Result<(Manifest, Option<String>), CoreError> {
    let path = dir.join("STORE");
    let io = |e: std::io::Error| CoreError::from_io(format!("write {}", path.display()), &e);
    let (m, rebuilt) = match read(&path)? {
        Read::Valid { m, legacy } => {
            if legacy && !check {
                write(dir, &m).map_err(io)?;
            }
            (m, None)
        }
        Read::Missing if fresh(dir, known) => {
            if check {
                return Err(CoreError::NotFound(format!(
                    "no store in {}",
                    dir.display()
                )));
            }
            let n = want.unwrap_or(4);
            if n == 0 || n > 1024 {
                return Err(CoreError::InvalidArgument(format!(
                    "n_shards {n} not in 1..=1024"
                )));
            }
            let m = Manifest {
                n_shards: n,
                site_id: random_hex128(),
            };
            write(dir, &m).map_err(io)?;
            (m, None)
        }
        found => {
            let why = match found {
                Read::Damaged(why) => format!("STORE is damaged ({why})"),
                _ => "STORE is missing".to_string(),
            };
            let (m, from) = match (known, shard_dirs(dir)) {
                (Some(k), _) => (k.clone(), "the metadata's copy"),
                (None, Some(n)) => (
                    Manifest {
                        n_shards: n,
                        site_id: random_hex128(),
                    },
                    "the shard directories, with a new site id",
                ),
                (None, None) => (
                    Manifest {
                        n_shards: want.unwrap_or(4),
                        site_id: random_hex128(),
                    },
                    "the options, with a new site id",
                ),
            };
            if !check {
                if path.exists() {
                    salvage::aside(&path).map_err(io)?;
                }
                write(dir, &m).map_err(io)?;
            }
            let verb = if check {
                "would be written again"
            } else {
                "written again"
            };
            let note = format!(
                "{why}: {verb} from {from} ({} shards, site {})",
                m.n_shards, m.site_id
            );
            (m, Some(note))
        }
    };
    if let Some(w) = want {
        if w != m.n_shards {
            return Err(CoreError::ConfigMismatch(format!(
                "n_shards is fixed at first start: the store has {}, options ask for {w}",
                m.n_shards
            )));
        }
    }
    Ok((m, rebuilt))
}
