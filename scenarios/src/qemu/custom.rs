//! Guests built around what a driver developer brings: their kernel image, their
//! `make modules_install` tree or single `.ko` files replacing the stock ones, extra files and
//! kernel arguments. [`GuestBuild::prepare`] checks it all before any guest boots (every module
//! must have been built for the kernel it will be loaded into: its `vermagic` names the release)
//! and packs the modules, a `modules.dep` for the guest's busybox `modprobe`, and the files into
//! one archive appended to the base initramfs, which keeps its tools (busybox, iproute2, ethtool,
//! iperf3) and the in-guest helper.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::artifacts::Artifacts;
use super::cpio::NewcArchive;
use super::kernel::{kernel_release, module_name, ModInfo};

/// What the user brings; everything optional (all empty: the stock guest).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GuestBuild {
    /// A bzImage or an ELF vmlinux with a PVH entry; default the fetched Debian kernel.
    pub kernel: Option<PathBuf>,
    /// A `make modules_install INSTALL_MOD_PATH=DIR` tree (`DIR/lib/modules/<release>/`), or
    /// the `lib/modules/<release>` directory itself.
    pub modules: Option<PathBuf>,
    /// Single modules that replace the stock ones of the same name (or are added).
    pub module_files: Vec<PathBuf>,
    /// Extra files for the guest.
    pub files: Vec<GuestFile>,
    /// Appended to the guest kernel's command line.
    pub kernel_args: Vec<String>,
}

/// A host file put into the guest.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct GuestFile {
    pub host: PathBuf,
    /// Absolute path in the guest.
    pub guest: String,
}

impl GuestFile {
    /// `HOST=GUEST` (the command line's form).
    pub fn parse(spec: &str) -> Result<GuestFile, String> {
        let (host, guest) = spec.split_once('=').ok_or_else(|| {
            format!("`{spec}`: expected HOST=GUEST (a host file, its guest path)")
        })?;
        if !guest.starts_with('/') {
            return Err(format!("`{spec}`: the guest path must be absolute"));
        }
        Ok(GuestFile {
            host: host.into(),
            guest: guest.into(),
        })
    }
}

impl GuestBuild {
    /// Whether the stock guest is asked for (nothing brought).
    pub fn is_stock(&self) -> bool {
        *self == GuestBuild::default()
    }

    /// `self` with what `other` says on top: its kernel and modules tree where it names them,
    /// its module files, files and arguments added.
    pub fn overlay(&self, other: &GuestBuild) -> GuestBuild {
        let mut out = self.clone();
        if other.kernel.is_some() {
            out.kernel.clone_from(&other.kernel);
        }
        if other.modules.is_some() {
            out.modules.clone_from(&other.modules);
        }
        out.module_files.extend(other.module_files.iter().cloned());
        out.files.extend(other.files.iter().cloned());
        out.kernel_args.extend(other.kernel_args.iter().cloned());
        out
    }

