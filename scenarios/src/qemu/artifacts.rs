//! Where the fetched QEMU, guest kernel and initramfs live: `target/e2e/` of
//! the workspace, filled by `scripts/fetch-e2e.py`.

use std::fmt;
use std::path::{Path, PathBuf};

/// The script that fetches and builds the artifacts.
pub const FETCH_SCRIPT: &str = "scripts/fetch-e2e.py";

/// Environment variable that points at another artifact directory.
pub const E2E_DIR_ENV: &str = "SRIOV_EMU_E2E_DIR";

/// Errors of the harness.
#[derive(Debug)]
pub enum HarnessError {
    /// An artifact is missing: the fetch script has not run.
    Missing { path: PathBuf },
    Io {
        what: String,
        source: std::io::Error,
    },
}

impl fmt::Display for HarnessError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HarnessError::Missing { path } => write!(
                f,
                "end-to-end artifact {} is missing: run `python3 {}` from the workspace root \
                 (or `scripts/test.sh`, which runs it before the tests)",
                path.display(),
                FETCH_SCRIPT
            ),
            HarnessError::Io { what, source } => write!(f, "{what}: {source}"),
        }
    }
}

impl std::error::Error for HarnessError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            HarnessError::Io { source, .. } => Some(source),
            HarnessError::Missing { .. } => None,
        }
    }
}

pub(crate) fn io_err(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> HarnessError {
    let what = what.into();
    move |source| HarnessError::Io { what, source }
}

/// Paths of the fetched artifacts.
#[derive(Debug, Clone)]
pub struct Artifacts {
    /// `target/e2e`.
    pub dir: PathBuf,
    /// Wrapper that runs the extracted QEMU 11.1.
    pub qemu: PathBuf,
    /// Uncompressed ELF kernel, booted through its PVH entry.
    pub kernel: PathBuf,
    /// Base initramfs (uncompressed newc).
    pub initramfs: PathBuf,
    /// The DPDK archive to append to it: testpmd, its PMDs and libraries, the binding modules.
    pub initramfs_dpdk: PathBuf,
    /// Console logs, one per guest name.
    pub logs: PathBuf,
    /// Per-boot initramfs copies (removed when the guest ends).
    pub run: PathBuf,
}

/// The workspace root: the parent of this crate's manifest directory.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the scenarios crate has a parent directory")
        .to_path_buf()
}

impl Artifacts {
    /// Finds the artifacts, or says which script to run.
    pub fn locate() -> Result<Self, HarnessError> {
        let dir = match std::env::var_os(E2E_DIR_ENV) {
            Some(d) => PathBuf::from(d),
            None => workspace_root().join("target").join("e2e"),
        };
        let a = Artifacts {
            qemu: dir.join("bin").join("qemu-system-x86_64"),
            kernel: dir.join("vmlinux"),
            initramfs: dir.join("initramfs.cpio"),
            initramfs_dpdk: dir.join("initramfs-dpdk.cpio"),
            logs: dir.join("logs"),
            run: dir.join("run"),
            dir,
        };
        for p in [&a.qemu, &a.kernel, &a.initramfs, &a.initramfs_dpdk] {
            if !p.exists() {
                return Err(HarnessError::Missing { path: p.clone() });
            }
        }
        for d in [&a.logs, &a.run] {
            std::fs::create_dir_all(d).map_err(io_err(format!("creating {}", d.display())))?;
        }
        Ok(a)
    }

    /// A host-side tool the fetch script provides (`tcpdump`, `ping`: wrappers like QEMU's,
    /// in `bin/`), or says which script to run.
    pub fn host_tool(&self, name: &str) -> Result<PathBuf, HarnessError> {
        let p = self.dir.join("bin").join(name);
        if p.exists() {
            Ok(p)
        } else {
            Err(HarnessError::Missing { path: p })
        }
    }
}
