//! Bodies as files in a folder: `ROOT/ab/cd/abcd…`.
//!
//! A put writes a temporary file, fsyncs it, renames it over the key and
//! fsyncs the folder, so after `put` returns the file is whole and findable
//! after a crash; a crash before leaves at most a `.tmp` file, never a
//! partial body under a key. A folder created on the way is fsynced into its
//! parent first. (`object_store`'s own local backend does not fsync, which is
//! why this one is Tern's.)

use super::{Blobs, check_key};

use crate::{Result, StoreError};
use async_trait::async_trait;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

/// Message bodies in a local folder.
pub struct FileBlobs {
    root: PathBuf,
}

impl FileBlobs {
    /// Uses (creating if needed) the folder `root`.
    pub fn open(root: &Path) -> Result<Self> {
        create_dir_synced(root)?;
        Ok(Self {
            root: root.to_path_buf(),
        })
    }

    fn path(&self, hash: &str) -> PathBuf {
        self.root.join(super::relative_name(hash))
    }

    async fn blocking<T: Send + 'static>(
        &self,
        hash: &str,
        f: impl FnOnce(PathBuf) -> io::Result<T> + Send + 'static,
    ) -> Result<T> {
        check_key(hash)?;
        let path = self.path(hash);
        tokio::task::spawn_blocking(move || f(path))
            .await
            .map_err(|e| StoreError::Invalid(format!("blob task failed: {e}")))?
            .map_err(StoreError::Io)
    }
}

/// Creates `dir` and any missing parents, fsyncing each new folder's parent
/// so the new entry itself is durable.
fn create_dir_synced(dir: &Path) -> io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        create_dir_synced(parent)?;
    }
    match fs::create_dir(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Ok(()),
        Err(e) => return Err(e),
    }
    let parent = dir.parent().filter(|p| !p.as_os_str().is_empty());
    File::open(parent.unwrap_or(Path::new(".")))?.sync_all()
}

fn write_synced(path: &Path, data: &[u8]) -> io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    create_dir_synced(dir)?;
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("blob");
    let tmp = dir.join(format!(".{name}.{:016x}.tmp", rand::random::<u64>()));
    let written = (|| {
        let mut f = OpenOptions::new().write(true).create_new(true).open(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if written.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    written?;
    File::open(dir)?.sync_all()
}

#[async_trait]
impl Blobs for FileBlobs {
    async fn put(&self, hash: &str, data: Arc<Vec<u8>>) -> Result<()> {
        self.blocking(hash, move |path| write_synced(&path, &data))
            .await
    }

    async fn get(&self, hash: &str) -> Result<Vec<u8>> {
        match self.blocking(hash, fs::read).await {
            Err(StoreError::Io(e)) if e.kind() == io::ErrorKind::NotFound => {
                Err(StoreError::NotFound(format!("message body {hash}")))
            }
            r => r,
        }
    }

    async fn delete(&self, hash: &str) -> Result<()> {
        self.blocking(hash, |path| match fs::remove_file(&path) {
            Ok(()) => File::open(path.parent().unwrap_or(Path::new(".")))?.sync_all(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e),
        })
        .await
    }

    async fn written_at(&self, hash: &str) -> Result<Option<SystemTime>> {
        self.blocking(hash, |path| match fs::metadata(path) {
            Ok(m) => m.modified().map(Some),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        })
        .await
    }

    async fn list_shard(&self, shard: &str) -> Result<Vec<(String, SystemTime)>> {
        super::check_shard(shard)?;
        let dir = self.root.join(shard);
        tokio::task::spawn_blocking(move || -> io::Result<Vec<(String, SystemTime)>> {
            let mut out = Vec::new();
            let subdirs = match fs::read_dir(&dir) {
                Ok(d) => d,
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
                Err(e) => return Err(e),
            };
            for sub in subdirs {
                let sub = sub?;
                if !sub.file_type()?.is_dir() {
                    continue;
                }
                for f in fs::read_dir(sub.path())? {
                    let f = f?;
                    let name = f.file_name().to_string_lossy().to_string();
                    if check_key(&name).is_ok() {
                        out.push((name, f.metadata()?.modified()?));
                    }
                }
            }
            Ok(out)
        })
        .await
        .map_err(|e| StoreError::Invalid(format!("blob task failed: {e}")))?
        .map_err(StoreError::Io)
    }

    fn describe(&self) -> String {
        format!("files in {}", self.root.display())
    }
}