    /// Checks the build against its kernel and packs the archive the guests boot with. Nothing
    /// is booted; every refusal happens here.
    pub fn prepare(&self, artifacts: &Artifacts) -> Result<PreparedBuild, BuildError> {
        let base = BaseModules::load(artifacts)?;
        let (kernel, release) = match &self.kernel {
            Some(path) => {
                let image = read(path)?;
                let release = kernel_release(&image).ok_or_else(|| BuildError::Kernel {
                    path: path.clone(),
                    why: "no release found: not a bzImage nor an ELF vmlinux with a Linux \
                          version banner"
                        .into(),
                })?;
                (Some(path.clone()), release)
            }
            None => (None, base.release.clone()),
        };
        let stock_flags = if kernel.is_none() {
            base.vermagic.as_deref()
        } else {
            None
        };
        let want = (release.as_str(), stock_flags);
        let kernel_label = match &kernel {
            Some(p) => format!("{release} ({})", p.display()),
            None => format!("{release} (the stock kernel)"),
        };

        // name -> where it goes under lib/modules/<release>/ and where it comes from.
        let mut set: BTreeMap<String, Planned> = BTreeMap::new();
        if release == base.release {
            for (name, m) in &base.modules {
                set.insert(
                    name.clone(),
                    Planned {
                        path: m.path.clone(),
                        depends: m.depends.clone(),
                    },
                );
            }
        }
        let mut mismatched: Vec<Mismatch> = Vec::new();
        let mut brought: Vec<(String, PathBuf)> = Vec::new();
        if let Some(dir) = &self.modules {
            let tree = ModuleTree::find(dir, &release)?;
            // The base's modules, as the user's tree builds them, and everything the user
            // installed out of tree (`extra/`, `updates/`), with their dependencies.
            let mut todo: Vec<String> = base.modules.keys().cloned().collect();
            todo.extend(tree.out_of_tree());
            let mut seen = BTreeSet::new();
            while let Some(name) = todo.pop() {
                if !seen.insert(name.clone()) {
                    continue;
                }
                let Some(rel) = tree.index.get(&name) else {
                    continue;
                };
                let host = tree.root.join(rel);
                if is_compressed(rel) {
                    return Err(BuildError::Compressed { path: host });
                }
                let info = modinfo(&host)?;
                todo.extend(info.depends.iter().cloned());
                check_release(&host, &info, want, &kernel_label, &mut mismatched);
                set.insert(
                    name.clone(),
                    Planned {
                        path: rel.clone(),
                        depends: info.depends.clone(),
                    },
                );
                brought.push((name, host));
            }
        }
        for file in &self.module_files {
            if is_compressed(&file.display().to_string()) {
                return Err(BuildError::Compressed { path: file.clone() });
            }
            let info = modinfo(file)?;
            check_release(file, &info, want, &kernel_label, &mut mismatched);
            let name = info.name.clone().unwrap_or_else(|| {
                module_name(
                    file.file_name()
                        .and_then(|n| n.to_str())
                        .and_then(|n| n.strip_suffix(".ko"))
                        .unwrap_or("module"),
                )
            });
            let path = set
                .get(&name)
                .map(|p| p.path.clone())
                .unwrap_or_else(|| format!("updates/{name}.ko"));
            set.insert(
                name.clone(),
                Planned {
                    path,
                    depends: info.depends.clone(),
                },
            );
            brought.retain(|(n, _)| *n != name);
            brought.push((name, file.clone()));
        }
        if !mismatched.is_empty() {
            return Err(BuildError::Vermagic(mismatched));
        }

        let mut archive = NewcArchive::new();
        let moddir = format!("lib/modules/{release}");
        let mut modules = Vec::new();
        for (name, host) in &brought {
            let data = read(host)?;
            let planned = &set[name];
            let guest_path = format!("/{moddir}/{}", planned.path);
            archive.file(guest_path.trim_start_matches('/'), 0o644, &data);
            modules.push(BroughtModule {
                name: name.clone(),
                host: host.clone(),
                guest: guest_path,
                sha256: sha256_hex(&data),
            });
        }
        if !modules.is_empty() {
            archive.file(
                &format!("{moddir}/modules.dep"),
                0o644,
                modules_dep(&set).as_bytes(),
            );
        }
        for f in &self.files {
            let data = read(&f.host)?;
            archive.file(f.guest.trim_start_matches('/'), 0o755, &data);
        }
        let mut notes = Vec::new();
        if release != base.release {
            for driver in ["igbvf", "ixgbevf"] {
                if !modules.iter().any(|m| m.name == driver) {
                    notes.push(format!(
                        "the guests have no {driver} module for {release} (the stock modules \
                         are {}'s): a card whose VFs it drives needs it built into the kernel, \
                         or brought with --modules or --module",
                        base.release
                    ));
                }
            }
        }
        static PREPARED: AtomicU64 = AtomicU64::new(0);
        let n = PREPARED.fetch_add(1, Ordering::Relaxed);
        let path = artifacts
            .run
            .join(format!("build-{}-{n}.cpio", std::process::id()));
        std::fs::write(&path, archive.finish()).map_err(|source| BuildError::Io {
            path: path.clone(),
            source,
        })?;
        Ok(PreparedBuild {
            kernel,
            release,
            archive: path,
            kernel_args: self.kernel_args.join(" "),
            modules,
            notes,
        })
    }
}

