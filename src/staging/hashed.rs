//! Run files written under `<name>.tmp`, hashed while written, renamed into place when
//! complete; and the manifest's record of each.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// A run file as the manifest records it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FileEntry {
    /// Path relative to the run directory, `/`-separated.
    pub path: String,
    /// Rows (Parquet), records (NDJSON), or none (JSON documents).
    pub rows: Option<u64>,
    pub bytes: u64,
    pub sha256: String,
}

/// A file being written under a temporary name, hashed as it goes.
pub struct HashedFile {
    run_dir: PathBuf,
    relative: String,
    tmp: PathBuf,
    out: BufWriter<File>,
    hasher: Sha256,
    bytes: u64,
}

impl HashedFile {
    /// Start `run_dir/relative` (written as `relative.tmp` until [`HashedFile::finish`]).
    pub fn create(run_dir: &Path, relative: &str) -> Result<HashedFile> {
        let final_path = run_dir.join(relative);
        if let Some(parent) = final_path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
        }
        let tmp = tmp_path(&final_path);
        let file = File::create(&tmp).map_err(|e| Error::io(&tmp, e))?;
        Ok(HashedFile {
            run_dir: run_dir.to_path_buf(),
            relative: relative.to_string(),
            tmp,
            out: BufWriter::with_capacity(1 << 20, file),
            hasher: Sha256::new(),
            bytes: 0,
        })
    }

    /// Append one line (a newline is added).
    pub fn write_line(&mut self, line: &[u8]) -> Result<()> {
        self.write_all(line)
            .and_then(|_| self.write_all(b"\n"))
            .map_err(|e| Error::io(&self.tmp, e))
    }

    /// Flush, sync and rename into place.
    pub fn finish(mut self, rows: Option<u64>) -> Result<FileEntry> {
        self.out.flush().map_err(|e| Error::io(&self.tmp, e))?;
        self.out
            .get_ref()
            .sync_all()
            .map_err(|e| Error::io(&self.tmp, e))?;
        let final_path = self.run_dir.join(&self.relative);
        std::fs::rename(&self.tmp, &final_path).map_err(|e| Error::io(&final_path, e))?;
        Ok(FileEntry {
            path: self.relative,
            rows,
            bytes: self.bytes,
            sha256: hex::encode(self.hasher.finalize()),
        })
    }
}

impl Write for HashedFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.out.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }
}

pub(super) fn tmp_path(final_path: &Path) -> PathBuf {
    let mut name = final_path.as_os_str().to_owned();
    name.push(".tmp");
    PathBuf::from(name)
}

/// Write a JSON document into the run directory atomically.
pub fn write_json(
    run_dir: &Path,
    relative: &str,
    value: &impl serde::Serialize,
) -> Result<FileEntry> {
    let mut f = HashedFile::create(run_dir, relative)?;
    serde_json::to_writer_pretty(&mut f, value)?;
    f.write_line(b"")?;
    f.finish(None)
}

/// sha256 of a file, streamed.
pub fn sha256_file(path: &Path) -> Result<(String, u64)> {
    let mut f = File::open(path).map_err(|e| Error::io(path, e))?;
    let mut hasher = Sha256::new();
    let bytes = std::io::copy(&mut f, &mut hasher).map_err(|e| Error::io(path, e))?;
    Ok((hex::encode(hasher.finalize()), bytes))
}
