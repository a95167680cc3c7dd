//! What a kernel image and a module file say about themselves: the release a kernel was built
//! as, and a module's `.modinfo` (`name`, `vermagic`, `depends`). The bring-your-own guest path
//! ([`super::custom`]) reads them before any guest boots, so that a module built for another
//! kernel is refused with both versions named instead of failing inside the guest.

use object::{Object, ObjectSection};

/// The release (`uname -r`) of a kernel image: a bzImage's setup header points at its version
/// string (the `kernel_version` field, Documentation/arch/x86/boot.rst); an ELF vmlinux (the
/// PVH entry QEMU boots) carries the `Linux version <release> ...` banner in its read-only data.
pub fn kernel_release(image: &[u8]) -> Option<String> {
    bzimage_release(image).or_else(|| banner_release(image))
}

/// The `HdrS` setup header of a bzImage: its `kernel_version` field (offset 0x20e) holds the
/// version string's offset minus 0x200 (boot protocol 2.00 and later).
fn bzimage_release(image: &[u8]) -> Option<String> {
    const HEADER_MAGIC: std::ops::Range<usize> = 0x202..0x206;
    const PROTOCOL: usize = 0x206;
    const KERNEL_VERSION: usize = 0x20e;
    if image.get(HEADER_MAGIC)? != b"HdrS" {
        return None;
    }
    let protocol = u16::from_le_bytes(image.get(PROTOCOL..PROTOCOL + 2)?.try_into().ok()?);
    let ptr = u16::from_le_bytes(
        image
            .get(KERNEL_VERSION..KERNEL_VERSION + 2)?
            .try_into()
            .ok()?,
    );
    if protocol < 0x0200 || ptr == 0 {
        return None;
    }
    first_word(image.get(usize::from(ptr) + 0x200..)?)
}

/// `Linux version <release> (...)`, the banner `init/version.c` builds, in an uncompressed
/// image.
fn banner_release(image: &[u8]) -> Option<String> {
    const BANNER: &[u8] = b"Linux version ";
    let finder = memchr::memmem::Finder::new(BANNER);
    // The first hit may be a format string ("Linux version %s"): take the first that reads as
    // a release.
    finder
        .find_iter(image)
        .filter_map(|at| first_word(&image[at + BANNER.len()..]))
        .find(|r| r.chars().next().is_some_and(|c| c.is_ascii_digit()))
}

/// The bytes up to the first space or NUL, if they are printable ASCII and not too long.
fn first_word(bytes: &[u8]) -> Option<String> {
    let end = bytes.iter().take(128).position(|&b| b == b' ' || b == 0)?;
    let word = &bytes[..end];
    if word.is_empty() || !word.iter().all(|b| b.is_ascii_graphic()) {
        return None;
    }
    String::from_utf8(word.to_vec()).ok()
}

/// A module's `.modinfo` section: the `key=value` strings modpost and the module's own
/// `MODULE_*` macros put there.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ModInfo {
    /// `name=`: the module's name as the kernel knows it (not the file's).
    pub name: Option<String>,
    /// `vermagic=`: the release it was built for, then the build's flags
    /// (`6.1.0-50-amd64 SMP preempt mod_unload modversions `).
    pub vermagic: Option<String>,
    /// `depends=`: the modules it needs, by name.
    pub depends: Vec<String>,
    pub description: Option<String>,
}

impl ModInfo {
    /// Reads the `.modinfo` of a relocatable ELF module.
    pub fn parse(data: &[u8]) -> Result<ModInfo, String> {
        let file = object::File::parse(data).map_err(|e| format!("not an ELF module: {e}"))?;
        let section = file
            .section_by_name(".modinfo")
            .ok_or_else(|| "no .modinfo section: not a kernel module".to_string())?;
        let bytes = section
            .data()
            .map_err(|e| format!("reading .modinfo: {e}"))?;
        let mut info = ModInfo::default();
        for item in bytes.split(|&b| b == 0) {
            let text = String::from_utf8_lossy(item);
            let Some((key, value)) = text.split_once('=') else {
                continue;
            };
            match key {
                "name" => info.name = Some(module_name(value)),
                "vermagic" => info.vermagic = Some(value.to_string()),
                "depends" => {
                    info.depends = value
                        .split(',')
                        .filter(|d| !d.is_empty())
                        .map(module_name)
                        .collect()
                }
                "description" => info.description = Some(value.to_string()),
                _ => {}
            }
        }
        Ok(info)
    }

    /// The release `vermagic` names (its first word).
    pub fn release(&self) -> Option<&str> {
        self.vermagic.as_deref()?.split_whitespace().next()
    }
}

/// A module name as modprobe compares them: `-` and `_` are the same.
pub fn module_name(name: &str) -> String {
    name.replace('-', "_")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bzimage_names_its_release_through_the_setup_header() {
        let mut image = vec![0u8; 0x1000];
        image[0x202..0x206].copy_from_slice(b"HdrS");
        image[0x206..0x208].copy_from_slice(&0x020fu16.to_le_bytes());
        image[0x20e..0x210].copy_from_slice(&0x0300u16.to_le_bytes());
        let version = b"6.1.0-50-amd64 (debian-kernel@lists.debian.org) #1 SMP\0";
        image[0x500..0x500 + version.len()].copy_from_slice(version);
        assert_eq!(kernel_release(&image).as_deref(), Some("6.1.0-50-amd64"));
        // An old boot protocol has no such field.
        image[0x206..0x208].copy_from_slice(&0x0100u16.to_le_bytes());
        assert_eq!(kernel_release(&image), None);
    }

    #[test]
    fn a_vmlinux_names_its_release_in_the_banner_past_the_format_string() {
        let mut image = b"\x7fELF....Linux version %s (%s)\0....".to_vec();
        image.extend_from_slice(b"Linux version 6.12.3-custom+ (dev@box) (gcc 12) #4 SMP\0");
        assert_eq!(kernel_release(&image).as_deref(), Some("6.12.3-custom+"));
        assert_eq!(kernel_release(b"not a kernel at all"), None);
    }

    #[test]
    fn garbage_is_not_a_module() {
        assert!(ModInfo::parse(b"").is_err());
        assert!(ModInfo::parse(&[0x7f, b'E', b'L', b'F', 2, 1, 1, 0]).is_err());
    }

    #[test]
    fn module_names_compare_with_dashes_as_underscores() {
        assert_eq!(module_name("act-police"), "act_police");
    }
}
