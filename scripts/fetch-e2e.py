#!/usr/bin/env python3
"""Fetch and build everything the QEMU end-to-end tests need, into target/e2e/.

Idempotent and cached: every stage writes a stamp holding the key it was built
from, and is skipped when the stamp matches and its outputs exist. A second run
downloads nothing.

Stages:
  qemu    QEMU 11.1 (qemu-system-x86 from trixie-backports) with its dependency
          closure, fetched with `apt-get download` against a private apt state,
          extracted with `dpkg -x` into target/e2e/qemu-root, and a wrapper
          target/e2e/bin/qemu-system-x86_64 that runs it through that tree's own
          dynamic loader. The machine's own packages are never touched.
  guest   Debian bookworm's kernel image, busybox-static, iproute2, iperf3,
          ethtool and the library packages they need, extracted into
          target/e2e/guest-tree.
  vmlinux The ELF vmlinux cut out of the kernel's bzImage (PVH boot entry).
  initrd  target/e2e/initramfs.cpio: busybox, the guest tools with their shared
          libraries, the NIC modules with a modules.dep, and tests/guest/init;
          target/e2e/initramfs-modules.json lists those modules (release, path,
          direct dependencies) for guests built around a user's kernel/modules.
  dpdk    DPDK 22.11 from bookworm (dpdk-testpmd lives in dpdk-dev there) with the
          e1000 VF PMD and the ring mempool, extracted into target/e2e/dpdk-tree,
          and target/e2e/initramfs-dpdk.cpio: an archive appended to the base
          initramfs by the DPDK tests (testpmd, the PMDs, their libraries, the
          uio_pci_generic and vfio-pci modules and a modules.dep covering both).
  host    Host-side tools of the tests (tcpdump, to read back `serve --pcap`
          files; ping, to reach a guest from a network namespace) from bookworm with their dependency closure, extracted into
          target/e2e/host-root, with wrappers in target/e2e/bin that run them
          through that tree's own dynamic loader, as for QEMU.
  browser Chromium's headless shell (bookworm's chromium-headless-shell) with
          its dependency closure, less the desktop tools chromium-common pulls
          in, extracted into target/e2e/browser-root, and a wrapper
          target/e2e/bin/chromium-headless-shell that runs it through that
          tree's own dynamic loader: the HTML report test loads a report in it
          and reads back the rendered DOM.

The Debian archive URI comes from this machine's apt configuration (the first
non-security bookworm entry); set SRIOV_EMU_DEBIAN_URI to override it.
"""

import glob
import hashlib
import json
import lzma
import os
import re
import shutil
import stat
import struct
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
E2E = os.path.join(REPO, "target", "e2e")
GUEST_SRC = os.path.join(REPO, "tests", "guest")

# Bump to force every stage to rebuild.
LAYOUT_VERSION = "1"

QEMU_SUITES = ["trixie", "trixie-backports"]
QEMU_TARGET_RELEASE = "trixie-backports"
QEMU_PACKAGES = ["qemu-system-x86"]
# Packages of a dependency closure that only maintainer scripts need: nothing
# runs them from an extracted tree, so they are not downloaded.
SKIP_PACKAGES = {
    "base-passwd", "debconf", "login.defs", "passwd", "adduser", "tar", "dpkg", "perl",
    "perl-base", "usrmerge", "init-system-helpers", "openssl-provider-legacy",
}
QEMU_VERSION_PREFIX = "11.1."
TRIXIE_KEYRINGS = [
    "/usr/share/keyrings/debian-archive-trixie-stable.gpg",
    "/usr/share/keyrings/debian-archive-trixie-automatic.gpg",
]

GUEST_SUITES = ["bookworm"]
GUEST_TOOLS = ["busybox-static", "iproute2", "iperf3", "ethtool"]
BOOKWORM_KEYRINGS = [
    "/usr/share/keyrings/debian-archive-bookworm-stable.gpg",
    "/usr/share/keyrings/debian-archive-bookworm-automatic.gpg",
]
# ELF programs copied from the guest tree into the initramfs (path in tree ->
# path in the initramfs). Their shared libraries follow automatically.
GUEST_PROGRAMS = {
    "bin/ip": "usr/sbin/ip",
    "sbin/bridge": "usr/sbin/bridge",
    "sbin/tc": "usr/sbin/tc",
    "bin/ss": "usr/sbin/ss",
    "usr/bin/iperf3": "usr/bin/iperf3",
    # igb's link settings, statistics and offline self-test (`ethtool -t`) on the PF.
    "sbin/ethtool": "usr/sbin/ethtool",
}
# Modules (by name) put in the initramfs with their dependency closure. Names
# that the kernel does not build as modules are ignored.
GUEST_MODULES = [
    "igb", "igbvf", "ixgbevf", "virtio_pci", "virtio_net", "8021q", "bridge", "veth", "dummy", "macvlan",
    "sch_htb", "sch_tbf", "sch_ingress", "cls_u32", "cls_flower",
    "act_police", "act_mirred", "act_gact",
]

# DPDK: bookworm's testpmd and the plugins it loads with `-d` (the e1000 VF PMD, the ring
# mempool), and the modules that bind a VF for it.
DPDK_PACKAGES = ["dpdk-dev", "librte-net-e1000-23", "librte-mempool-ring23"]
DPDK_PROGRAMS = {"usr/bin/dpdk-testpmd": "usr/bin/dpdk-testpmd"}
DPDK_PLUGINS = ["librte_net_e1000.so.23", "librte_mempool_ring.so.23"]
DPDK_MODULES = ["uio_pci_generic", "vfio_pci", "vfio_iommu_type1"]

# Host tools: package -> {program (path in the extracted tree): its version
# option}. Each program gets a wrapper in target/e2e/bin.
HOST_TOOLS = {"tcpdump": {"usr/bin/tcpdump": "--version"}, "iputils-ping": {"bin/ping": "-V"}}

# The browser: Chromium's old headless shell and the Depends closure it needs, less what only
# chromium-common's desktop integration wants (programs, never loaded by the shell).
BROWSER_PACKAGES = ["chromium-headless-shell"]
BROWSER_SKIP = {"x11-utils", "xdg-utils"}
BROWSER_PROGRAM = "usr/lib/chromium/chromium-headless-shell"

