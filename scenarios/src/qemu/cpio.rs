//! A writer for the `newc` cpio format, the one the kernel unpacks as an
//! initramfs. The harness appends one small archive per boot (the guest test
//! script and its files) to the base initramfs built by `scripts/fetch-e2e.py`;
//! the kernel unpacks concatenated archives in order.

use std::collections::BTreeSet;

const S_IFDIR: u32 = 0o040000;
const S_IFREG: u32 = 0o100000;

/// An archive being built. Files' parent directories are added automatically.
#[derive(Debug, Default)]
pub struct NewcArchive {
    out: Vec<u8>,
    next_ino: u32,
    dirs: BTreeSet<String>,
}

impl NewcArchive {
    /// An empty archive.
    pub fn new() -> Self {
        NewcArchive {
            out: Vec::new(),
            next_ino: 1,
            dirs: BTreeSet::new(),
        }
    }

    fn entry(&mut self, name: &str, mode: u32, nlink: u32, data: &[u8]) {
        let ino = self.next_ino;
        self.next_ino += 1;
        let namesize = name.len() + 1;
        // magic, then 13 fields of 8 hex digits: ino, mode, uid, gid, nlink,
        // mtime, filesize, devmajor, devminor, rdevmajor, rdevminor, namesize, check.
        let fields: [u32; 13] = [
            ino,
            mode,
            0,
            0,
            nlink,
            0,
            u32::try_from(data.len()).expect("cpio member larger than 4 GiB"),
            0,
            0,
            0,
            0,
            u32::try_from(namesize).expect("cpio name too long"),
            0,
        ];
        self.out.extend_from_slice(b"070701");
        for f in fields {
            self.out.extend_from_slice(format!("{f:08X}").as_bytes());
        }
        self.out.extend_from_slice(name.as_bytes());
        self.out.push(0);
        self.pad4();
        self.out.extend_from_slice(data);
        self.pad4();
    }

    fn pad4(&mut self) {
        while !self.out.len().is_multiple_of(4) {
            self.out.push(0);
        }
    }

    fn ensure_dir(&mut self, dir: &str) {
        if dir.is_empty() || self.dirs.contains(dir) {
            return;
        }
        if let Some((parent, _)) = dir.rsplit_once('/') {
            self.ensure_dir(parent);
        }
        self.dirs.insert(dir.to_string());
        self.entry(dir, S_IFDIR | 0o755, 2, &[]);
    }

    /// Adds a regular file. `path` is relative to the root (a leading `/` is
    /// ignored); `perm` holds the permission bits, e.g. `0o755`.
    pub fn file(&mut self, path: &str, perm: u32, data: &[u8]) -> &mut Self {
        let path = path.trim_start_matches('/');
        assert!(!path.is_empty(), "empty cpio member name");
        if let Some((parent, _)) = path.rsplit_once('/') {
            self.ensure_dir(parent);
        }
        self.entry(path, S_IFREG | (perm & 0o7777), 1, data);
        self
    }

    /// Ends the archive (trailer, padded to 512 bytes) and returns its bytes.
    pub fn finish(mut self) -> Vec<u8> {
        self.entry("TRAILER!!!", 0, 1, &[]);
        while !self.out.len().is_multiple_of(512) {
            self.out.push(0);
        }
        self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_of_a_small_archive() {
        let mut a = NewcArchive::new();
        a.file("/sriov-emu/test.sh", 0o755, b"echo hi\n");
        let bytes = a.finish();
        assert_eq!(bytes.len() % 512, 0);
        let text = String::from_utf8_lossy(&bytes);
        // The directory comes before the file, the trailer last.
        let dir = text.find("sriov-emu\0").unwrap();
        let file = text.find("sriov-emu/test.sh\0").unwrap();
        let trailer = text.find("TRAILER!!!\0").unwrap();
        assert!(dir < file && file < trailer);
        assert!(bytes.starts_with(b"070701"));
        // Header of the first entry: mode field is a directory.
        assert_eq!(&bytes[14..22], b"000041ED");
        // Every header starts on a 4-byte boundary.
        for (i, _) in text.match_indices("070701") {
            assert_eq!(i % 4, 0);
        }
        assert!(text.contains("echo hi\n"));
    }
}
