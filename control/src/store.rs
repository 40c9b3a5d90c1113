//! The daemon's persistent state: every bridge, port and rule, in one JSON
//! file under the state directory (default `/var/lib/xsw/state.json`).
//!
//! Writes are atomic: the new state goes to a temporary file in the same
//! directory, is flushed to disk (fsync), then renamed over the old file,
//! and the directory is flushed so the rename itself is durable. A crash at
//! any moment leaves either the old file or the new one, whole.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::spec::BridgeSpec;

/// The file's format marker.
const FORMAT: &str = "xsw-state";
/// The file's version.
const FILE_VERSION: u32 = 1;

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StateFile {
    format: String,
    version: u32,
    bridges: Vec<BridgeSpec>,
}

/// The state directory.
#[derive(Debug, Clone)]
pub struct Store {
    dir: PathBuf,
}

/// Why the state could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The file or directory could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The file is not a state file this version can read.
    #[error("{path}:{line}:{col}: {msg}")]
    Parse {
        /// The path.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        col: usize,
        /// What is wrong.
        msg: String,
    },
    /// The file parses but describes something invalid.
    #[error("{path}: {msg}")]
    Invalid {
        /// The path.
        path: PathBuf,
        /// What is wrong.
        msg: String,
    },
}

impl Store {
    /// A store in `dir` (created when first written).
    pub fn new(dir: &Path) -> Store {
        Store {
            dir: dir.to_path_buf(),
        }
    }

    /// The state file's path.
    pub fn path(&self) -> PathBuf {
        self.dir.join("state.json")
    }

    fn io(&self, path: &Path) -> impl Fn(std::io::Error) -> StoreError + '_ {
        let path = path.to_path_buf();
        move |source| StoreError::Io {
            path: path.clone(),
            source,
        }
    }

    /// Reads the state: `None` when there is none yet. Every bridge is
    /// checked as a request would be.
    pub fn load(&self) -> Result<Option<Vec<BridgeSpec>>, StoreError> {
        let path = self.path();
        let text = match fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(self.io(&path)(e)),
        };
        let f: StateFile = serde_json::from_str(&text).map_err(|e| StoreError::Parse {
            path: path.clone(),
            line: e.line(),
            col: e.column(),
            msg: e.to_string(),
        })?;
        if f.format != FORMAT || f.version != FILE_VERSION {
            return Err(StoreError::Invalid {
                path,
                msg: format!(
                    "format {} version {}: this xswd reads {FORMAT} version {FILE_VERSION}",
                    f.format, f.version
                ),
            });
        }
        for b in &f.bridges {
            b.to_def().map_err(|msg| StoreError::Invalid {
                path: path.clone(),
                msg,
            })?;
        }
        Ok(Some(f.bridges))
    }

    /// Writes the state atomically (see the module docs).
    pub fn save(&self, bridges: &[BridgeSpec]) -> Result<(), StoreError> {
        fs::create_dir_all(&self.dir).map_err(self.io(&self.dir))?;
        let path = self.path();
        let tmp = self
            .dir
            .join(format!(".state.json.tmp.{}", std::process::id()));
        let f = StateFile {
            format: FORMAT.into(),
            version: FILE_VERSION,
            bridges: bridges.to_vec(),
        };
        let json = serde_json::to_vec_pretty(&f).map_err(|e| StoreError::Invalid {
            path: path.clone(),
            msg: e.to_string(),
        })?;
        let write = || -> std::io::Result<()> {
            let mut file = fs::File::create(&tmp)?;
            file.write_all(&json)?;
            file.write_all(b"\n")?;
            file.sync_all()?;
            drop(file);
            fs::rename(&tmp, &path)?;
            fs::File::open(&self.dir)?.sync_all()
        };
        write().map_err(|e| {
            let _ = fs::remove_file(&tmp);
            self.io(&path)(e)
        })
    }

    /// Removes temporary files a crash left behind.
    pub fn clean(&self) {
        if let Ok(rd) = fs::read_dir(&self.dir) {
            for e in rd.flatten() {
                if e.file_name()
                    .to_string_lossy()
                    .starts_with(".state.json.tmp.")
                {
                    let _ = fs::remove_file(e.path());
                }
            }
        }
    }

    /// Deletes the state (for `--reset-state`).
    pub fn reset(&self) -> Result<(), StoreError> {
        match fs::remove_file(self.path()) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(self.io(&self.path())(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saves_and_loads_and_refuses_damage() {
        let dir = std::env::temp_dir().join(format!("xsw-store-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let s = Store::new(&dir);
        assert!(s.load().expect("empty").is_none());
        let mut b = BridgeSpec::new("br0");
        b.flows = Some(vec!["priority=5,ip actions=drop".into()]);
        s.save(std::slice::from_ref(&b)).expect("save");
        assert_eq!(s.load().expect("load"), Some(vec![b.clone()]));
        // A file cut short (as no atomic write leaves one) is refused with
        // its place, never half-read.
        let text = fs::read_to_string(s.path()).expect("read");
        fs::write(s.path(), &text[..text.len() / 2]).expect("write");
        let e = s.load().expect_err("damaged");
        assert!(e.to_string().contains("state.json:"), "{e}");
        // A bad rule in the file is named.
        b.flows = Some(vec!["priority=5,nw_dst=1.2.3.4 actions=drop".into()]);
        fs::write(
            s.path(),
            serde_json::to_string(&StateFile {
                format: FORMAT.into(),
                version: 1,
                bridges: vec![b],
            })
            .expect("json"),
        )
        .expect("write");
        let e = s.load().expect_err("bad flow");
        assert!(e.to_string().contains("flow 1"), "{e}");
        let _ = fs::remove_dir_all(&dir);
    }
}