MULTIARCH = "x86_64-linux-gnu"


# What the log lines start with; a script that imports this one sets its own name.
TAG = "fetch-e2e"


def log(msg):
    print(f"[{TAG}] {msg}", flush=True)


def die(msg):
    print(f"[{TAG}] error: {msg}", file=sys.stderr, flush=True)
    sys.exit(1)


def run(cmd, **kw):
    try:
        return subprocess.run(cmd, check=True, **kw)
    except subprocess.CalledProcessError as e:
        die(f"command failed ({e.returncode}): {' '.join(cmd)}")
    except OSError as e:
        die(f"cannot run {cmd[0]}: {e}")


def sha256_of(*parts):
    h = hashlib.sha256()
    for p in parts:
        h.update(p if isinstance(p, bytes) else str(p).encode())
        h.update(b"\0")
    return h.hexdigest()


class Stamp:
    """A stage is done when its stamp holds the same key and its outputs exist."""

    def __init__(self, name, key, outputs):
        self.path = os.path.join(E2E, "stamps", name)
        self.key = key
        self.outputs = outputs

    def fresh(self):
        try:
            with open(self.path) as f:
                if f.read().strip() != self.key:
                    return False
        except OSError:
            return False
        return all(os.path.exists(p) for p in self.outputs)

    def write(self):
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        # A new file, renamed over the old: a tree copied with hard links keeps its own.
        with open(self.path + ".tmp", "w") as f:
            f.write(self.key + "\n")
        os.replace(self.path + ".tmp", self.path)


# ---------------------------------------------------------------------------
# The Debian archive URI, from this machine's apt configuration.


def _deb822_stanzas(text):
    stanza = {}
    key = None
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        if not line.strip():
            if stanza:
                yield stanza
            stanza, key = {}, None
            continue
        if line[0] in " \t" and key:
            stanza[key] += " " + line.strip()
            continue
        if ":" in line:
            key, _, value = line.partition(":")
            key = key.strip().lower()
            stanza[key] = value.strip()
    if stanza:
        yield stanza


def apt_source_entries():
    """(uri, suites) pairs from sources.list, *.list and *.sources, in order."""
    entries = []
    lists = ["/etc/apt/sources.list"] + sorted(glob.glob("/etc/apt/sources.list.d/*.list"))
    for path in lists:
        try:
            text = open(path).read()
        except OSError:
            continue
        for line in text.splitlines():
            line = line.split("#", 1)[0].strip()
            if not line.startswith("deb "):
                continue
            line = re.sub(r"\[[^\]]*\]", " ", line)
            words = line.split()
            if len(words) >= 3:
                entries.append((words[1], [words[2]]))
    for path in sorted(glob.glob("/etc/apt/sources.list.d/*.sources")):
        try:
            text = open(path).read()
        except OSError:
            continue
        for st in _deb822_stanzas(text):
            if st.get("enabled", "yes").lower() == "no":
                continue
            if "deb" not in st.get("types", "").split():
                continue
            for uri in st.get("uris", "").split():
                entries.append((uri, st.get("suites", "").split()))
    return entries


def debian_uri():
    override = os.environ.get("SRIOV_EMU_DEBIAN_URI")
    if override:
        return override.rstrip("/")
    for uri, suites in apt_source_entries():
        if "bookworm" in suites and not uri.rstrip("/").endswith("-security"):
            return uri.rstrip("/")
    die("no bookworm entry in /etc/apt/sources.list{,.d/*}; set SRIOV_EMU_DEBIAN_URI")


# ---------------------------------------------------------------------------
# A private apt state: own lists, cache and sources; the machine's untouched.