/// A build checked and packed, shared by the guests that boot it. Its archive is removed when
/// it drops.
#[derive(Debug)]
pub struct PreparedBuild {
    /// The user's kernel; `None`: the stock one.
    pub kernel: Option<PathBuf>,
    /// The release the guests run (`uname -r`).
    pub release: String,
    /// Appended to the base initramfs.
    pub archive: PathBuf,
    pub kernel_args: String,
    /// The modules the user brought, where they land in the guest and their checksums.
    pub modules: Vec<BroughtModule>,
    /// What the user should know before the guests boot (a kernel without the VF driver's
    /// module, say).
    pub notes: Vec<String>,
}

impl Drop for PreparedBuild {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.archive);
    }
}

/// A module the user brought.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct BroughtModule {
    pub name: String,
    pub host: PathBuf,
    /// Its path in the guest.
    pub guest: String,
    pub sha256: String,
}

/// A module built for another kernel than the one it would be loaded into.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mismatch {
    pub module: PathBuf,
    /// `vermagic` as the module has it (`None`: it has none).
    pub vermagic: Option<String>,
    /// The guest kernel's release and where it comes from.
    pub kernel: String,
    /// The whole `vermagic` the kernel's own modules have, when the release matched but the
    /// build flags did not.
    pub expected: Option<String>,
}

/// Why a build cannot boot.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("kernel {path}: {why}")]
    Kernel { path: PathBuf, why: String },
    #[error("module {path}: {why}")]
    Module { path: PathBuf, why: String },
    #[error("{}", mismatches(.0))]
    Vermagic(Vec<Mismatch>),
    #[error("modules {dir}: {why}")]
    Tree { dir: PathBuf, why: String },
    #[error(
        "{path}: compressed modules are not loaded by the guest's busybox modprobe; install \
         them uncompressed (CONFIG_MODULE_COMPRESS_NONE, or unpack them)"
    )]
    Compressed { path: PathBuf },
    #[error("the base initramfs's module list {path}: {why} (run `python3 scripts/fetch-e2e.py`)")]
    Base { path: PathBuf, why: String },
}

fn mismatches(all: &[Mismatch]) -> String {
    all.iter()
        .map(|m| match (&m.vermagic, &m.expected) {
            (Some(v), Some(e)) => format!(
                "module {} was built for {} (vermagic \"{}\") with other build flags than the \
                 guest kernel {}, whose modules have \"{}\"",
                m.module.display(),
                v.split_whitespace().next().unwrap_or(""),
                v.trim_end(),
                m.kernel,
                e.trim_end()
            ),
            (Some(v), None) => format!(
                "module {} was built for {} (vermagic \"{}\"), the guest kernel is {}",
                m.module.display(),
                v.split_whitespace().next().unwrap_or(""),
                v.trim_end(),
                m.kernel
            ),
            (None, _) => format!(
                "module {} has no vermagic, the guest kernel is {}",
                m.module.display(),
                m.kernel
            ),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&mismatches(std::slice::from_ref(self)))
    }
}

/// A module loads into the kernel of `release` only if its `vermagic` names that release; into
/// the stock kernel only if it also has the stock build flags (`expected`, the whole string the
/// stock modules carry: the kernel's `same_magic` compares the flags even with modversions).
fn check_release(
    path: &Path,
    info: &ModInfo,
    (release, expected): (&str, Option<&str>),
    kernel: &str,
    out: &mut Vec<Mismatch>,
) {
    let flags = |v: &str| v.split_whitespace().skip(1).collect::<Vec<_>>().join(" ");
    let flags_differ = match (expected, info.vermagic.as_deref()) {
        (Some(e), Some(v)) => flags(e) != flags(v),
        _ => false,
    };
    let release_differs = info.release() != Some(release);
    if release_differs || flags_differ {
        out.push(Mismatch {
            module: path.to_path_buf(),
            vermagic: info.vermagic.clone(),
            kernel: kernel.to_string(),
            expected: (!release_differs)
                .then(|| expected.map(str::to_string))
                .flatten(),
        });
    }
}

