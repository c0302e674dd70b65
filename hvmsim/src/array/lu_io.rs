//! LU blocks in sparse files: reads, writes, chunk copies between two LUs and digests. Every
//! write is synced before it is reported done, so the state that records it can follow.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;

use super::pairs::CHUNK;

fn chunk_len() -> usize {
    usize::try_from(CHUNK).unwrap_or(1 << 20)
}

/// Reads `length` bytes at `offset`.
pub fn read_at(path: &Path, offset: u64, length: u64) -> io::Result<Vec<u8>> {
    let file = File::open(path)?;
    let mut buffer = vec![0; usize::try_from(length).map_err(io::Error::other)?];
    file.read_exact_at(&mut buffer, offset)?;
    Ok(buffer)
}

/// Writes `data` at `offset` and syncs it.
pub fn write_at(path: &Path, offset: u64, data: &[u8]) -> io::Result<()> {
    let file = OpenOptions::new().write(true).open(path)?;
    file.write_all_at(data, offset)?;
    file.sync_data()
}

/// Copies `chunks` of `from` to the same places of `to` and syncs `to`. A chunk that is zero on
/// both sides is left alone, so copying a sparse LU keeps the copy sparse.
pub fn copy_chunks(from: &Path, to: &Path, chunks: &[u32]) -> io::Result<()> {
    let source = File::open(from)?;
    let target = OpenOptions::new().read(true).write(true).open(to)?;
    let mut data = vec![0; chunk_len()];
    let mut old = vec![0; chunk_len()];
    for chunk in chunks {
        let offset = u64::from(*chunk) * CHUNK;
        source.read_exact_at(&mut data, offset)?;
        if data.iter().all(|b| *b == 0) {
            target.read_exact_at(&mut old, offset)?;
            if old.iter().all(|b| *b == 0) {
                continue;
            }
        }
        target.write_all_at(&data, offset)?;
    }
    target.sync_data()
}

/// BLAKE3 of the whole file, hex.
pub fn digest(path: &Path) -> io::Result<String> {
    let file = File::open(path)?;
    let mut hasher = blake3::Hasher::new();
    let mut data = vec![0; chunk_len()];
    let mut offset = 0u64;
    loop {
        let read = file.read_at(&mut data, offset)?;
        if read == 0 {
            break;
        }
        hasher.update(&data[..read]);
        offset += read as u64;
    }
    Ok(hasher.finalize().to_hex().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_make_digests_equal_and_keep_zero_chunks_sparse() -> io::Result<()> {
        let dir = tempfile::tempdir()?;
        let (a, b) = (dir.path().join("a.img"), dir.path().join("b.img"));
        for p in [&a, &b] {
            File::create(p)?.set_len(3 * CHUNK)?;
        }
        write_at(&a, CHUNK + 7, b"boot sector")?;
        assert_ne!(digest(&a)?, digest(&b)?);
        copy_chunks(&a, &b, &[0, 1, 2])?;
        assert_eq!(digest(&a)?, digest(&b)?);
        assert_eq!(read_at(&b, CHUNK + 7, 4)?, b"boot");
        Ok(())
    }
}