class PrivateApt:
    """apt-get and apt-cache on a state of their own, in BASE/apt/NAME (BASE: target/e2e).

    types: the index kinds of every suite ("deb", "deb-src").
    """

    def __init__(self, name, uri, suites, keyrings, base=None, types=("deb",)):
        self.dir = os.path.join(base or E2E, "apt", name)
        self.uri = uri
        self.suites = suites
        self.types = types
        self.keyrings = [k for k in keyrings if os.path.exists(k)]
        if not self.keyrings:
            die(f"none of the keyrings {keyrings} exists")

    def opts(self):
        d = self.dir
        return [
            "-o", f"Dir::State={d}/state",
            "-o", f"Dir::State::status={d}/state/status",
            "-o", f"Dir::Cache={d}/cache",
            "-o", "Dir::Cache::pkgcache=",
            "-o", "Dir::Cache::srcpkgcache=",
            "-o", f"Dir::Etc::SourceList={d}/etc/sources.list",
            "-o", f"Dir::Etc::SourceParts={d}/etc/sources.list.d",
            "-o", f"Dir::Etc::Preferences={d}/etc/preferences",
            "-o", f"Dir::Etc::PreferencesParts={d}/etc/preferences.d",
            "-o", f"Dir::Etc::Trusted={d}/etc/trusted.gpg",
            "-o", f"Dir::Etc::TrustedParts={d}/etc/trusted.gpg.d",
            "-o", "APT::Architecture=amd64",
            "-o", "APT::Architectures::=amd64",
            "-o", "APT::Get::List-Cleanup=false",
            "-o", "APT::Sandbox::User=root",
            "-o", "Acquire::Languages=none",
            "-o", "Acquire::IndexTargets::deb::DEP-11::DefaultEnabled=false",
            "-o", "Acquire::IndexTargets::deb::DEP-11-icons::DefaultEnabled=false",
            "-o", "Acquire::IndexTargets::deb::DEP-11-icons-small::DefaultEnabled=false",
            "-o", "Acquire::IndexTargets::deb::CNF::DefaultEnabled=false",
            # Snapshot-style archives carry old Release dates.
            "-o", "Acquire::Check-Valid-Until=false",
            "-o", "Debug::NoLocking=true",
            "-q",
        ]

    def update(self):
        d = self.dir
        for sub in ["state/lists/partial", "cache/archives/partial", "etc/sources.list.d",
                    "etc/preferences.d", "etc/trusted.gpg.d"]:
            os.makedirs(os.path.join(d, sub), exist_ok=True)
        open(os.path.join(d, "state", "status"), "a").close()
        signed = ",".join(self.keyrings)
        with open(os.path.join(d, "etc", "sources.list"), "w") as f:
            for kind in self.types:
                for suite in self.suites:
                    f.write(f"{kind} [signed-by={signed}] {self.uri} {suite} main\n")
        log(f"apt-get update ({self.dir})")
        run(["apt-get", *self.opts(), "update"], stdout=subprocess.DEVNULL)

    def closure(self, packages, target_release=None):
        """(name, version) of the packages and their Depends/Pre-Depends closure."""
        cmd = ["apt-get", *self.opts(), "-s", "install", "--no-install-recommends"]
        if target_release:
            cmd += ["-t", target_release]
        out = run(cmd + packages, stdout=subprocess.PIPE, text=True).stdout
        result = []
        for line in out.splitlines():
            m = re.match(r"^Inst (\S+) (?:\[[^\]]*\] )?\((\S+) ", line)
            if m:
                result.append((m.group(1), m.group(2)))
        if not result:
            die(f"apt resolved nothing for {packages}:\n{out}")
        return result

    def depends_of(self, package):
        out = run(["apt-cache", *self.opts(), "depends", package],
                  stdout=subprocess.PIPE, text=True).stdout
        return [m.group(1) for m in re.finditer(r"^\s+Depends: (\S+)$", out, re.M)]

    def depends_graph(self, names):
        """{package: {Depends/Pre-Depends targets, every alternative}} of the named packages."""
        out = run(["apt-cache", *self.opts(), "depends", "--no-recommends", "--no-suggests",
                   "--no-conflicts", "--no-breaks", "--no-replaces", "--no-enhances", *names],
                  stdout=subprocess.PIPE, text=True).stdout
        graph, current = {}, None
        for line in out.splitlines():
            if not line.startswith(" "):
                current = line.strip()
                graph.setdefault(current, set())
                continue
            m = re.match(r"^\s+\|?(?:Pre)?Depends: <?([^>\s]+)>?$", line)
            if m and current:
                graph[current].add(m.group(1))
        return graph

    def download(self, pkgs, dest):
        """apt-get download name=version into dest; files already there are kept."""
        os.makedirs(dest, exist_ok=True)
        missing = []
        for name, version in pkgs:
            fname_version = version.replace(":", "%3a")
            if not glob.glob(os.path.join(dest, f"{name}_{glob.escape(fname_version)}_*.deb")):
                missing.append(f"{name}={version}")
        if missing:
            log(f"downloading {len(missing)} packages into {dest}")
            run(["apt-get", *self.opts(), "download", *missing], cwd=dest, stdout=subprocess.DEVNULL)
        files = []
        for name, version in pkgs:
            fname_version = version.replace(":", "%3a")
            found = glob.glob(os.path.join(dest, f"{name}_{glob.escape(fname_version)}_*.deb"))
            if not found:
                die(f"{name}={version} was not downloaded")
            files.append(found[0])
        return files


def skipped(name):
    return name in SKIP_PACKAGES or name.startswith("perl-modules-")


def extract_debs(debs, root):
    if os.path.exists(root):
        shutil.rmtree(root)
    os.makedirs(root)
    for deb in debs:
        run(["dpkg", "-x", deb, root])


# ---------------------------------------------------------------------------
# QEMU


QEMU_WRAPPER = """#!/bin/sh
# Runs the QEMU extracted by scripts/fetch-e2e.py through its own tree's
# dynamic loader and libraries (generated file).
R="$(cd "$(dirname "$0")/../qemu-root" && pwd)"
L="$R/usr/lib/x86_64-linux-gnu:$R/lib/x86_64-linux-gnu"
export QEMU_MODULE_DIR="$R/usr/lib/x86_64-linux-gnu/qemu"
exec "$R/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2" --library-path "$L" \\
  "$R/usr/bin/qemu-system-x86_64" -L "$R/usr/share/qemu" -L "$R/usr/share/seabios" "$@"
"""


def stage_qemu(uri):
    root = os.path.join(E2E, "qemu-root")
    wrapper = os.path.join(E2E, "bin", "qemu-system-x86_64")
    key = sha256_of(LAYOUT_VERSION, uri, QEMU_SUITES, QEMU_PACKAGES, sorted(SKIP_PACKAGES), QEMU_WRAPPER)
    stamp = Stamp("qemu", key, [root, wrapper])
    if stamp.fresh():
        log("qemu: cached")
        return wrapper
    apt = PrivateApt("trixie", uri, QEMU_SUITES, TRIXIE_KEYRINGS)
    apt.update()
    pkgs = apt.closure(QEMU_PACKAGES, QEMU_TARGET_RELEASE)
    pkgs = [(n, v) for n, v in pkgs if not skipped(n)]
    qver = dict(pkgs).get("qemu-system-x86", "")
    if QEMU_VERSION_PREFIX not in qver:
        die(f"expected QEMU {QEMU_VERSION_PREFIX}x from {QEMU_TARGET_RELEASE}, apt offers {qver!r}")
    debs = apt.download(pkgs, os.path.join(E2E, "debs", "qemu"))
    log(f"qemu: extracting {len(debs)} packages")
    extract_debs(debs, root)
    os.makedirs(os.path.dirname(wrapper), exist_ok=True)
    with open(wrapper, "w") as f:
        f.write(QEMU_WRAPPER)
    os.chmod(wrapper, 0o755)
    check_qemu(wrapper)
    stamp.write()
    return wrapper