fn read(path: &Path) -> Result<Vec<u8>, BuildError> {
    std::fs::read(path).map_err(|source| BuildError::Io {
        path: path.to_path_buf(),
        source,
    })
}

fn modinfo(path: &Path) -> Result<ModInfo, BuildError> {
    ModInfo::parse(&read(path)?).map_err(|why| BuildError::Module {
        path: path.to_path_buf(),
        why,
    })
}

fn is_compressed(path: &str) -> bool {
    [".ko.xz", ".ko.zst", ".ko.gz"]
        .iter()
        .any(|s| path.ends_with(s))
}

/// The SHA-256 of `data` in lower-case hex (what `sha256sum` prints).
pub fn sha256_hex(data: &[u8]) -> String {
    Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A module of the guest: its path under `lib/modules/<release>/` and its direct dependencies.
struct Planned {
    path: String,
    depends: Vec<String>,
}

/// `modules.dep` as depmod writes it: each module with its whole dependency closure, the one
/// to load first rightmost.
fn modules_dep(set: &BTreeMap<String, Planned>) -> String {
    fn visit(
        name: &str,
        set: &BTreeMap<String, Planned>,
        seen: &mut BTreeSet<String>,
        order: &mut Vec<String>,
    ) {
        let Some(m) = set.get(name) else { return };
        for d in &m.depends {
            if seen.insert(d.clone()) {
                visit(d, set, seen, order);
                if set.contains_key(d) {
                    order.push(d.clone());
                }
            }
        }
    }
    let mut out = String::new();
    for (name, m) in set {
        let mut seen = BTreeSet::from([name.clone()]);
        let mut order = Vec::new();
        visit(name, set, &mut seen, &mut order);
        out.push_str(&m.path);
        out.push(':');
        for d in order.iter().rev() {
            out.push(' ');
            out.push_str(&set[d].path);
        }
        out.push('\n');
    }
    out
}

/// The base initramfs's modules, as `scripts/fetch-e2e.py` lists them.
#[derive(Deserialize)]
struct BaseModules {
    release: String,
    /// The stock modules' `vermagic`: the stock kernel's release and build flags.
    #[serde(default)]
    vermagic: Option<String>,
    modules: BTreeMap<String, BaseModule>,
}

#[derive(Deserialize)]
struct BaseModule {
    path: String,
    depends: Vec<String>,
}

impl BaseModules {
    const FILE: &'static str = "initramfs-modules.json";

    fn load(artifacts: &Artifacts) -> Result<BaseModules, BuildError> {
        let path = artifacts.dir.join(Self::FILE);
        let text = std::fs::read_to_string(&path).map_err(|e| BuildError::Base {
            path: path.clone(),
            why: e.to_string(),
        })?;
        serde_json::from_str(&text).map_err(|e| BuildError::Base {
            path,
            why: e.to_string(),
        })
    }
}

/// A user's `lib/modules/<release>` directory and the modules in it.
struct ModuleTree {
    root: PathBuf,
    /// name -> path relative to `root`.
    index: BTreeMap<String, String>,
}

impl ModuleTree {
    fn find(dir: &Path, release: &str) -> Result<ModuleTree, BuildError> {
        let tree_err = |why: String| BuildError::Tree {
            dir: dir.to_path_buf(),
            why,
        };
        let installed = dir.join("lib").join("modules");
        let root = if installed.is_dir() {
            let here = installed.join(release);
            if !here.is_dir() {
                let has: Vec<String> = std::fs::read_dir(&installed)
                    .map(|d| {
                        d.flatten()
                            .map(|e| e.file_name().to_string_lossy().into_owned())
                            .collect()
                    })
                    .unwrap_or_default();
                return Err(tree_err(format!(
                    "has modules for {} (lib/modules/), the guest kernel is {release}",
                    if has.is_empty() {
                        "no release".to_string()
                    } else {
                        has.join(", ")
                    }
                )));
            }
            here
        } else if dir.file_name().and_then(|n| n.to_str()) == Some(release) {
            dir.to_path_buf()
        } else {
            return Err(tree_err(format!(
                "neither a modules_install tree (no lib/modules/{release}/ in it) nor \
                 lib/modules/{release} itself"
            )));
        };
        let mut index = BTreeMap::new();
        let mut stack = vec![root.clone()];
        while let Some(d) = stack.pop() {
            let entries = std::fs::read_dir(&d).map_err(|source| BuildError::Io {
                path: d.clone(),
                source,
            })?;
            for e in entries.flatten() {
                let p = e.path();
                if p.is_dir() {
                    // `build` and `source` point back at the kernel tree.
                    if !e.file_type().is_ok_and(|t| t.is_symlink()) {
                        stack.push(p);
                    }
                    continue;
                }
                let file = e.file_name().to_string_lossy().into_owned();
                let stem = [".ko", ".ko.xz", ".ko.zst", ".ko.gz"]
                    .iter()
                    .find_map(|s| file.strip_suffix(s));
                if let (Some(stem), Ok(rel)) = (stem, p.strip_prefix(&root)) {
                    index.insert(module_name(stem), rel.display().to_string());
                }
            }
        }
        Ok(ModuleTree { root, index })
    }

    /// The modules installed out of tree (`extra/`, `updates/`): what a developer builds.
    fn out_of_tree(&self) -> Vec<String> {
        self.index
            .iter()
            .filter(|(_, rel)| rel.starts_with("extra/") || rel.starts_with("updates/"))
            .map(|(n, _)| n.clone())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn planned(path: &str, deps: &[&str]) -> Planned {
        Planned {
            path: path.into(),
            depends: deps.iter().map(|d| d.to_string()).collect(),
        }
    }

    #[test]
    fn modules_dep_lists_the_closure_with_the_first_to_load_rightmost() {
        let set = BTreeMap::from([
            (
                "8021q".to_string(),
                planned("kernel/8021q.ko", &["mrp", "garp"]),
            ),
            (
                "garp".to_string(),
                planned("kernel/garp.ko", &["stp", "llc"]),
            ),
            ("mrp".to_string(), planned("kernel/mrp.ko", &[])),
            ("stp".to_string(), planned("kernel/stp.ko", &["llc"])),
            ("llc".to_string(), planned("kernel/llc.ko", &[])),
        ]);
        let dep = modules_dep(&set);
        let line = dep
            .lines()
            .find(|l| l.starts_with("kernel/8021q.ko"))
            .unwrap();
        let order: Vec<&str> = line.split_whitespace().skip(1).collect();
        let pos = |m: &str| order.iter().position(|x| *x == m).unwrap();
        // modprobe loads right to left: llc before stp before garp.
        assert!(pos("kernel/llc.ko") > pos("kernel/stp.ko"));
        assert!(pos("kernel/stp.ko") > pos("kernel/garp.ko"));
        assert_eq!(order.len(), 4);
        assert!(dep.contains("kernel/llc.ko:\n"));
    }

    #[test]
    fn guest_files_are_host_equals_absolute_guest_path() {
        let f = GuestFile::parse("./a.conf=/etc/a.conf").unwrap();
        assert_eq!(f.host, PathBuf::from("./a.conf"));
        assert_eq!(f.guest, "/etc/a.conf");
        assert!(GuestFile::parse("a.conf").is_err());
        assert!(GuestFile::parse("a.conf=etc/a.conf").is_err());
    }

    #[test]
    fn overlay_keeps_what_the_other_leaves_out_and_adds_lists() {
        let file = GuestBuild {
            kernel: Some("k".into()),
            module_files: vec!["a.ko".into()],
            ..GuestBuild::default()
        };
        let cli = GuestBuild {
            module_files: vec!["b.ko".into()],
            kernel_args: vec!["quiet".into()],
            ..GuestBuild::default()
        };
        let both = file.overlay(&cli);
        assert_eq!(both.kernel, Some("k".into()));
        assert_eq!(both.module_files.len(), 2);
        assert!(!both.is_stock());
        assert!(GuestBuild::default().is_stock());
    }
}
