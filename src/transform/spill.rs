//! Scratch files for state that outgrows its memory budget (natural keys, the invoice index):
//! a directory created on first use and removed with its owner, and positioned reads.

use std::fs::File;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// A scratch directory, created on first use and removed (with everything in it) on drop.
#[derive(Debug)]
pub struct SpillDir {
    path: PathBuf,
    created: bool,
}

impl SpillDir {
    pub fn new(path: PathBuf) -> SpillDir {
        SpillDir {
            path,
            created: false,
        }
    }

    /// The path of `name` in the directory, which is created if it does not exist yet.
    pub fn file(&mut self, name: &str) -> Result<PathBuf> {
        if !self.created {
            std::fs::create_dir_all(&self.path).map_err(|e| Error::io(&self.path, e))?;
            self.created = true;
        }
        Ok(self.path.join(name))
    }

    /// Create `name` in the directory for reading and writing (it must not exist yet).
    pub fn create(&mut self, name: &str) -> Result<(File, PathBuf)> {
        let path = self.file(name)?;
        let file = File::options()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| Error::io(&path, e))?;
        Ok((file, path))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for SpillDir {
    fn drop(&mut self) {
        if self.created {
            if let Err(e) = std::fs::remove_dir_all(&self.path) {
                tracing::warn!("cannot remove {}: {e}", self.path.display());
            }
        }
    }
}

/// Fill `buf` from `file` at `offset`.
#[cfg(unix)]
pub fn read_at(file: &File, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
    std::os::unix::fs::FileExt::read_exact_at(file, buf, offset)
}

/// Fill `buf` from `file` at `offset`.
#[cfg(windows)]
pub fn read_at(file: &File, mut buf: &mut [u8], mut offset: u64) -> std::io::Result<()> {
    use std::os::windows::fs::FileExt;
    while !buf.is_empty() {
        match file.seek_read(buf, offset)? {
            0 => return Err(std::io::ErrorKind::UnexpectedEof.into()),
            n => {
                buf = &mut buf[n..];
                offset += n as u64;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_on_first_use_and_removed_on_drop() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let path = tmp.path().join("spill");
        let mut dir = SpillDir::new(path.clone());
        assert!(!path.exists(), "nothing is created before first use");
        let (_file, file_path) = dir.create("a.bin").expect("create");
        assert!(file_path.is_file());
        assert!(
            dir.create("a.bin").is_err(),
            "an existing file is not overwritten"
        );
        drop(dir);
        assert!(!path.exists(), "the directory is removed on drop");
    }

    #[test]
    fn read_at_reads_exactly_or_fails() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let mut dir = SpillDir::new(tmp.path().join("s"));
        let (file, path) = dir.create("x").expect("create");
        std::fs::write(&path, b"0123456789").expect("write");
        let mut buf = [0u8; 4];
        read_at(&file, &mut buf, 3).expect("read");
        assert_eq!(&buf, b"3456");
        assert!(
            read_at(&file, &mut buf, 8).is_err(),
            "a short read is an error"
        );
    }
}