def check_qemu(wrapper):
    out = run([wrapper, "--version"], stdout=subprocess.PIPE, text=True).stdout
    first = out.splitlines()[0] if out else ""
    m = re.search(r"version (\d+\.\d+\.\d+)", first)
    if not m or not m.group(1).startswith(QEMU_VERSION_PREFIX):
        die(f"unexpected QEMU version: {first!r}")
    log(f"qemu: {first}")
    # Every library must come from the extracted tree, none from the host.
    root = os.path.join(E2E, "qemu-root")
    libdirs = f"{root}/usr/lib/{MULTIARCH}:{root}/lib/{MULTIARCH}"
    listing = run([f"{root}/usr/lib/{MULTIARCH}/ld-linux-x86-64.so.2", "--library-path", libdirs,
                   "--list", f"{root}/usr/bin/qemu-system-x86_64"],
                  stdout=subprocess.PIPE, text=True).stdout
    for line in listing.splitlines():
        m = re.search(r"=> (\S+)", line)
        if m and not os.path.realpath(m.group(1)).startswith(os.path.realpath(root) + "/"):
            die(f"QEMU would load a host library: {line.strip()}")
    props = run([wrapper, "-device", "vfio-user-pci,help"], stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT, text=True).stdout
    if "socket" not in props:
        die(f"this QEMU has no usable vfio-user-pci device:\n{props}")
    with open(os.path.join(E2E, "qemu-version"), "w") as f:
        f.write(first + "\n")


# ---------------------------------------------------------------------------
# Host tools


HOST_TOOL_WRAPPER = """#!/bin/sh
# Runs {prog} extracted by scripts/fetch-e2e.py through its own tree's dynamic
# loader and libraries (generated file).
R="$(cd "$(dirname "$0")/../host-root" && pwd)"
L="$R/lib/x86_64-linux-gnu:$R/usr/lib/x86_64-linux-gnu"
LD="$R/lib64/ld-linux-x86-64.so.2"
[ -e "$LD" ] || LD="$R/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2"
[ -e "$LD" ] || LD="$R/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2"
exec "$LD" --library-path "$L" "$R/{prog}" "$@"
"""


def stage_host_tools(uri):
    root = os.path.join(E2E, "host-root")
    wrappers = {os.path.join(E2E, "bin", os.path.basename(p)): (p, version)
                for progs in HOST_TOOLS.values() for p, version in progs.items()}
    key = sha256_of(LAYOUT_VERSION, uri, GUEST_SUITES, json.dumps(HOST_TOOLS, sort_keys=True),
                    sorted(SKIP_PACKAGES), HOST_TOOL_WRAPPER)
    stamp = Stamp("host", key, [root, *wrappers])
    if stamp.fresh():
        log("host tools: cached")
        return wrappers
    apt = PrivateApt("bookworm", uri, GUEST_SUITES, BOOKWORM_KEYRINGS)
    apt.update()
    pkgs = [(n, v) for n, v in apt.closure(sorted(HOST_TOOLS)) if not skipped(n)]
    debs = apt.download(pkgs, os.path.join(E2E, "debs", "host"))
    log(f"host tools: extracting {len(debs)} packages")
    extract_debs(debs, root)
    for wrapper, (prog, version) in wrappers.items():
        if not os.path.exists(os.path.join(root, prog)):
            die(f"{prog} missing from the host tools' tree")
        os.makedirs(os.path.dirname(wrapper), exist_ok=True)
        with open(wrapper + ".tmp", "w") as f:
            f.write(HOST_TOOL_WRAPPER.format(prog=prog))
        os.chmod(wrapper + ".tmp", 0o755)
        os.replace(wrapper + ".tmp", wrapper)
        out = run([wrapper, version], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                  text=True).stdout
        log(f"host tools: {out.splitlines()[0] if out else prog}")
    stamp.write()
    return wrappers


# ---------------------------------------------------------------------------
# The browser


# Chromium finds its resources next to /proc/self/exe, so the loader runs from a copy in the
# program's directory; it starts its renderer and GPU processes through this script again
# (--browser-subprocess-path), without a zygote, which needs the sandbox off.
BROWSER_WRAPPER = """#!/bin/sh
# Runs Chromium's headless shell extracted by scripts/fetch-e2e.py through its
# own tree's dynamic loader and libraries (generated file).
B="$(cd "$(dirname "$0")" && pwd)/$(basename "$0")"
R="$(cd "$(dirname "$0")/../browser-root" && pwd)"
L="$R/lib/x86_64-linux-gnu:$R/usr/lib/x86_64-linux-gnu:$R/usr/lib/x86_64-linux-gnu/pulseaudio"
export FONTCONFIG_FILE="$R/etc/fonts/sriov-emu.conf"
exec "$R/usr/lib/chromium/ld-linux-x86-64.so.2" --library-path "$L" "$R/{prog}" \\
  --no-sandbox --no-zygote --browser-subprocess-path="$B" "$@"
"""

# The tree's own fonts (paths relative to this file), not the machine's.
BROWSER_FONTS_CONF = """<?xml version="1.0"?>
<!DOCTYPE fontconfig SYSTEM "urn:fontconfig:fonts.dtd">
<!-- Generated by scripts/fetch-e2e.py: the browser tree's fonts only. -->
<fontconfig>
  <dir prefix="relative">../../usr/share/fonts</dir>
  <cachedir prefix="relative">../../var/cache/fontconfig</cachedir>
</fontconfig>
"""


def stage_browser(uri):
    root = os.path.join(E2E, "browser-root")
    wrapper = os.path.join(E2E, "bin", "chromium-headless-shell")
    key = sha256_of(LAYOUT_VERSION, uri, GUEST_SUITES, BROWSER_PACKAGES, sorted(BROWSER_SKIP),
                    sorted(SKIP_PACKAGES), BROWSER_PROGRAM, BROWSER_WRAPPER, BROWSER_FONTS_CONF)
    stamp = Stamp("browser", key, [root, wrapper])
    if stamp.fresh():
        log("browser: cached")
        return wrapper
    apt = PrivateApt("bookworm", uri, GUEST_SUITES, BOOKWORM_KEYRINGS)
    apt.update()
    versions = dict(apt.closure(BROWSER_PACKAGES))
    graph = apt.depends_graph(sorted(versions))
    keep, todo = set(), list(BROWSER_PACKAGES)
    while todo:
        name = todo.pop()
        if name in keep or name not in versions or name in BROWSER_SKIP or skipped(name):
            continue
        keep.add(name)
        todo += graph.get(name, ())
    debs = apt.download(sorted((n, versions[n]) for n in keep), os.path.join(E2E, "debs", "browser"))
    size = sum(os.path.getsize(d) for d in debs)
    log(f"browser: extracting {len(debs)} packages ({size / 1e6:.0f} MB)")
    extract_debs(debs, root)
    program = os.path.join(root, BROWSER_PROGRAM)
    if not os.path.exists(program):
        die(f"{BROWSER_PROGRAM} missing from the browser tree")
    shutil.copy2(os.path.join(root, "lib", MULTIARCH, "ld-linux-x86-64.so.2"),
                 os.path.join(os.path.dirname(program), "ld-linux-x86-64.so.2"))
    os.makedirs(os.path.join(root, "etc", "fonts"), exist_ok=True)
    os.makedirs(os.path.join(root, "var", "cache", "fontconfig"), exist_ok=True)
    with open(os.path.join(root, "etc", "fonts", "sriov-emu.conf"), "w") as f:
        f.write(BROWSER_FONTS_CONF)
    os.makedirs(os.path.dirname(wrapper), exist_ok=True)
    with open(wrapper + ".tmp", "w") as f:
        f.write(BROWSER_WRAPPER.format(prog=BROWSER_PROGRAM))
    os.chmod(wrapper + ".tmp", 0o755)
    os.replace(wrapper + ".tmp", wrapper)
    check_browser(wrapper, root, program)
    stamp.write()
    return wrapper


def check_browser(wrapper, root, program):
    """Every library from the tree, and a page rendered into a DOM."""
    libdirs = f"{root}/lib/{MULTIARCH}:{root}/usr/lib/{MULTIARCH}:{root}/usr/lib/{MULTIARCH}/pulseaudio"
    listing = run([os.path.join(os.path.dirname(program), "ld-linux-x86-64.so.2"),
                   "--library-path", libdirs, "--list", program],
                  stdout=subprocess.PIPE, text=True).stdout
    for line in listing.splitlines():
        m = re.search(r"=> (\S+)", line)
        if m and not os.path.realpath(m.group(1)).startswith(os.path.realpath(root) + "/"):
            die(f"the browser would load a host library: {line.strip()}")
        if "not found" in line:
            die(f"the browser lacks a library: {line.strip()}")
    version = run([wrapper, "--version"], stdout=subprocess.PIPE, text=True).stdout.strip()
    profile = os.path.join(E2E, "run", "browser-check")
    shutil.rmtree(profile, ignore_errors=True)
    try:
        dom = run([wrapper, "--headless", "--disable-gpu", f"--user-data-dir={profile}",
                   "--dump-dom", "data:text/html,<p id=probe>rendered</p>"],
                  stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, timeout=120).stdout
    except subprocess.TimeoutExpired:
        die("the browser did not render a page within 120 s")
    shutil.rmtree(profile, ignore_errors=True)
    if '<p id="probe">rendered</p>' not in dom:
        die(f"the browser rendered no DOM: {dom!r}")
    log(f"browser: {version}")


# ---------------------------------------------------------------------------
# Guest kernel and tools


def stage_guest(uri):
    tree = os.path.join(E2E, "guest-tree")
    key = sha256_of(LAYOUT_VERSION, uri, GUEST_SUITES, GUEST_TOOLS, sorted(SKIP_PACKAGES))
    stamp = Stamp("guest", key, [tree])
    if stamp.fresh():
        log("guest packages: cached")
        return tree
    apt = PrivateApt("bookworm", uri, GUEST_SUITES, BOOKWORM_KEYRINGS)
    apt.update()
    images = [d for d in apt.depends_of("linux-image-amd64") if d.startswith("linux-image-")]
    if not images:
        die("linux-image-amd64 depends on no linux-image-* package")
    tools = apt.closure(GUEST_TOOLS)
    pkgs = [(n, v) for n, v in tools if not skipped(n)]
    # Only the image itself, not the tools its maintainer scripts need.
    image = [(n, v) for n, v in apt.closure([images[0]]) if n == images[0]]
    if not image:
        die(f"could not resolve {images[0]}")
    pkgs += image
    download_and_extract(apt, "guest", pkgs, tree)
    stamp.write()
    return tree


def download_and_extract(apt, name, pkgs, tree):
    debs = apt.download(pkgs, os.path.join(E2E, "debs", name))
    log(f"{name}: extracting {len(debs)} packages")
    extract_debs(debs, tree)


def stage_dpdk(uri):
    tree = os.path.join(E2E, "dpdk-tree")
    key = sha256_of(LAYOUT_VERSION, uri, GUEST_SUITES, DPDK_PACKAGES, sorted(SKIP_PACKAGES))
    stamp = Stamp("dpdk", key, [tree])
    if stamp.fresh():
        log("dpdk packages: cached")
        return tree
    apt = PrivateApt("bookworm", uri, GUEST_SUITES, BOOKWORM_KEYRINGS)
    apt.update()
    pkgs = [(n, v) for n, v in apt.closure(DPDK_PACKAGES) if not skipped(n)]
    if os.path.exists(tree):
        shutil.rmtree(tree)
    download_and_extract(apt, "dpdk", pkgs, tree)
    stamp.write()
    return tree


def stage_dpdk_initramfs(dpdk_tree, guest_tree, rel):
    """The archive the DPDK tests append to the base initramfs."""
    out = os.path.join(E2E, "initramfs-dpdk.cpio")
    key = sha256_of(LAYOUT_VERSION, rel, open(os.path.join(E2E, "stamps", "dpdk")).read(),
                    DPDK_PROGRAMS, DPDK_PLUGINS, DPDK_MODULES, GUEST_MODULES,
                    open(__file__, "rb").read())
    stamp = Stamp("initramfs-dpdk", key, [out])
    if stamp.fresh():
        log("initramfs-dpdk: cached")
        return out
    log("initramfs-dpdk: building")
    root = os.path.join(E2E, "initramfs-dpdk-root")
    if os.path.exists(root):
        shutil.rmtree(root)
    for d in ["usr/bin", f"lib/{MULTIARCH}/dpdk"]:
        os.makedirs(os.path.join(root, d), exist_ok=True)
    elves = []
    for src, dst in DPDK_PROGRAMS.items():
        p = os.path.join(dpdk_tree, src)
        if not os.path.exists(p):
            die(f"{src} missing from the DPDK tree")
        shutil.copy2(p, os.path.join(root, dst))
        elves.append(p)
    # The plugins go to /lib/<multiarch>/dpdk, where `-d` names them.
    for name in DPDK_PLUGINS:
        p = find_lib(dpdk_tree, name)
        shutil.copy2(os.path.realpath(p), os.path.join(root, "lib", MULTIARCH, "dpdk", name))
        elves.append(p)
    libs, _ = library_closure(dpdk_tree, elves)
    for soname, p in libs.items():
        shutil.copy2(os.path.realpath(p), os.path.join(root, "lib", MULTIARCH, soname))
    # The binding modules, and a modules.dep for the base modules and these together.
    moddir = os.path.join(guest_tree, "lib", "modules", rel)
    chosen, deps = module_closure(moddir, GUEST_MODULES + DPDK_MODULES)
    for n in DPDK_MODULES:
        if n not in chosen:
            die(f"module {n} not found under {moddir}")
    copy_modules(moddir, chosen, deps, os.path.join(root, "lib", "modules", rel))
    write_newc(out, root, [])
    log(f"initramfs-dpdk: {os.path.getsize(out) // 1024} KiB, {len(libs)} libraries")
    stamp.write()
    return out


def kernel_release(tree):
    found = sorted(glob.glob(os.path.join(tree, "boot", "vmlinuz-*")))
    if not found:
        die("no boot/vmlinuz-* in the guest tree")
    return os.path.basename(found[-1])[len("vmlinuz-"):]


# ---------------------------------------------------------------------------
# vmlinux from bzImage


def elf_notes(data):
    """Yield (name, type, desc) of every note in the PT_NOTE segments of an ELF64."""
    e_phoff, = struct.unpack_from("<Q", data, 0x20)
    e_phentsize, e_phnum = struct.unpack_from("<HH", data, 0x36)
    for i in range(e_phnum):
        p_type, _flags, p_offset, _va, _pa, p_filesz = struct.unpack_from(
            "<IIQQQQ", data, e_phoff + i * e_phentsize)
        if p_type != 4:  # PT_NOTE
            continue
        off, end = p_offset, p_offset + p_filesz
        while off + 12 <= end:
            namesz, descsz, ntype = struct.unpack_from("<III", data, off)
            off += 12
            name = data[off:off + namesz].rstrip(b"\0")
            off += (namesz + 3) & ~3
            desc = data[off:off + descsz]
            off += (descsz + 3) & ~3
            yield name, ntype, desc


def extract_vmlinux(bzimage_path, out_path):
    with open(bzimage_path, "rb") as f:
        img = f.read()
    if img[0x202:0x206] != b"HdrS":
        die(f"{bzimage_path} is not a bzImage")
    setup_sects = img[0x1F1] or 4
    payload_offset, payload_length = struct.unpack_from("<II", img, 0x248)
    start = (setup_sects + 1) * 512 + payload_offset
    payload = img[start:start + payload_length]
    if payload.startswith(b"\xfd7zXZ\x00"):
        data = lzma.LZMADecompressor(format=lzma.FORMAT_XZ).decompress(payload)
    elif payload.startswith(b"\x1f\x8b"):
        import zlib
        data = zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(payload)
    elif payload.startswith(b"\x28\xb5\x2f\xfd"):
        data = subprocess.run(["zstd", "-dc"], input=payload[:-4], stdout=subprocess.PIPE,
                              check=True).stdout
    else:
        die(f"unknown kernel payload compression: {payload[:6].hex()}")
    if data[:4] != b"\x7fELF" or data[4] != 2:
        die("decompressed kernel payload is not an ELF64 vmlinux")
    if not any(n == b"Xen" and t == 18 for n, t, _ in elf_notes(data)):
        die("vmlinux has no PVH entry note (XEN_ELFNOTE_PHYS32_ENTRY)")
    with open(out_path + ".tmp", "wb") as f:
        f.write(data)
    os.replace(out_path + ".tmp", out_path)


def stage_vmlinux(tree):
    rel = kernel_release(tree)
    bz = os.path.join(tree, "boot", f"vmlinuz-{rel}")
    out = os.path.join(E2E, "vmlinux")
    st = os.stat(bz)
    stamp = Stamp("vmlinux", sha256_of(LAYOUT_VERSION, rel, st.st_size, st.st_mtime), [out])
    if stamp.fresh():
        log("vmlinux: cached")
        return out
    log(f"vmlinux: extracting from {os.path.relpath(bz, E2E)}")
    extract_vmlinux(bz, out)
    with open(os.path.join(E2E, "kernel-release"), "w") as f:
        f.write(rel + "\n")
    stamp.write()
    return out


# ---------------------------------------------------------------------------
# Shared libraries: DT_NEEDED from the ELF dynamic section.


def elf_needed(path):
    """(interpreter or None, [DT_NEEDED names]) of an ELF64 little-endian file."""
    with open(path, "rb") as f:
        data = f.read()
    if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        return None, []
    e_phoff, = struct.unpack_from("<Q", data, 0x20)
    e_phentsize, e_phnum = struct.unpack_from("<HH", data, 0x36)
    loads, dynamic, interp = [], None, None
    for i in range(e_phnum):
        p_type, _fl, p_offset, p_vaddr, _pa, p_filesz = struct.unpack_from(
            "<IIQQQQ", data, e_phoff + i * e_phentsize)
        if p_type == 1:
            loads.append((p_vaddr, p_offset, p_filesz))
        elif p_type == 2:
            dynamic = (p_offset, p_filesz)
        elif p_type == 3:
            interp = data[p_offset:p_offset + p_filesz].rstrip(b"\0").decode()
    if dynamic is None:
        return interp, []

    def vaddr_to_offset(va):
        for v, o, s in loads:
            if v <= va < v + s:
                return va - v + o
        die(f"{path}: address {va:#x} not in any PT_LOAD")

    strtab, needed = None, []
    off, end = dynamic
    end += off
    while off + 16 <= end:
        tag, val = struct.unpack_from("<qQ", data, off)
        off += 16
        if tag == 0:
            break
        if tag == 5:  # DT_STRTAB
            strtab = vaddr_to_offset(val)
        elif tag == 1:  # DT_NEEDED
            needed.append(val)
    names = []
    for n in needed:
        s = strtab + n
        names.append(data[s:data.index(b"\0", s)].decode())
    return interp, names


LIB_DIRS = [f"lib/{MULTIARCH}", f"usr/lib/{MULTIARCH}", "lib64", "lib", "usr/lib"]


def find_lib(tree, name):
    for d in LIB_DIRS:
        p = os.path.join(tree, d, name)
        if os.path.exists(p):
            return p
    die(f"shared library {name} not found in the guest tree")


def library_closure(tree, programs):
    """Map soname -> path in the tree for everything the programs load."""
    libs, todo = {}, list(programs)
    interp_name = None
    while todo:
        interp, needed = elf_needed(todo.pop())
        if interp:
            interp_name = os.path.basename(interp)
            if interp_name not in libs:
                libs[interp_name] = find_lib(tree, interp_name)
        for n in needed:
            if n not in libs:
                libs[n] = find_lib(tree, n)
                todo.append(libs[n])
    return libs, interp_name


# ---------------------------------------------------------------------------
# Modules


def modinfo(path):
    """Fields of a module's .modinfo section, as (key, value) pairs."""
    with open(path, "rb") as f:
        data = f.read()
    e_shoff, = struct.unpack_from("<Q", data, 0x28)
    e_shentsize, e_shnum, e_shstrndx = struct.unpack_from("<HHH", data, 0x3A)

    def sh(i):
        return struct.unpack_from("<IIQQQQIIQQ", data, e_shoff + i * e_shentsize)

    shstr_off = sh(e_shstrndx)[4]
    for i in range(e_shnum):
        name_off, _t, _f, _a, off, size = sh(i)[:6]
        s = shstr_off + name_off
        if data[s:data.index(b"\0", s)] == b".modinfo":
            fields = []
            for item in data[off:off + size].split(b"\0"):
                if b"=" in item:
                    k, _, v = item.decode(errors="replace").partition("=")
                    fields.append((k, v))
            return fields
    return []


def module_closure(moddir, wanted):
    """{module name: path relative to moddir} for the wanted modules and their deps."""
    index = {}
    for p in glob.glob(os.path.join(moddir, "kernel", "**", "*.ko"), recursive=True):
        name = os.path.basename(p)[:-3].replace("-", "_")
        index[name] = os.path.relpath(p, moddir)
    chosen, todo = {}, [w.replace("-", "_") for w in wanted if w.replace("-", "_") in index]
    deps = {}
    while todo:
        name = todo.pop()
        if name in chosen:
            continue
        chosen[name] = index[name]
        d = []
        for k, v in modinfo(os.path.join(moddir, index[name])):
            if k == "depends" and v:
                d += [x.replace("-", "_") for x in v.split(",")]
        deps[name] = d
        todo += d
    return chosen, deps


def copy_modules(moddir, chosen, deps, dst_moddir):
    """The chosen modules under dst_moddir, with their modules.dep."""
    for relpath in chosen.values():
        os.makedirs(os.path.dirname(os.path.join(dst_moddir, relpath)), exist_ok=True)
        shutil.copy2(os.path.join(moddir, relpath), os.path.join(dst_moddir, relpath))
    write_modules_dep(os.path.join(dst_moddir, "modules.dep"), chosen, deps)


def write_modules_dep(path, chosen, deps):
    """modules.dep in depmod's format: each line lists the full closure, loaded right to left."""
    lines = []
    for name in sorted(chosen):
        order, seen = [], set()

        def visit(m):
            for d in deps[m]:
                if d not in seen:
                    seen.add(d)
                    visit(d)
                    order.append(d)

        visit(name)
        # depmod lists a module's dependencies so that the rightmost is loaded first.
        lines.append(chosen[name] + ":" + "".join(" " + chosen[d] for d in reversed(order)))
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


# ---------------------------------------------------------------------------
# newc cpio writer


def newc_header(ino, mode, nlink, size, name, rdev=(0, 0)):
    namesz = len(name.encode()) + 1
    fields = [ino, mode, 0, 0, nlink, 0, size, 0, 0, rdev[0], rdev[1], namesz, 0]
    hdr = b"070701" + b"".join(b"%08X" % v for v in fields) + name.encode() + b"\0"
    return hdr + b"\0" * (-len(hdr) % 4)


def write_newc(out_path, root, extra_nodes):
    """Archive the tree under root (sorted, uid/gid 0, mtime 0) plus device nodes."""
    ino = 1
    with open(out_path + ".tmp", "wb") as out:
        def emit(mode, name, data=b"", nlink=1, rdev=(0, 0)):
            nonlocal ino
            out.write(newc_header(ino, mode, nlink, len(data), name, rdev))
            out.write(data)
            out.write(b"\0" * (-len(data) % 4))
            ino += 1

        for dirpath, dirnames, filenames in os.walk(root):
            dirnames.sort()
            rel = os.path.relpath(dirpath, root)
            if rel != ".":
                emit(stat.S_IFDIR | (os.stat(dirpath).st_mode & 0o7777), rel, nlink=2)
            for fn in sorted(filenames) + sorted(d for d in dirnames if os.path.islink(os.path.join(dirpath, d))):
                p = os.path.join(dirpath, fn)
                name = os.path.normpath(os.path.join(rel, fn))
                st = os.lstat(p)
                if stat.S_ISLNK(st.st_mode):
                    emit(stat.S_IFLNK | 0o777, name, os.readlink(p).encode())
                elif stat.S_ISREG(st.st_mode):
                    with open(p, "rb") as f:
                        emit(stat.S_IFREG | (st.st_mode & 0o7777), name, f.read())
        for name, mode, rdev in extra_nodes:
            emit(mode, name, rdev=rdev)
        emit(0, "TRAILER!!!", nlink=1)
        pad = -out.tell() % 512
        out.write(b"\0" * pad)
    os.replace(out_path + ".tmp", out_path)


# ---------------------------------------------------------------------------
# initramfs


def guest_sources():
    files = {}
    for p in sorted(glob.glob(os.path.join(GUEST_SRC, "*"))):
        with open(p, "rb") as f:
            files[os.path.basename(p)] = f.read()
    if "init" not in files:
        die(f"{GUEST_SRC}/init is missing")
    return files


def stage_initramfs(tree, rel):
    out = os.path.join(E2E, "initramfs.cpio")
    sources = guest_sources()
    key = sha256_of(LAYOUT_VERSION, rel, open(os.path.join(E2E, "stamps", "guest")).read(),
                    GUEST_PROGRAMS, GUEST_MODULES, *sorted(sources.items()), open(__file__, "rb").read())
    manifest = os.path.join(E2E, "initramfs-modules.json")
    stamp = Stamp("initramfs", key, [out, manifest])
    if stamp.fresh():
        log("initramfs: cached")
        return out
    log("initramfs: building")
    root = os.path.join(E2E, "initramfs-root")
    if os.path.exists(root):
        shutil.rmtree(root)
    for d in ["bin", "sbin", "usr/bin", "usr/sbin", "proc", "sys", "dev", "run", "tmp", "mnt",
              "root", "etc", "var/run", f"lib/{MULTIARCH}", "lib64", "lib/sriov-emu", "sriov-emu"]:
        os.makedirs(os.path.join(root, d), exist_ok=True)
    os.chmod(os.path.join(root, "tmp"), 0o1777)

    # Guest tools and their libraries.
    programs = []
    for src, dst in GUEST_PROGRAMS.items():
        p = os.path.join(tree, src)
        if not os.path.exists(p):
            die(f"{src} missing from the guest tree")
        shutil.copy2(p, os.path.join(root, dst))
        programs.append(p)
    libs, interp = library_closure(tree, programs)
    for soname, p in libs.items():
        shutil.copy2(os.path.realpath(p), os.path.join(root, "lib", MULTIARCH, soname))
    if interp:
        os.symlink(f"/lib/{MULTIARCH}/{interp}", os.path.join(root, "lib64", interp))

    # busybox for everything else: one symlink per applet in /bin, except where
    # a real tool (ip, tc, bridge, ss, iperf3) stands in /usr/{s,}bin.
    bb = os.path.join(tree, "bin", "busybox")
    shutil.copy2(bb, os.path.join(root, "bin", "busybox"))
    applets = run([bb, "--list"], stdout=subprocess.PIPE, text=True).stdout.split()
    real = {os.path.basename(d) for d in GUEST_PROGRAMS.values()}
    for a in applets:
        if a in ("busybox",) or a in real or "/" in a:
            continue
        os.symlink("busybox", os.path.join(root, "bin", a))
    os.symlink("../bin/busybox", os.path.join(root, "sbin", "modprobe"))

    # Modules and a modules.dep for busybox modprobe.
    moddir = os.path.join(tree, "lib", "modules", rel)
    chosen, deps = module_closure(moddir, GUEST_MODULES)
    for n in ("igb", "igbvf", "ixgbevf"):
        if n not in chosen:
            die(f"module {n} not found under {moddir}")
    dst_moddir = os.path.join(root, "lib", "modules", rel)
    copy_modules(moddir, chosen, deps, dst_moddir)
    for f in ("modules.builtin", "modules.order", "modules.builtin.modinfo"):
        if os.path.exists(os.path.join(moddir, f)):
            shutil.copy2(os.path.join(moddir, f), os.path.join(dst_moddir, f))
    # What the base has, for guests built around a user's kernel or modules (the scenario
    # runner's bring-your-own path): the release, each module's path and direct dependencies.
    with open(manifest, "w") as f:
        vermagic = dict(modinfo(os.path.join(moddir, chosen["igbvf"]))).get("vermagic", "")
        json.dump({"release": rel, "vermagic": vermagic,
                   "modules": {n: {"path": chosen[n], "depends": deps[n]} for n in sorted(chosen)}},
                  f, indent=1)

    # init and the guest-script helpers.
    for name, data in sources.items():
        dst = os.path.join(root, "init") if name == "init" else os.path.join(root, "lib", "sriov-emu", name)
        with open(dst, "wb") as f:
            f.write(data)
        os.chmod(dst, 0o755)
    with open(os.path.join(root, "etc", "passwd"), "w") as f:
        f.write("root:x:0:0:root:/root:/bin/sh\n")
    with open(os.path.join(root, "etc", "group"), "w") as f:
        f.write("root:x:0:\n")
    with open(os.path.join(root, "etc", "hosts"), "w") as f:
        f.write("127.0.0.1 localhost\n")

    write_newc(out, root, [("dev/console", stat.S_IFCHR | 0o600, (5, 1)),
                           ("dev/null", stat.S_IFCHR | 0o666, (1, 3))])
    log(f"initramfs: {os.path.getsize(out) // 1024} KiB, {len(chosen)} modules, {len(libs)} libraries")
    stamp.write()
    return out


def main():
    t0 = time.monotonic()
    os.makedirs(E2E, exist_ok=True)
    uri = debian_uri()
    wrapper = stage_qemu(uri)
    tree = stage_guest(uri)
    vmlinux = stage_vmlinux(tree)
    rel = kernel_release(tree)
    initrd = stage_initramfs(tree, rel)
    dpdk_initrd = stage_dpdk_initramfs(stage_dpdk(uri), tree, rel)
    tools = stage_host_tools(uri)
    browser = stage_browser(uri)
    manifest = {
        "qemu": os.path.relpath(wrapper, E2E),
        "qemu_version": open(os.path.join(E2E, "qemu-version")).read().strip(),
        "kernel": os.path.relpath(vmlinux, E2E),
        "kernel_release": rel,
        "initramfs": os.path.relpath(initrd, E2E),
        "initramfs_dpdk": os.path.relpath(dpdk_initrd, E2E),
        "host_tools": sorted(os.path.relpath(w, E2E) for w in tools),
        "browser": os.path.relpath(browser, E2E),
    }
    with open(os.path.join(E2E, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=2)
        f.write("\n")
    log(f"done in {time.monotonic() - t0:.1f}s: {manifest['qemu_version']}, kernel {rel}")


if __name__ == "__main__":
    main()
