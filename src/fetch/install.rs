//! Installs verified boot artifacts: safe extraction of `.tar`, `.tar.gz` and `.tar.zst`, and the
//! kernel modules tarball.
//!
//! The archive has already matched the manifest's sha256 when it gets here, so every check below
//! is defence in depth against a compromised hub or a broken build: extraction must never write
//! outside `target`, never write through a link, never create a setuid binary or a device node,
//! and never fill the RAM disk without bound.
//!
//! **All or nothing.** Entries are extracted into a staging directory inside the target
//! (`target/.zos-unpack-<pid>-<16 random hex>`, made with `mkdirat` so never one that exists or
//! a planted link; same filesystem, invisible to the next root's paths). Only when
//! the whole archive has been read and every entry passed are they moved into place, each with
//! one `rename(2)`: whole new subtrees at once, existing directories merged, existing files and
//! links atomically replaced. Before the first rename the merge is checked in full (a file where
//! the archive has a directory, a symlink in the target where the archive has a directory, a
//! mount point), so a refusal at any stage leaves `target` exactly as it was and the staging
//! directory removed. Only an I/O error during the renames themselves (which copy nothing) can
//! leave a partial install; it is reported as [`InstallError::Io`] and the caller treats the
//! artifact as failed like any other error. This beats extracting in place and cleaning up:
//! clean-up cannot restore files the archive overwrote.
//!
//! **Through descriptors only** (issue 17, point 3). The target is opened once (by the caller,
//! beneath the next root: [`unpack_into`]); from there every write goes through
//! [`super::beneath`]: directories are opened one component at a time with `O_NOFOLLOW`
//! (`openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS)` where more than one), entries are made
//! with `mkdirat`/`symlinkat`/`linkat`/`openat(O_EXCL)` relative to their directory's
//! descriptor, owners, modes and mtimes are set on descriptors, and the merge moves entries with
//! `renameat` between the staging and the target descriptors. No path is resolved twice, so a
//! symlink that appears on the way (one the archive made, one an earlier artifact planted in the
//! next root, one swapped in while we work) makes the install fail, never write through it.
//!
//! Rules, each with a test; a refusal names the entry and the [`Rule`]:
//! - paths: no absolute path, no `..` component, at most 4096 bytes; `.` and `//` are dropped.
//! - every parent of an entry must be a real directory in the staging tree: an entry whose path
//!   goes through a symlink (even one the archive made, pointing inside) is refused, as is one
//!   under a file. Missing parents are created (0755).
//! - symlinks: a relative target, resolved from the link's directory, must not climb above
//!   `target`. Absolute targets are allowed by [`Policy::ROOTFS`] (they resolve inside the next
//!   root once it is `/`; we never follow them) and refused by [`Policy::MODULES`] (there they
//!   would point into the initramfs).
//! - hard links: to an earlier regular file of this archive, by a path obeying the same rules.
//! - setuid anywhere and setgid on non-directories are refused (a boot tool has no business
//!   making privileged binaries); setgid directories and the sticky bit are kept.
//! - device nodes and FIFOs are **skipped with a note** in [`Unpacked::notes`], not refused:
//!   rootfs tarballs made by debootstrap carry `/dev` nodes, and devtmpfs provides the real ones
//!   after the hand-off. Nothing else unusual (sparse files, unknown types) is accepted.
//! - limits ([`Policy`]): entry count, total bytes written, extension header sizes — a tar bomb
//!   stops at the cap, with the staging directory removed.
//! - each regular file, link and symlink is created under a random temporary name in its
//!   directory (`O_EXCL`, `symlinkat`, `linkat`: never an existing name) and renamed onto its
//!   final name; modes, owners (root only) and mtimes come from the archive,
//!   directories get theirs once everything inside them is written.
//!
//! Formats are recognised by their magic bytes, never by the file name; a tar must be POSIX
//! ustar, GNU or PAX (the `ustar` magic), pre-POSIX v7 archives are refused. Integrity is the
//! manifest's sha256, checked by the downloader before this runs; the formats' own checksums
//! (gzip CRC-32, zstd XXH64) are not recomputed, which keeps two hash implementations and a
//! second pass over the data out of the binary. gzip's length field is still checked.
use std::ffi::{OsStr, OsString};
use std::fmt;
use std::fs::{self, File};
use std::io::{self, BufRead, BufReader, Read};
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use super::beneath::{set_attrs, Dir, Kind, Root};
use super::manifest::check_release;

/// Longest path (or link target) accepted: Linux's PATH_MAX.
const MAX_PATH: usize = 4096;
/// Largest PAX extended header accepted (real ones are a few hundred bytes).
const MAX_PAX: u64 = 64 * 1024;
/// Skipped entries beyond this many are counted, not listed.
const MAX_NOTES: usize = 16;

/// What a successful extraction installed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Unpacked {
    /// Regular files, symlinks and hard links.
    pub files: u64,
    pub dirs: u64,
    /// Bytes of regular file content written.
    pub bytes: u64,
    /// Device nodes and FIFOs left out.
    pub skipped: u64,
    /// One line per skipped entry (the first 16).
    pub notes: Vec<String>,
}

/// Limits, and the two rules that differ between a next root and a modules tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// Headers read, extension headers included.
    pub max_entries: u64,
    /// Regular file bytes written.
    pub max_bytes: u64,
    /// Whether symlinks may have absolute targets (see the module doc).
    pub absolute_symlinks: bool,
    /// Whether to apply the archive's uid/gid (only ever done when running as root).
    pub owners: bool,
}

impl Policy {
    /// A next root in RAM: a Debian minimal root is ~20 000 entries and ~300 MB.
    pub const ROOTFS: Policy = Policy {
        max_entries: 500_000,
        max_bytes: 8 << 30,
        absolute_symlinks: true,
        owners: true,
    };
    /// `/lib/modules/<release>`: Debian's full tree is ~6 000 files, ~500 MB uncompressed.
    pub const MODULES: Policy = Policy {
        max_entries: 100_000,
        max_bytes: 2 << 30,
        absolute_symlinks: false,
        owners: false,
    };
}

impl Policy {
    /// This policy with its byte and entry limits lowered to what the RAM can hold: the next
    /// root lives in RAM until the hand-off, and a tarball that fills it kills the node (OOM)
    /// instead of failing with a message (issue 17, point 7). `mem_available` is MemAvailable
    /// (bytes; None: unknown, the policy's limits stand): at most 3/4 of it as content, and one
    /// entry (an inode, a directory) per 4 KiB of it.
    pub fn within_memory(self, mem_available: Option<u64>) -> Policy {
        let Some(avail) = mem_available else {
            return self;
        };
        Policy {
            max_bytes: self.max_bytes.min(avail / 4 * 3),
            max_entries: self.max_entries.min(avail / 4096),
            ..self
        }
    }
}

/// MemAvailable from `/proc/meminfo`, in bytes.
pub fn mem_available() -> Option<u64> {
    let text = fs::read_to_string("/proc/meminfo").ok()?;
    parse_mem_available(&text)
}

fn parse_mem_available(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kib.checked_mul(1024)
}

/// Why an entry was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rule {
    AbsolutePath,
    ParentDir,
    EmptyPath,
    PathTooLong,
    /// The first component is our staging directory's name.
    ReservedName,
    /// A parent component (given) is a symlink.
    ThroughSymlink(String),
    /// A parent component (given) is not a directory.
    UnderNonDirectory(String),
    /// Symlink with an absolute target where the policy forbids it.
    AbsoluteLink(String),
    /// Symlink target (given) climbs above the target directory.
    LinkEscapes(String),
    /// Symlink target (given) has a `..` after a name: if that name is (or later becomes) a
    /// symlink, `..` climbs from wherever it points, so a chain (`a -> .`, `d/b -> a/../..`)
    /// leaves the target although each link alone stays inside.
    LinkDotDotAfterName(String),
    /// Hard link target (given) is not an earlier regular file of this archive.
    BadHardLink(String),
    SetUid,
    SetGid,
    /// An entry of another type where a directory is, or a directory where something else is.
    TypeConflict,
    /// Sparse files, unknown types, PAX size overrides, oversized extension headers.
    Unsupported(String),
    TooManyEntries(u64),
    TooManyBytes(u64),
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rule::AbsolutePath => write!(f, "absolute path (entries must be relative)"),
            Rule::ParentDir => write!(f, "'..' in the path"),
            Rule::EmptyPath => write!(f, "empty path"),
            Rule::PathTooLong => write!(f, "path longer than {MAX_PATH} bytes"),
            Rule::ReservedName => write!(f, "uses the installer's reserved name .zos-unpack-*"),
            Rule::ThroughSymlink(p) => {
                write!(f, "goes through the symlink {p} (no writing through links)")
            }
            Rule::UnderNonDirectory(p) => write!(f, "goes through {p}, which is not a directory"),
            Rule::AbsoluteLink(t) => {
                write!(f, "symlink to the absolute path {t} (not allowed here)")
            }
            Rule::LinkEscapes(t) => write!(f, "symlink to {t} leaves the target directory"),
            Rule::LinkDotDotAfterName(t) => write!(
                f,
                "symlink to {t} has '..' after a name (through another link it could leave the \
                 target directory; only leading '..' are allowed)"
            ),
            Rule::BadHardLink(t) => {
                write!(
                    f,
                    "hard link to {t}, which is not an earlier regular file of the archive"
                )
            }
            Rule::SetUid => write!(
                f,
                "setuid bit (refused: no privileged binaries from the network)"
            ),
            Rule::SetGid => write!(f, "setgid bit on a non-directory (refused)"),
            Rule::TypeConflict => write!(
                f,
                "replaces a directory with a non-directory or the reverse"
            ),
            Rule::Unsupported(what) => write!(f, "{what} is not supported"),
            Rule::TooManyEntries(n) => write!(
                f,
                "more than {n} entries (tar bomb guard, lowered to what the RAM can hold)"
            ),
            Rule::TooManyBytes(n) => write!(
                f,
                "more than {n} bytes of content (tar bomb guard: at most 3/4 of MemAvailable; \
                 a node with more RAM, or a smaller image)"
            ),
        }
    }
}

/// The one error type of this module. Every variant means the artifact failed as a whole.
#[derive(Debug)]
pub enum InstallError {
    /// An entry broke a rule; nothing from the archive was installed.
    Refused { entry: String, rule: Rule },
    /// Not a tar, tar.gz or tar.zst archive, or a corrupt or truncated one; nothing installed.
    Archive(String),
    /// A modules tarball that is not `<release>/…` for the running kernel; nothing installed.
    WrongKernel { release: String, found: String },
    /// The archive does not fit what is already in the target; nothing installed.
    Conflict { path: PathBuf, why: &'static str },
    /// The local filesystem failed (full, read-only, …).
    Io { what: String, err: io::Error },
}

impl fmt::Display for InstallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InstallError::Refused { entry, rule } => write!(f, "refused entry {entry:?}: {rule}"),
            InstallError::Archive(why) => write!(f, "bad archive: {why}"),
            InstallError::WrongKernel { release, found } => write!(
                f,
                "modules tarball holds {found:?}, not {release}/: it is for another kernel than \
                 the running {release} (or not laid out as <release>/...)"
            ),
            InstallError::Conflict { path, why } => write!(f, "{}: {why}", path.display()),
            InstallError::Io { what, err } => write!(f, "{what}: {err}"),
        }
    }
}

impl std::error::Error for InstallError {}

fn io_err(what: impl fmt::Display, p: &Path) -> impl FnOnce(io::Error) -> InstallError {
    let what = format!("{what} {}", p.display());
    move |err| InstallError::Io { what, err }
}

/// A filesystem error from [`super::beneath`] (which names the path) after `what`.
fn at(what: impl fmt::Display) -> impl FnOnce(io::Error) -> InstallError {
    let what = what.to_string();
    move |err| InstallError::Io { what, err }
}

fn archive_err(e: io::Error) -> InstallError {
    InstallError::Archive(e.to_string())
}

/// Unpacks a next-root tarball into `target` with [`Policy::ROOTFS`].
pub fn unpack(archive: &Path, target: &Path) -> Result<Unpacked, InstallError> {
    unpack_with(archive, target, &Policy::ROOTFS)
}

/// Unpacks with explicit limits and rules.
pub fn unpack_with(
    archive: &Path,
    target: &Path,
    policy: &Policy,
) -> Result<Unpacked, InstallError> {
    let target = open_target(target)?;
    extract(archive, &target, policy, None)
}

/// Unpacks into `target`, a directory already opened beneath the next root
/// ([`Root::create_dirs`](super::beneath::Root::create_dirs) of the artifact's `dest`): the
/// staging directory is made in it and every entry written through descriptors below it.
pub fn unpack_into(
    archive: &Path,
    target: &Dir,
    policy: &Policy,
) -> Result<Unpacked, InstallError> {
    extract(archive, target, policy, None)
}

/// Installs a modules tarball under `modules_root` (`/lib/modules`) for kernel `release`
/// (`uname -r`). The tarball must hold `<release>/…` (optionally `./<release>/…`) and
/// nothing else, with `<release>/modules.dep`: a tarball rooted *at* the release directory
/// would carry no kernel name, and a tarball for another kernel must be refused, not installed
/// where nothing loads it. Existing files (the initramfs's NIC drivers) are replaced, others
/// kept.
pub fn install_modules(
    archive: &Path,
    modules_root: &Path,
    release: &str,
) -> Result<Unpacked, InstallError> {
    check_release(release).map_err(|why| InstallError::Io {
        what: format!("kernel release {release:?} cannot name a directory ({why})"),
        err: io::ErrorKind::InvalidInput.into(),
    })?;
    // The initramfs's own `/lib/modules`, not a path from the network.
    fs::create_dir_all(modules_root).map_err(io_err("cannot create", modules_root))?;
    let target = open_target(modules_root)?;
    let policy = Policy::MODULES.within_memory(mem_available());
    extract(archive, &target, &policy, Some(release))
}

/// Opens the target directory given by path (ours: the next root or `/lib/modules`, so a link
/// in it is followed; nothing below it ever is).
fn open_target(target: &Path) -> Result<Dir, InstallError> {
    let meta = fs::metadata(target).map_err(io_err("cannot use", target))?;
    if !meta.is_dir() {
        return Err(InstallError::Conflict {
            path: target.to_path_buf(),
            why: "is not a directory",
        });
    }
    Root::open(target)
        .and_then(|root| root.as_dir())
        .map_err(io_err("cannot use", target))
}

/// The staging directory's name: `.zos-unpack-<pid>-<16 random hex>`.
const STAGING: &str = ".zos-unpack-";

/// Removes the staging directory however extraction ends (through the target's descriptor,
/// never following a link).
struct Staging<'a> {
    parent: &'a Dir,
    name: OsString,
    dir: Dir,
}

impl Drop for Staging<'_> {
    fn drop(&mut self) {
        if let Err(e) = self.parent.remove_all(&self.name) {
            log::warn!("could not remove {}: {e}", self.dir.path().display());
        }
    }
}

/// Removes staging directories a previous run of this process left (as PID 1 a restart after
/// a panic has the same pid: a leftover with our pid is ours). An archive cannot make one: the
/// name is reserved ([`Rule::ReservedName`]).
fn remove_leftovers(target: &Dir) -> Result<(), InstallError> {
    let ours = format!("{STAGING}{}", std::process::id());
    let names = target
        .names()
        .map_err(at("cannot clear old staging directories"))?;
    for name in names {
        let b = name.as_bytes();
        if b == ours.as_bytes() || b.starts_with(format!("{ours}-").as_bytes()) {
            target
                .remove_all(&name)
                .map_err(at("cannot remove a leftover staging directory"))?;
            log::info!("removed a leftover {}", target.path().join(&name).display());
        }
    }
    Ok(())
}

fn extract(
    archive: &Path,
    target: &Dir,
    policy: &Policy,
    release: Option<&str>,
) -> Result<Unpacked, InstallError> {
    let reader = open_archive(archive)?;
    remove_leftovers(target)?;
    let (dir, name) = target
        .create_temp_dir(&format!("{STAGING}{}-", std::process::id()), 0o700)
        .map_err(at("cannot create the staging directory"))?;
    let staging = Staging {
        parent: target,
        name,
        dir,
    };
    let mut x = Extractor {
        root: &staging.dir,
        policy,
        release,
        owners: policy.owners && nix::unistd::geteuid().is_root(),
        entries: 0,
        out: Unpacked::default(),
        dirs: Vec::new(),
        last_parent: None,
    };
    x.run(reader)?;
    x.finish_dirs()?;
    let out = std::mem::take(&mut x.out);
    drop(x);
    if let Some(release) = release {
        let release = OsStr::new(release);
        let is = |d: &Dir, name: &OsStr, kind| {
            d.stat(name).ok().flatten().is_some_and(|s| s.kind == kind)
        };
        let has_dep = is(&staging.dir, release, Kind::Dir)
            && staging
                .dir
                .open_dir(Path::new(release))
                .is_ok_and(|d| is(&d, OsStr::new("modules.dep"), Kind::File));
        if !has_dep {
            return Err(InstallError::Archive(format!(
                "modules tarball has no {}/modules.dep (run depmod when building it)",
                release.to_string_lossy()
            )));
        }
    }
    let dev = staging
        .dir
        .stat_self()
        .map_err(at("the staging directory"))?
        .dev;
    merge(&staging.dir, target, dev, true)?;
    merge(&staging.dir, target, dev, false)?;
    Ok(out)
}

// ------------------------------------------------------------------------------------------
// Formats
// ------------------------------------------------------------------------------------------

/// Opens the archive and picks the decompressor from the first bytes.
fn open_archive(path: &Path) -> Result<Box<dyn Read>, InstallError> {
    let mut file = File::open(path).map_err(io_err("cannot open", path))?;
    let mut head = Vec::with_capacity(512);
    (&mut file)
        .take(512)
        .read_to_end(&mut head)
        .map_err(io_err("cannot read", path))?;
    let input = BufReader::with_capacity(64 * 1024, io::Cursor::new(head.clone()).chain(file));
    Ok(match head.as_slice() {
        [0x1f, 0x8b, ..] => Box::new(Gzip::new(input)),
        [0x28, 0xb5, 0x2f, 0xfd, ..] => Box::new(Zstd::new(input)),
        h if h.get(257..262) == Some(b"ustar") => Box::new(input),
        [0xfd, b'7', b'z', b'X', b'Z', 0, ..] => {
            return Err(InstallError::Archive(
                "xz compression is not supported (use .tar.zst or .tar.gz)".into(),
            ))
        }
        [b'B', b'Z', b'h', ..] => {
            return Err(InstallError::Archive(
                "bzip2 compression is not supported (use .tar.zst or .tar.gz)".into(),
            ))
        }
        h => {
            let start: Vec<String> = h.iter().take(8).map(|b| format!("{b:02x}")).collect();
            return Err(InstallError::Archive(format!(
                "not a tar, tar.gz or tar.zst archive (starts with {})",
                start.join(" ")
            )));
        }
    })
}

/// gzip (RFC 1952), every member, inflated by miniz_oxide. Our own framing instead of flate2's
/// keeps crc32fast's 16 KiB of tables out of the binary (see the module doc on checksums).
struct Gzip<R: BufRead> {
    src: R,
    state: Box<miniz_oxide::inflate::stream::InflateState>,
    in_member: bool,
    /// Bytes out of this member modulo 2^32, for the ISIZE check.
    out_len: u32,
}

impl<R: BufRead> Gzip<R> {
    fn new(src: R) -> Self {
        Gzip {
            src,
            state: miniz_oxide::inflate::stream::InflateState::new_boxed(
                miniz_oxide::DataFormat::Raw,
            ),
            in_member: false,
            out_len: 0,
        }
    }

    /// RFC 1952 §2.3: ID1 ID2 CM FLG MTIME(4) XFL OS, then the optional fields FLG announces.
    fn header(&mut self) -> io::Result<()> {
        let bad = |why: &str| io::Error::new(io::ErrorKind::InvalidData, format!("gzip: {why}"));
        let mut h = [0u8; 10];
        self.src.read_exact(&mut h)?;
        if h[..3] != [0x1f, 0x8b, 8] {
            return Err(bad("not a deflate member"));
        }
        let flags = h[3];
        if flags & 0xe0 != 0 {
            return Err(bad("reserved header flags set"));
        }
        if flags & 0x04 != 0 {
            let mut xlen = [0u8; 2];
            self.src.read_exact(&mut xlen)?;
            self.skip(u16::from_le_bytes(xlen).into())?;
        }
        for zero_terminated in [0x08, 0x10] {
            // FNAME, FCOMMENT
            if flags & zero_terminated != 0 {
                self.src.skip_until(0)?;
            }
        }
        if flags & 0x02 != 0 {
            self.skip(2)?; // FHCRC
        }
        Ok(())
    }

    fn skip(&mut self, n: u64) -> io::Result<()> {
        if io::copy(&mut (&mut self.src).take(n), &mut io::sink())? != n {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        Ok(())
    }
}

impl<R: BufRead> Read for Gzip<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        use miniz_oxide::inflate::stream::inflate;
        use miniz_oxide::{MZError, MZFlush, MZStatus};
        let corrupt =
            |why: &str| io::Error::new(io::ErrorKind::InvalidData, format!("gzip: {why}"));
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            if !self.in_member {
                if self.src.fill_buf()?.is_empty() {
                    return Ok(0);
                }
                self.header()?;
                self.state.reset(miniz_oxide::DataFormat::Raw);
                self.in_member = true;
                self.out_len = 0;
            }
            let input = self.src.fill_buf()?;
            let eof = input.is_empty();
            let r = inflate(&mut self.state, input, buf, MZFlush::None);
            self.src.consume(r.bytes_consumed);
            self.out_len = self.out_len.wrapping_add(r.bytes_written as u32);
            match r.status {
                Ok(MZStatus::StreamEnd) => {
                    // Trailer: CRC-32 (not recomputed), ISIZE.
                    let mut trailer = [0u8; 8];
                    self.src.read_exact(&mut trailer)?;
                    let isize =
                        u32::from_le_bytes([trailer[4], trailer[5], trailer[6], trailer[7]]);
                    if isize != self.out_len {
                        return Err(corrupt("length in the trailer does not match the data"));
                    }
                    self.in_member = false;
                    if r.bytes_written > 0 {
                        return Ok(r.bytes_written);
                    }
                }
                Ok(_) if r.bytes_written > 0 => return Ok(r.bytes_written),
                Ok(_) | Err(MZError::Buf) if eof => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "gzip: truncated",
                    ))
                }
                Ok(_) | Err(MZError::Buf) if r.bytes_consumed == 0 => {
                    return Err(corrupt("decompressor made no progress"))
                }
                Ok(_) | Err(MZError::Buf) => {}
                Err(_) => return Err(corrupt("corrupt deflate data")),
            }
        }
    }
}

/// Zstandard (RFC 8878), every frame: a stream is a sequence of frames (RFC 8878 §3.1), as
/// `pzstd` writes, and skippable frames are skipped. ruzstd's own `StreamingDecoder` stops after
/// the first frame. Its error values are not formatted: their Display/Debug code alone is
/// ~35 KiB, and "corrupt" is all a farmer can act on.
struct Zstd<R: BufRead> {
    src: R,
    dec: ruzstd::decoding::FrameDecoder,
    in_frame: bool,
}

impl<R: BufRead> Zstd<R> {
    fn new(src: R) -> Self {
        Zstd {
            src,
            dec: ruzstd::decoding::FrameDecoder::new(),
            in_frame: false,
        }
    }
}

impl<R: BufRead> Read for Zstd<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        use ruzstd::decoding::errors::{FrameDecoderError, ReadFrameHeaderError};
        use ruzstd::decoding::BlockDecodingStrategy;
        let corrupt = || io::Error::new(io::ErrorKind::InvalidData, "zstd: corrupt data");
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            if self.in_frame {
                while self.dec.can_collect() == 0 && !self.dec.is_finished() {
                    self.dec
                        .decode_blocks(&mut self.src, BlockDecodingStrategy::UptoBlocks(1))
                        .map_err(|_| corrupt())?;
                }
                let n = self.dec.read(buf)?;
                if n > 0 {
                    return Ok(n);
                }
                self.in_frame = false;
            }
            if self.src.fill_buf()?.is_empty() {
                return Ok(0);
            }
            match self.dec.reset(&mut self.src) {
                Ok(()) => self.in_frame = true,
                Err(FrameDecoderError::ReadFrameHeaderError(ReadFrameHeaderError::SkipFrame {
                    length,
                    ..
                })) => {
                    let n = u64::from(length);
                    if io::copy(&mut (&mut self.src).take(n), &mut io::sink())? != n {
                        return Err(io::ErrorKind::UnexpectedEof.into());
                    }
                }
                Err(FrameDecoderError::WindowSizeTooBig { requested, .. }) => {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("zstd: window of {requested} bytes is too big (at most 128 MiB)"),
                    ))
                }
                Err(_) => return Err(corrupt()),
            }
        }
    }
}

// ------------------------------------------------------------------------------------------
// Entries
// ------------------------------------------------------------------------------------------

struct Extractor<'a> {
    /// The staging directory.
    root: &'a Dir,
    policy: &'a Policy,
    release: Option<&'a str>,
    owners: bool,
    entries: u64,
    out: Unpacked,
    /// Directories whose mode/owner/mtime are applied at the end (their contents change them).
    dirs: Vec<DirMeta>,
    /// The parents of the last entry and their directory: an archive lists a directory's
    /// entries together, so most entries need no walk.
    last_parent: Option<(Vec<Vec<u8>>, Dir)>,
}

struct DirMeta {
    /// Below the staging directory.
    rel: PathBuf,
    mode: u32,
    mtime: u64,
    owner: Option<(u32, u32)>,
}

/// What the extension headers before an entry said about it.
#[derive(Default)]
struct Extensions {
    long_name: Option<Vec<u8>>,
    long_link: Option<Vec<u8>>,
    pax: Option<Vec<u8>>,
}

/// An entry's fields after extension headers are applied.
struct Meta {
    name: Vec<u8>,
    link: Option<Vec<u8>>,
    mode: u32,
    mtime: u64,
    uid: u64,
    gid: u64,
}

impl Extractor<'_> {
    /// Reads the archive in raw mode: extension headers (GNU long names, PAX) are applied here,
    /// with size caps, instead of being buffered whole by the tar crate.
    fn run(&mut self, reader: Box<dyn Read>) -> Result<(), InstallError> {
        let mut archive = tar::Archive::new(reader);
        let entries = archive.entries().map_err(archive_err)?.raw(true);
        let mut ext = Extensions::default();
        for entry in entries {
            let mut entry = entry.map_err(archive_err)?;
            self.entries += 1;
            let label = || String::from_utf8_lossy(&entry_name(&entry)).into_owned();
            if self.entries > self.policy.max_entries {
                return Err(refused(
                    label(),
                    Rule::TooManyEntries(self.policy.max_entries),
                ));
            }
            match entry.header().entry_type().as_byte() {
                b'L' => {
                    ext.long_name = Some(read_ext(&mut entry, MAX_PATH as u64, "GNU long name")?)
                }
                b'K' => {
                    ext.long_link = Some(read_ext(&mut entry, MAX_PATH as u64, "GNU long link")?)
                }
                b'x' => ext.pax = Some(read_ext(&mut entry, MAX_PAX, "PAX header")?),
                // Global PAX headers (`git archive` writes one with the commit id): metadata only.
                b'g' => drop(read_ext(&mut entry, MAX_PAX, "PAX global header")?),
                _ => {
                    let ext = std::mem::take(&mut ext);
                    self.entry(&mut entry, ext)?;
                }
            }
        }
        if ext.long_name.is_some() || ext.long_link.is_some() || ext.pax.is_some() {
            return Err(InstallError::Archive(
                "extension header at the end of the archive describes no entry".into(),
            ));
        }
        Ok(())
    }

    fn entry(
        &mut self,
        entry: &mut tar::Entry<'_, Box<dyn Read>>,
        ext: Extensions,
    ) -> Result<(), InstallError> {
        let meta = Meta::new(entry, ext)?;
        let label = String::from_utf8_lossy(&meta.name).into_owned();
        let fail = |rule| refused(label.clone(), rule);
        let kind = entry.header().entry_type().as_byte();
        let parts = relative_parts(&meta.name).map_err(fail)?;
        // An old-style (pre-POSIX) directory: a regular file type and a trailing slash.
        let kind = match kind {
            b'0' | 0 if meta.name.ends_with(b"/") => b'5',
            k => k,
        };
        if let Some(release) = self.release {
            match parts.first() {
                None => {}
                Some(first) if *first == release.as_bytes() => {}
                Some(first) => {
                    return Err(InstallError::WrongKernel {
                        release: release.to_string(),
                        found: format!("{}/", String::from_utf8_lossy(first)),
                    })
                }
            }
        }
        if parts.is_empty() {
            // "./": the archive's root is the target itself, whose mode we leave alone.
            return if kind == b'5' {
                Ok(())
            } else {
                Err(fail(Rule::EmptyPath))
            };
        }
        if parts[0].starts_with(b".zos-unpack-") {
            return Err(fail(Rule::ReservedName));
        }
        if meta.mode & 0o4000 != 0 {
            return Err(fail(Rule::SetUid));
        }
        if meta.mode & 0o2000 != 0 && kind != b'5' {
            return Err(fail(Rule::SetGid));
        }
        let note = match kind {
            b'3' => Some("character device"),
            b'4' => Some("block device"),
            b'6' => Some("FIFO"),
            _ => None,
        };
        if let Some(what) = note {
            self.out.skipped += 1;
            if self.out.notes.len() < MAX_NOTES {
                self.out.notes.push(format!(
                    "{label}: skipped {what} (devtmpfs provides device nodes)"
                ));
            }
            return Ok(());
        }
        let (last, parents) = parts.split_last().ok_or_else(|| fail(Rule::EmptyPath))?;
        let dir = self
            .parents(parents, true)
            .map_err(|e| e.for_entry(&label))?;
        let name = os(last);
        let owner = self.owner(&meta).map_err(fail)?;
        match kind {
            b'5' => {
                match dir.stat(name).map_err(at(&label))? {
                    Some(s) if s.kind == Kind::Dir => {}
                    Some(_) => return Err(fail(Rule::TypeConflict)),
                    None => {
                        dir.mkdir(name, 0o700).map_err(at(&label))?;
                        self.out.dirs += 1;
                    }
                }
                self.dirs.push(DirMeta {
                    rel: parts.iter().map(|p| os(p)).collect(),
                    mode: meta.mode & 0o7777,
                    mtime: meta.mtime,
                    owner,
                });
                Ok(())
            }
            b'0' | 0 | b'7' => {
                let size = entry.size();
                if size > self.policy.max_bytes.saturating_sub(self.out.bytes) {
                    return Err(fail(Rule::TooManyBytes(self.policy.max_bytes)));
                }
                let (mut file, tmp) = dir.create_temp(name, 0o600).map_err(at(&label))?;
                let written = io::copy(entry, &mut file);
                let done = match written {
                    Ok(n) if n == size => finish_file(&file, &meta, owner),
                    Ok(n) => Err(InstallError::Archive(format!(
                        "{label}: truncated ({n} of {size} bytes)"
                    ))),
                    Err(e) => Err(archive_err(e)),
                };
                drop(file);
                let done = done.and_then(|()| place(&dir, &tmp, name, &label));
                if done.is_err() {
                    let _ = dir.remove(&tmp);
                }
                done?;
                self.out.files += 1;
                self.out.bytes += size;
                Ok(())
            }
            b'2' => {
                let target = meta.link.as_deref().unwrap_or_default();
                self.check_symlink(parents, target).map_err(fail)?;
                let tmp = dir.symlink_temp(os(target), name).map_err(at(&label))?;
                let done = match owner {
                    Some((u, g)) => dir.lchown(&tmp, u, g).map_err(at(&label)),
                    None => Ok(()),
                }
                .and_then(|()| place(&dir, &tmp, name, &label));
                if done.is_err() {
                    let _ = dir.remove(&tmp);
                }
                done?;
                self.out.files += 1;
                Ok(())
            }
            b'1' => {
                let target = meta.link.as_deref().unwrap_or_default();
                let show = String::from_utf8_lossy(target).into_owned();
                let bad = || fail(Rule::BadHardLink(show.clone()));
                let src_parts = relative_parts(target).map_err(fail)?;
                let (src_last, src_parents) = src_parts.split_last().ok_or_else(bad)?;
                let src_dir = self.parents(src_parents, false).map_err(|_| bad())?;
                let src = os(src_last);
                if !src_dir
                    .stat(src)
                    .ok()
                    .flatten()
                    .is_some_and(|s| s.kind == Kind::File)
                {
                    return Err(bad());
                }
                let tmp = dir
                    .hard_link_temp(&src_dir, src, name)
                    .map_err(at(&label))?;
                if let Err(e) = place(&dir, &tmp, name, &label) {
                    let _ = dir.remove(&tmp);
                    return Err(e);
                }
                self.out.files += 1;
                Ok(())
            }
            b'S' => Err(fail(Rule::Unsupported("a sparse file".into()))),
            k => Err(fail(Rule::Unsupported(format!(
                "entry type {:?}",
                k as char
            )))),
        }
    }

    /// The staging directory `parents`, opened: each component checked to be a real directory
    /// (not a symlink, not a file) and opened with `O_NOFOLLOW` from the one before. Missing
    /// ones are created when `create`, else an error.
    fn parents(&mut self, parents: &[&[u8]], create: bool) -> Result<Dir, InstallError> {
        let staging = || at("the staging directory");
        if let Some((key, dir)) = &self.last_parent {
            if key.len() == parents.len() && key.iter().zip(parents).all(|(a, b)| a == b) {
                return dir.try_clone().map_err(staging());
            }
        }
        let mut dir = self.root.try_clone().map_err(staging())?;
        for (i, part) in parents.iter().enumerate() {
            let shown = || {
                parents[..=i]
                    .iter()
                    .map(|p| String::from_utf8_lossy(p))
                    .collect::<Vec<_>>()
                    .join("/")
            };
            let name = os(part);
            match dir.stat(name).map_err(at(shown()))? {
                Some(s) if s.kind == Kind::Dir => {}
                Some(s) if s.kind == Kind::Symlink => {
                    return Err(refused(String::new(), Rule::ThroughSymlink(shown())))
                }
                Some(_) => return Err(refused(String::new(), Rule::UnderNonDirectory(shown()))),
                None if create => {
                    dir.mkdir(name, 0o755).map_err(at(shown()))?;
                    self.out.dirs += 1;
                }
                None => {
                    return Err(InstallError::Io {
                        what: format!("{} is not there", shown()),
                        err: io::ErrorKind::NotFound.into(),
                    })
                }
            }
            dir = dir.open_dir(Path::new(name)).map_err(at(shown()))?;
        }
        let key = parents.iter().map(|p| p.to_vec()).collect();
        self.last_parent = Some((key, dir.try_clone().map_err(staging())?));
        Ok(dir)
    }

    /// A relative target is resolved lexically from the link's directory (`parents`) and must
    /// stay at or below the archive root; an absolute one is allowed only by policy.
    fn check_symlink(&self, parents: &[&[u8]], target: &[u8]) -> Result<(), Rule> {
        let show = || String::from_utf8_lossy(target).into_owned();
        if target.is_empty() || target.contains(&0) {
            return Err(Rule::Unsupported("an empty symlink target".into()));
        }
        if target.len() > MAX_PATH {
            return Err(Rule::PathTooLong);
        }
        if target.starts_with(b"/") {
            return if self.policy.absolute_symlinks {
                Ok(())
            } else {
                Err(Rule::AbsoluteLink(show()))
            };
        }
        // Leading `..` climb real directories (every parent of an entry is one); after the
        // first name, a `..` would climb from wherever that name points if it is a symlink.
        let mut depth = parents.len();
        let mut named = false;
        for part in target.split(|&c| c == b'/') {
            match part {
                b"" | b"." => {}
                b".." if named => return Err(Rule::LinkDotDotAfterName(show())),
                b".." => {
                    depth = depth
                        .checked_sub(1)
                        .ok_or_else(|| Rule::LinkEscapes(show()))?
                }
                _ => {
                    depth += 1;
                    named = true;
                }
            }
        }
        Ok(())
    }

    fn owner(&self, meta: &Meta) -> Result<Option<(u32, u32)>, Rule> {
        if !self.owners {
            return Ok(None);
        }
        match (u32::try_from(meta.uid), u32::try_from(meta.gid)) {
            (Ok(u), Ok(g)) => Ok(Some((u, g))),
            _ => Err(Rule::Unsupported("a uid or gid above 2^32".into())),
        }
    }

    /// Directory modes, owners and mtimes, once nothing more is written into them (a new entry
    /// changes a directory's mtime, a read-only mode would stop the writes). In reverse archive
    /// order, so children usually come before parents and a non-root run can still get in.
    fn finish_dirs(&mut self) -> Result<(), InstallError> {
        for d in self.dirs.iter().rev() {
            let dir = self.root.open_dir(&d.rel).map_err(at(d.rel.display()))?;
            set_attrs(dir.fd(), d.owner, Some(d.mode), i64::try_from(d.mtime).ok())
                .map_err(io_err("cannot set the owner, mode or mtime of", dir.path()))?;
        }
        Ok(())
    }
}

impl Meta {
    fn new(entry: &tar::Entry<'_, Box<dyn Read>>, ext: Extensions) -> Result<Meta, InstallError> {
        let h = entry.header();
        let name_now = || String::from_utf8_lossy(&entry_name(entry)).into_owned();
        let mut meta = Meta {
            name: ext.long_name.unwrap_or_else(|| h.path_bytes().into_owned()),
            link: ext
                .long_link
                .or_else(|| h.link_name_bytes().map(|l| l.into_owned())),
            mode: h.mode().map_err(archive_err)?,
            mtime: h.mtime().map_err(archive_err)?,
            uid: h.uid().map_err(archive_err)?,
            gid: h.gid().map_err(archive_err)?,
        };
        let Some(pax) = ext.pax else {
            return Ok(meta);
        };
        for record in tar::PaxExtensions::new(&pax) {
            let record = record.map_err(archive_err)?;
            let value = record.value_bytes();
            let number = || {
                std::str::from_utf8(value)
                    .ok()
                    .and_then(|v| v.split('.').next())
                    .and_then(|v| v.parse::<u64>().ok())
                    .ok_or_else(|| InstallError::Archive(format!("{}: bad PAX number", name_now())))
            };
            match record.key_bytes() {
                b"path" => meta.name = value.to_vec(),
                b"linkpath" => meta.link = Some(value.to_vec()),
                b"mtime" => meta.mtime = number().unwrap_or(0),
                b"uid" => meta.uid = number()?,
                b"gid" => meta.gid = number()?,
                // The tar crate sized this entry from its header; a PAX size that disagrees is
                // how archives are made to look different to different readers.
                b"size" if number()? != entry.size() => {
                    return Err(refused(
                        name_now(),
                        Rule::Unsupported("a PAX size that differs from the header's".into()),
                    ))
                }
                k if k.starts_with(b"GNU.sparse.") => {
                    return Err(refused(
                        name_now(),
                        Rule::Unsupported("a sparse file".into()),
                    ))
                }
                _ => {}
            }
        }
        Ok(meta)
    }
}

fn entry_name(entry: &tar::Entry<'_, Box<dyn Read>>) -> Vec<u8> {
    entry.header().path_bytes().into_owned()
}

fn refused(entry: String, rule: Rule) -> InstallError {
    InstallError::Refused { entry, rule }
}

impl InstallError {
    /// Fills in the entry name of a refusal made below the entry level.
    fn for_entry(self, label: &str) -> InstallError {
        match self {
            InstallError::Refused { entry, rule } if entry.is_empty() => InstallError::Refused {
                entry: label.to_string(),
                rule,
            },
            e => e,
        }
    }
}

fn read_ext(
    entry: &mut tar::Entry<'_, Box<dyn Read>>,
    cap: u64,
    what: &str,
) -> Result<Vec<u8>, InstallError> {
    if entry.size() > cap {
        return Err(refused(
            String::from_utf8_lossy(&entry_name(entry)).into_owned(),
            Rule::Unsupported(format!(
                "a {what} of {} bytes (at most {cap})",
                entry.size()
            )),
        ));
    }
    let mut data = Vec::with_capacity(entry.size() as usize);
    entry.read_to_end(&mut data).map_err(archive_err)?;
    // GNU long names end with a NUL.
    while data.last() == Some(&0) {
        data.pop();
    }
    Ok(data)
}

/// Splits an archive path into its components: refuses absolute paths and `..`, drops `.` and
/// empty components (`a//b`, `./a`).
fn relative_parts(path: &[u8]) -> Result<Vec<&[u8]>, Rule> {
    if path.is_empty() {
        return Err(Rule::EmptyPath);
    }
    if path.len() > MAX_PATH {
        return Err(Rule::PathTooLong);
    }
    if path.starts_with(b"/") {
        return Err(Rule::AbsolutePath);
    }
    if path.contains(&0) {
        return Err(Rule::Unsupported("a NUL byte in a path".into()));
    }
    let mut parts = Vec::new();
    for part in path.split(|&c| c == b'/') {
        match part {
            b"" | b"." => {}
            b".." => return Err(Rule::ParentDir),
            p => parts.push(p),
        }
    }
    Ok(parts)
}

fn os(bytes: &[u8]) -> &OsStr {
    std::os::unix::ffi::OsStrExt::from_bytes(bytes)
}

/// Owner first (chown clears mode bits), then mode, then mtime; on the open file.
fn finish_file(file: &File, meta: &Meta, owner: Option<(u32, u32)>) -> Result<(), InstallError> {
    set_attrs(
        file.as_fd(),
        owner,
        Some(meta.mode & 0o7777),
        i64::try_from(meta.mtime).ok(),
    )
    .map_err(|err| InstallError::Io {
        what: format!(
            "cannot set the owner, mode or mtime of {}",
            String::from_utf8_lossy(&meta.name)
        ),
        err,
    })
}

/// Renames a finished temporary onto its name, both in `dir`; an existing file or link there
/// is replaced atomically (never followed), an existing directory is a conflict.
fn place(dir: &Dir, tmp: &OsStr, name: &OsStr, label: &str) -> Result<(), InstallError> {
    if dir
        .stat(name)
        .map_err(at(label))?
        .is_some_and(|s| s.kind == Kind::Dir)
    {
        return Err(refused(label.to_string(), Rule::TypeConflict));
    }
    dir.rename(tmp, name).map_err(at(label))
}

// ------------------------------------------------------------------------------------------
// Moving the staged tree into place
// ------------------------------------------------------------------------------------------

/// Moves everything in `src` into `dst`, both open directories: what `dst` lacks is renamed in
/// whole (`renameat` between the two descriptors); directories on both sides are merged
/// (opened with `O_NOFOLLOW`, so a symlink swapped in is refused, not followed); a file or link
/// replaces a file or link. With `dry`, only checks that this will work, so the real pass
/// starts only when nothing can conflict.
fn merge(src: &Dir, dst: &Dir, dev: u64, dry: bool) -> Result<(), InstallError> {
    let names = src.names().map_err(at("the staging directory"))?;
    for name in names {
        let to = dst.path().join(&name);
        let from_dir = src
            .stat(&name)
            .map_err(at("the staging directory"))?
            .is_some_and(|s| s.kind == Kind::Dir);
        let conflict = |why| {
            Err(InstallError::Conflict {
                path: to.clone(),
                why,
            })
        };
        let place = || {
            if dry {
                Ok(())
            } else {
                src.rename_to(&name, dst, &name).map_err(at("the merge"))
            }
        };
        match dst.stat(&name).map_err(at("the merge"))? {
            None => place()?,
            Some(m) => match (from_dir, m.kind) {
                (true, Kind::Dir) if m.dev != dev => {
                    return conflict("is a mount point; the archive would cross into it")
                }
                (true, Kind::Dir) => {
                    let from = src
                        .open_dir(Path::new(&name))
                        .map_err(at("the staging directory"))?;
                    let into = dst.open_dir(Path::new(&name)).map_err(at("the merge"))?;
                    merge(&from, &into, dev, dry)?
                }
                (true, Kind::Symlink) => {
                    return conflict(
                        "is a symlink in the target where the archive has a directory \
                         (refusing to write through it)",
                    )
                }
                (true, _) => {
                    return conflict("is a file in the target where the archive has a directory")
                }
                (false, Kind::Dir) => {
                    return conflict("is a directory in the target where the archive has a file")
                }
                (false, _) => place()?,
            },
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tar::{EntryType, Header};

    /// A directory under the system temp dir, removed when dropped.
    struct Scratch(PathBuf);

    impl Scratch {
        fn new() -> Scratch {
            static N: AtomicUsize = AtomicUsize::new(0);
            let p = std::env::temp_dir().join(format!(
                "zos-install-test-{}-{}",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            ));
            let _ = fs::remove_dir_all(&p);
            fs::create_dir_all(p.join("target")).unwrap();
            Scratch(p)
        }
        fn target(&self) -> PathBuf {
            self.0.join("target")
        }
        fn write(&self, name: &str, bytes: &[u8]) -> PathBuf {
            let p = self.0.join(name);
            fs::write(&p, bytes).unwrap();
            p
        }
        /// Everything under the target, sorted, as "path" / "path/" / "path -> link".
        fn listing(&self) -> Vec<String> {
            fn walk(base: &Path, dir: &Path, out: &mut Vec<String>) {
                for e in fs::read_dir(dir).unwrap() {
                    let p = e.unwrap().path();
                    let rel = p.strip_prefix(base).unwrap().display().to_string();
                    let m = fs::symlink_metadata(&p).unwrap();
                    if m.file_type().is_symlink() {
                        out.push(format!("{rel} -> {}", fs::read_link(&p).unwrap().display()));
                    } else if m.is_dir() {
                        out.push(format!("{rel}/"));
                        walk(base, &p, out);
                    } else {
                        out.push(rel);
                    }
                }
            }
            let mut out = Vec::new();
            walk(&self.target(), &self.target(), &mut out);
            out.sort();
            out
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    /// Builds archives entry by entry, with raw headers so hostile names get through (the tar
    /// crate's `append_data` refuses `..` and absolute paths).
    struct Tar(tar::Builder<Vec<u8>>);

    impl Tar {
        fn new() -> Tar {
            Tar(tar::Builder::new(Vec::new()))
        }
        fn raw(mut self, kind: EntryType, name: &str, link: &str, mode: u32, data: &[u8]) -> Tar {
            let mut h = Header::new_ustar();
            h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
            h.as_old_mut().linkname[..link.len()].copy_from_slice(link.as_bytes());
            h.set_entry_type(kind);
            h.set_size(data.len() as u64);
            h.set_mode(mode);
            h.set_mtime(1_600_000_000);
            h.set_uid(0);
            h.set_gid(0);
            h.set_cksum();
            self.0.append(&h, data).unwrap();
            self
        }
        fn file(self, name: &str, data: &[u8]) -> Tar {
            self.raw(EntryType::Regular, name, "", 0o644, data)
        }
        fn dir(self, name: &str) -> Tar {
            self.raw(EntryType::Directory, name, "", 0o755, b"")
        }
        fn symlink(self, name: &str, to: &str) -> Tar {
            self.raw(EntryType::Symlink, name, to, 0o777, b"")
        }
        fn hardlink(self, name: &str, to: &str) -> Tar {
            self.raw(EntryType::Link, name, to, 0o644, b"")
        }
        fn bytes(self) -> Vec<u8> {
            self.0.into_inner().unwrap()
        }
    }

    /// One gzip member with every optional header field (FEXTRA, FNAME, FCOMMENT, FHCRC); the
    /// CRC fields are not checked by the reader, so they are left zero here.
    fn gzip_member(data: &[u8]) -> Vec<u8> {
        let mut out = vec![0x1f, 0x8b, 8, 0x04 | 0x08 | 0x10 | 0x02, 0, 0, 0, 0, 0, 3];
        out.extend_from_slice(&[3, 0, b'a', b'b', b'c']);
        out.extend_from_slice(b"name.tar\0a comment\0");
        out.extend_from_slice(&[0, 0]);
        out.extend_from_slice(&miniz_oxide::deflate::compress_to_vec(data, 1));
        out.extend_from_slice(&[0, 0, 0, 0]);
        out.extend_from_slice(&(data.len() as u32).to_le_bytes());
        out
    }

    fn gzip(data: &[u8]) -> Vec<u8> {
        gzip_member(data)
    }

    fn unhex(lines: &[&str]) -> Vec<u8> {
        let hex: String = lines.concat();
        (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
            .collect()
    }

    /// `tar --format=gnu` of hello/{world.txt, link -> world.txt}, then `gzip -9` (with FNAME).
    const GNU_TAR_GZ: &[&str] = &[
        "1f8b08088c74066b0203676e752e74617200edd3410a0221148061d79de29da04647c723b46bd701828a892cc18c",
        "3a7e36ed062a5a180cfcdfe689baf2c77e17425ca8aa9ac23b37cc623c87b56ebdf156bff675d339adc4a93fb85e",
        "f22689a81463fe74efdbf944f543ff70381f2bf7f7fe87feadd59d12738b296ce7f99ee95fb77fdd877e46edac7d",
        "dfdf8cfb1bd796ffdff0ffebf73fc83ec5932c576b290f315300000000000000000000000098940749771c7e0028",
        "0000",
    ];
    /// The same tree as `tar --format=posix` (PAX headers with atime/ctime), then `zstd -19`.
    const POSIX_TAR_ZST: &[&str] = &[
        "28b52ffd64002715070042891d1970cf03401214280b2934f66d03737bba4b483100aabfc24b0114565e9283a549",
        "1d869ad75b33e6ad5e3568249d16e31dfcdd7f3441b2ce491faf3f67ef7dafb08f01be9dbb8279e0067fc47bc5bb",
        "1125a8422ed8762f8595aaf6e275dedcdd3dfbe6cbbed7b9a1774a191f81a2b18111b9a02204012920f02ec90489",
        "1e2734881e20cefe551536c0d49af3f5004c6103d4528d0c29dc410034ea8289ca33f01f60ed2ad000f48092d281",
        "e430c00390080ab081c0b0011892a6a6c30730c0ca005c0583f66b4398ea62ac3c1108b8b9d4016a3a0be3068003",
        "830658479f1dd6b30025",
    ];

    #[test]
    fn archives_made_by_gnu_tar_gzip_and_zstd_unpack() {
        for (name, fixture) in [("gnu.tar.gz", GNU_TAR_GZ), ("posix.tar.zst", POSIX_TAR_ZST)] {
            let s = Scratch::new();
            let u = unpack(&s.write(name, &unhex(fixture)), &s.target()).unwrap();
            assert_eq!((u.files, u.bytes), (2, 16), "{name}");
            assert_eq!(
                s.listing(),
                ["hello/", "hello/link -> world.txt", "hello/world.txt"]
            );
            let world = s.target().join("hello/world.txt");
            assert_eq!(fs::read(&world).unwrap(), b"hi from GNU tar\n");
            assert_eq!(
                fs::metadata(&world).unwrap().mtime(),
                1_600_000_000,
                "{name}"
            );
        }
    }

    #[test]
    fn multi_member_gzip_is_read_whole_and_a_bad_length_is_caught() {
        let tar = normal_tree();
        let (a, b) = tar.split_at(1000);
        let mut bytes = gzip_member(a);
        bytes.extend_from_slice(&gzip_member(b));
        let s = Scratch::new();
        assert_eq!(
            unpack(&s.write("multi.tgz", &bytes), &s.target())
                .unwrap()
                .files,
            5
        );

        // The first member's trailer is read before the second member starts.
        let mut bad = gzip_member(a);
        let n = bad.len();
        bad[n - 4] ^= 1;
        bad.extend_from_slice(&gzip_member(b));
        let s = Scratch::new();
        match unpack(&s.write("bad.tgz", &bad), &s.target()) {
            Err(InstallError::Archive(e)) => assert!(e.contains("length"), "{e}"),
            other => panic!("{other:?}"),
        }
        let mut corrupt = gzip_member(&tar);
        corrupt[40] ^= 0xff;
        corrupt[41] ^= 0xff;
        assert!(matches!(
            unpack(&s.write("corrupt.tgz", &corrupt), &s.target()),
            Err(InstallError::Archive(_) | InstallError::Refused { .. })
        ));
        assert!(s.listing().is_empty());
    }

    fn zstd(data: &[u8]) -> Vec<u8> {
        ruzstd::encoding::compress_to_vec(data, ruzstd::encoding::CompressionLevel::Fastest)
    }

    fn refusal(r: Result<Unpacked, InstallError>) -> (String, Rule) {
        match r {
            Err(InstallError::Refused { entry, rule }) => (entry, rule),
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    fn normal_tree() -> Vec<u8> {
        Tar::new()
            .dir("./")
            .dir("etc/")
            .file("etc/motd", b"hello\n")
            .raw(
                EntryType::Regular,
                "usr/bin/tool",
                "",
                0o755,
                b"#!/bin/sh\n",
            )
            .symlink("bin", "usr/bin")
            .symlink("etc/localtime", "/usr/share/zoneinfo/UTC")
            .hardlink("usr/bin/tool2", "usr/bin/tool")
            .raw(EntryType::Directory, "tmp", "", 0o1777, b"")
            .raw(EntryType::Directory, "var/mail/", "", 0o2775, b"")
            .bytes()
    }

    #[test]
    fn normal_tree_is_installed_with_modes_mtimes_and_links() {
        let s = Scratch::new();
        let archive = s.write("root.tar", &normal_tree());
        let u = unpack(&archive, &s.target()).unwrap();
        assert_eq!((u.files, u.bytes, u.skipped), (5, 16, 0), "{u:?}");
        assert_eq!(
            s.listing(),
            [
                "bin -> usr/bin",
                "etc/",
                "etc/localtime -> /usr/share/zoneinfo/UTC",
                "etc/motd",
                "tmp/",
                "usr/",
                "usr/bin/",
                "usr/bin/tool",
                "usr/bin/tool2",
                "var/",
                "var/mail/",
            ]
        );
        let t = s.target();
        assert_eq!(fs::read(t.join("etc/motd")).unwrap(), b"hello\n");
        let mode = |p: &str| fs::symlink_metadata(t.join(p)).unwrap().mode() & 0o7777;
        assert_eq!(mode("usr/bin/tool"), 0o755);
        assert_eq!(mode("etc/motd"), 0o644);
        assert_eq!(mode("tmp"), 0o1777);
        assert_eq!(mode("var/mail"), 0o2775);
        let meta = |p: &str| fs::symlink_metadata(t.join(p)).unwrap();
        assert_eq!(meta("etc/motd").mtime(), 1_600_000_000);
        assert_eq!(
            meta("etc").mtime(),
            1_600_000_000,
            "directory mtime applied last"
        );
        assert_eq!(meta("usr/bin/tool").ino(), meta("usr/bin/tool2").ino());
    }

    #[test]
    fn existing_files_are_replaced_and_others_kept() {
        let s = Scratch::new();
        let t = s.target();
        fs::create_dir_all(t.join("etc")).unwrap();
        fs::write(t.join("etc/motd"), b"old").unwrap();
        fs::write(t.join("etc/keep"), b"mine").unwrap();
        std::os::unix::fs::symlink("nowhere", t.join("bin")).unwrap();
        let archive = s.write("root.tar", &normal_tree());
        unpack(&archive, &t).unwrap();
        assert_eq!(fs::read(t.join("etc/motd")).unwrap(), b"hello\n");
        assert_eq!(fs::read(t.join("etc/keep")).unwrap(), b"mine");
        assert_eq!(fs::read_link(t.join("bin")).unwrap(), Path::new("usr/bin"));
        assert!(
            !s.listing().iter().any(|l| l.contains(".zos-")),
            "{:?}",
            s.listing()
        );
    }

    #[test]
    fn gzip_and_zstd_are_recognised_by_magic_not_name() {
        for (name, bytes) in [
            ("a.tar.zst", gzip(&normal_tree())),
            ("b.tar.gz", zstd(&normal_tree())),
        ] {
            let s = Scratch::new();
            let archive = s.write(name, &bytes);
            let u = unpack(&archive, &s.target()).unwrap();
            assert_eq!(u.files, 5, "{name}");
            assert_eq!(fs::read(s.target().join("etc/motd")).unwrap(), b"hello\n");
        }
    }

    #[test]
    fn multi_frame_zstd_with_a_skippable_frame_is_read_whole() {
        let tar = normal_tree();
        let (a, b) = tar.split_at(700);
        let mut bytes = zstd(a);
        bytes.extend_from_slice(&[0x50, 0x2a, 0x4d, 0x18, 3, 0, 0, 0, 1, 2, 3]);
        bytes.extend_from_slice(&zstd(b));
        let s = Scratch::new();
        let archive = s.write("multi.tar.zst", &bytes);
        assert_eq!(unpack(&archive, &s.target()).unwrap().files, 5);
    }

    #[test]
    fn parent_dir_component_is_refused_and_nothing_is_installed() {
        let s = Scratch::new();
        let bytes = Tar::new()
            .file("good", b"x")
            .file("a/../../evil", b"x")
            .bytes();
        let archive = s.write("bad.tar", &bytes);
        let (entry, rule) = refusal(unpack(&archive, &s.target()));
        assert_eq!((entry.as_str(), rule), ("a/../../evil", Rule::ParentDir));
        assert!(s.listing().is_empty(), "{:?}", s.listing());
        assert!(!s.0.join("evil").exists());
    }

    #[test]
    fn absolute_path_is_refused() {
        let s = Scratch::new();
        let archive = s.write("abs.tar", &Tar::new().file("/abs", b"x").bytes());
        assert_eq!(
            refusal(unpack(&archive, &s.target())),
            ("/abs".into(), Rule::AbsolutePath)
        );
        assert!(s.listing().is_empty());
    }

    #[test]
    fn symlink_escaping_the_target_is_refused_before_anything_writes_through_it() {
        let s = Scratch::new();
        let bytes = Tar::new()
            .symlink("x", "../../etc")
            .file("x/passwd", b"root::0:0")
            .bytes();
        let archive = s.write("escape.tar", &bytes);
        assert_eq!(
            refusal(unpack(&archive, &s.target())),
            ("x".into(), Rule::LinkEscapes("../../etc".into()))
        );
        let bytes = Tar::new().symlink("a/b/x", "../../../etc").bytes();
        let archive = s.write("escape2.tar", &bytes);
        assert!(matches!(
            refusal(unpack(&archive, &s.target())).1,
            Rule::LinkEscapes(_)
        ));
        // Climbing and coming back down inside is fine.
        let bytes = Tar::new().symlink("a/b/x", "../../a/c").bytes();
        let archive = s.write("inside.tar", &bytes);
        assert!(unpack(&archive, &s.target()).is_ok());
        assert!(s.listing().contains(&"a/b/x -> ../../a/c".to_string()));
    }

    /// Issue 17 point 7: the limits follow MemAvailable; a tarball bigger than the RAM can
    /// hold is refused with the limit named, the target left as it was.
    #[test]
    fn limits_follow_the_memory_the_node_has() {
        let meminfo = "MemTotal:        8000 kB\nMemAvailable:      400 kB\nBuffers: 1 kB\n";
        assert_eq!(parse_mem_available(meminfo), Some(409_600));
        assert_eq!(parse_mem_available("MemFree: 1 kB\n"), None);
        let p = Policy::ROOTFS.within_memory(Some(409_600));
        assert_eq!((p.max_bytes, p.max_entries), (307_200, 100));
        assert_eq!(Policy::ROOTFS.within_memory(None), Policy::ROOTFS);
        assert_eq!(
            Policy::ROOTFS.within_memory(Some(1 << 50)),
            Policy::ROOTFS,
            "never above the policy"
        );
        let s = Scratch::new();
        let bytes = Tar::new()
            .file("a", &[1; 200_000])
            .file("b", &[2; 200_000])
            .bytes();
        let archive = s.write("big.tar", &bytes);
        let e = unpack_with(&archive, &s.target(), &p).unwrap_err();
        assert!(e.to_string().contains("MemAvailable"), "{e}");
        assert!(s.listing().is_empty());
    }

    /// Issue 17 point 3: `d/a -> .` and `d/b -> a/../..` each pass a lexical check, but the
    /// kernel resolves `d/b` to the parent of the target.
    #[test]
    fn a_chain_of_symlinks_that_climbs_out_is_refused() {
        let s = Scratch::new();
        for (name, to) in [("d/b", "a/../.."), ("b", "a/.."), ("d/c", "x/../../y")] {
            let bytes = Tar::new()
                .dir("d/")
                .symlink("d/a", ".")
                .symlink("a", ".")
                .symlink(name, to)
                .bytes();
            let archive = s.write("chain.tar", &bytes);
            assert_eq!(
                refusal(unpack(&archive, &s.target())),
                (name.into(), Rule::LinkDotDotAfterName(to.into()))
            );
            assert!(s.listing().is_empty());
        }
    }

    #[test]
    fn writing_through_an_extracted_symlink_is_refused() {
        let s = Scratch::new();
        let bytes = Tar::new()
            .dir("sub/")
            .symlink("d", "sub")
            .file("d/file", b"x")
            .bytes();
        let archive = s.write("through.tar", &bytes);
        assert_eq!(
            refusal(unpack(&archive, &s.target())),
            ("d/file".into(), Rule::ThroughSymlink("d".into()))
        );
        let bytes = Tar::new().file("f", b"x").file("f/g", b"y").bytes();
        let archive = s.write("under-file.tar", &bytes);
        assert_eq!(
            refusal(unpack(&archive, &s.target())).1,
            Rule::UnderNonDirectory("f".into())
        );
        assert!(s.listing().is_empty());
    }

    #[test]
    fn hard_links_must_point_at_earlier_files_inside() {
        let s = Scratch::new();
        for (to, rule) in [
            ("../../etc/passwd", Rule::ParentDir),
            ("/etc/passwd", Rule::AbsolutePath),
            ("missing", Rule::BadHardLink("missing".into())),
            ("l/passwd", Rule::BadHardLink("l/passwd".into())),
            ("dir", Rule::BadHardLink("dir".into())),
        ] {
            let bytes = Tar::new()
                .symlink("l", "dir")
                .dir("dir")
                .file("dir/passwd", b"x")
                .hardlink("h", to)
                .bytes();
            let archive = s.write("hard.tar", &bytes);
            assert_eq!(
                refusal(unpack(&archive, &s.target())),
                ("h".into(), rule),
                "{to}"
            );
            assert!(s.listing().is_empty());
        }
    }

    #[test]
    fn absolute_symlinks_are_for_a_next_root_only() {
        let s = Scratch::new();
        let bytes = Tar::new()
            .dir("6.1.0/")
            .file("6.1.0/modules.dep", b"")
            .symlink("6.1.0/build", "/usr/src/linux")
            .bytes();
        let archive = s.write("m.tar", &bytes);
        assert!(unpack(&archive, &s.target()).is_ok());
        let s = Scratch::new();
        assert_eq!(
            refusal(install_modules(&archive, &s.target(), "6.1.0")),
            (
                "6.1.0/build".into(),
                Rule::AbsoluteLink("/usr/src/linux".into())
            )
        );
        assert!(s.listing().is_empty());
    }

    #[test]
    fn setuid_and_setgid_files_are_refused() {
        let s = Scratch::new();
        for (mode, rule) in [(0o4755, Rule::SetUid), (0o2755, Rule::SetGid)] {
            let bytes = Tar::new()
                .raw(EntryType::Regular, "usr/bin/su", "", mode, b"x")
                .bytes();
            let archive = s.write("suid.tar", &bytes);
            assert_eq!(
                refusal(unpack(&archive, &s.target())),
                ("usr/bin/su".into(), rule)
            );
        }
        let bytes = Tar::new()
            .raw(EntryType::Directory, "d", "", 0o4755, b"")
            .bytes();
        let archive = s.write("suid-dir.tar", &bytes);
        assert_eq!(refusal(unpack(&archive, &s.target())).1, Rule::SetUid);
    }

    #[test]
    fn device_nodes_and_fifos_are_skipped_with_a_note() {
        let s = Scratch::new();
        let bytes = Tar::new()
            .raw(EntryType::Char, "dev/null", "", 0o666, b"")
            .raw(EntryType::Block, "dev/sda", "", 0o660, b"")
            .raw(EntryType::Fifo, "run/initctl", "", 0o600, b"")
            .file("etc/hostname", b"zos\n")
            .bytes();
        let archive = s.write("dev.tar", &bytes);
        let u = unpack(&archive, &s.target()).unwrap();
        assert_eq!((u.files, u.skipped), (1, 3));
        assert_eq!(
            u.notes[0],
            "dev/null: skipped character device (devtmpfs provides device nodes)"
        );
        assert_eq!(s.listing(), ["etc/", "etc/hostname"]);
    }

    #[test]
    fn tar_bomb_stops_at_the_entry_and_byte_caps() {
        let s = Scratch::new();
        let mut many = Tar::new();
        for i in 0..20 {
            many = many.file(&format!("f{i}"), b"");
        }
        let archive = s.write("many.tar", &many.bytes());
        let policy = Policy {
            max_entries: 10,
            ..Policy::ROOTFS
        };
        assert_eq!(
            refusal(unpack_with(&archive, &s.target(), &policy)),
            ("f10".into(), Rule::TooManyEntries(10))
        );

        let big = vec![0u8; 4096];
        let bytes = Tar::new()
            .file("a", &big)
            .file("b", &big)
            .file("c", &big)
            .bytes();
        let archive = s.write("big.tar.zst", &zstd(&bytes));
        let policy = Policy {
            max_bytes: 10_000,
            ..Policy::ROOTFS
        };
        assert_eq!(
            refusal(unpack_with(&archive, &s.target(), &policy)),
            ("c".into(), Rule::TooManyBytes(10_000))
        );
        assert!(s.listing().is_empty());
    }

    #[test]
    fn oversized_extension_headers_are_refused() {
        let s = Scratch::new();
        let long = vec![b'a'; MAX_PATH + 10];
        let bytes = Tar::new()
            .raw(EntryType::GNULongName, "././@LongLink", "", 0o644, &long)
            .file("x", b"")
            .bytes();
        let archive = s.write("long.tar", &bytes);
        assert!(
            matches!(refusal(unpack(&archive, &s.target())).1, Rule::Unsupported(w) if w.contains("GNU long name"))
        );
    }

    #[test]
    fn long_names_and_pax_records_are_honoured() {
        let s = Scratch::new();
        let deep = format!("{}/file", "d".repeat(150));
        let mut b = tar::Builder::new(Vec::new());
        let mut h = Header::new_gnu();
        h.set_size(2);
        h.set_mode(0o600);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        b.append_data(&mut h, &deep, &b"hi"[..]).unwrap();
        b.append_pax_extensions([("path", &b"pax/name"[..]), ("mtime", &b"1234.5"[..])])
            .unwrap();
        let mut h = Header::new_ustar();
        h.set_path("short").unwrap();
        h.set_size(1);
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h.set_cksum();
        b.append(&h, &b"p"[..]).unwrap();
        let archive = s.write("long.tar", &b.into_inner().unwrap());
        unpack(&archive, &s.target()).unwrap();
        assert_eq!(fs::read(s.target().join(&deep)).unwrap(), b"hi");
        let pax = s.target().join("pax/name");
        assert_eq!(fs::read(&pax).unwrap(), b"p");
        assert_eq!(fs::metadata(&pax).unwrap().mtime(), 1234);
        assert!(!s.target().join("short").exists());
    }

    #[test]
    fn pax_size_that_disagrees_with_the_header_is_refused() {
        let s = Scratch::new();
        let mut b = tar::Builder::new(Vec::new());
        b.append_pax_extensions([("size", &b"0"[..])]).unwrap();
        let bytes = {
            let mut t = Tar(b);
            t = t.file("x", b"hidden");
            t.bytes()
        };
        let archive = s.write("pax.tar", &bytes);
        assert!(
            matches!(refusal(unpack(&archive, &s.target())), (e, Rule::Unsupported(_)) if e == "x")
        );
    }

    #[test]
    fn not_an_archive_or_a_broken_one_is_an_archive_error() {
        let s = Scratch::new();
        for (name, bytes, want) in [
            (
                "x.tar",
                b"hello world, not a tar".to_vec(),
                "starts with 68 65 6c",
            ),
            (
                "x.tar.xz",
                vec![0xfd, b'7', b'z', b'X', b'Z', 0, 1, 2],
                "xz",
            ),
            ("x.tar.gz", gzip(b"not a tar inside"), ""),
            ("x.tar.zst", zstd(b"not a tar inside"), ""),
            ("x.tar", normal_tree()[..1000].to_vec(), ""),
            ("x.tar.zst", zstd(&normal_tree())[..60].to_vec(), ""),
            ("empty.tar", Vec::new(), "starts with"),
        ] {
            match unpack(&s.write(name, &bytes), &s.target()) {
                Err(InstallError::Archive(e)) => assert!(e.contains(want), "{name}: {e}"),
                other => panic!("{name}: {other:?}"),
            }
            assert!(s.listing().is_empty(), "{name}: {:?}", s.listing());
        }
    }

    #[test]
    fn a_conflict_with_the_target_is_found_before_anything_moves() {
        let s = Scratch::new();
        let t = s.target();
        fs::write(t.join("etc"), b"a file").unwrap();
        let archive = s.write("root.tar", &normal_tree());
        match unpack(&archive, &t) {
            Err(InstallError::Conflict { path, .. }) => assert_eq!(path, t.join("etc")),
            other => panic!("{other:?}"),
        }
        assert_eq!(s.listing(), ["etc"], "nothing else moved in");
        fs::remove_file(t.join("etc")).unwrap();
        std::os::unix::fs::symlink("/etc", t.join("etc")).unwrap();
        assert!(matches!(
            unpack(&archive, &t),
            Err(InstallError::Conflict { .. })
        ));
    }

    #[test]
    fn a_leftover_staging_directory_is_cleared() {
        let s = Scratch::new();
        let stale = s
            .target()
            .join(format!(".zos-unpack-{}", std::process::id()));
        fs::create_dir_all(stale.join("junk")).unwrap();
        unpack(&s.write("root.tar", &normal_tree()), &s.target()).unwrap();
        assert!(!stale.exists());
        assert!(!s.listing().iter().any(|l| l.contains("junk")));
        let bytes = Tar::new().file(".zos-unpack-1/x", b"").bytes();
        let (_, rule) = refusal(unpack(&s.write("r.tar", &bytes), &s.target()));
        assert_eq!(rule, Rule::ReservedName);
    }

    #[test]
    fn planted_temporary_names_are_stepped_over() {
        let s = Scratch::new();
        let bytes = Tar::new()
            .file(".zos-tmp-0", b"planted")
            .file(".zos-tmp-1", b"planted")
            .file("a", b"real")
            .symlink("b", "a")
            .bytes();
        let u = unpack(&s.write("tmp.tar", &bytes), &s.target()).unwrap();
        assert_eq!(u.files, 4);
        assert_eq!(fs::read(s.target().join(".zos-tmp-0")).unwrap(), b"planted");
        assert_eq!(fs::read(s.target().join("a")).unwrap(), b"real");
    }

    fn modules_tar(release: &str) -> Vec<u8> {
        Tar::new()
            .dir("./")
            .dir(&format!("./{release}/"))
            .file(
                &format!("./{release}/modules.dep"),
                b"kernel/drivers/net/virtio_net.ko: \n",
            )
            .file(
                &format!("./{release}/modules.alias"),
                b"alias virtio:d00000001v* virtio_net\n",
            )
            .file(
                &format!("{release}/kernel/drivers/net/virtio_net.ko"),
                b"\x7fELF new",
            )
            .bytes()
    }

    #[test]
    fn modules_tarball_merges_into_the_release_directory() {
        let s = Scratch::new();
        let t = s.target();
        let release = "6.1.0-56-cloud-amd64";
        fs::create_dir_all(t.join(release).join("kernel/drivers/net")).unwrap();
        fs::write(
            t.join(release).join("kernel/drivers/net/virtio_net.ko"),
            b"\x7fELF old",
        )
        .unwrap();
        fs::write(
            t.join(release).join("kernel/drivers/net/e1000.ko"),
            b"\x7fELF",
        )
        .unwrap();
        let archive = s.write("modules.tar.zst", &zstd(&modules_tar(release)));
        let u = install_modules(&archive, &t, release).unwrap();
        assert_eq!(u.files, 3);
        let dir = t.join(release);
        assert_eq!(
            fs::read(dir.join("kernel/drivers/net/virtio_net.ko")).unwrap(),
            b"\x7fELF new"
        );
        assert!(dir.join("kernel/drivers/net/e1000.ko").exists());
        assert!(dir.join("modules.dep").exists());
    }

    #[test]
    fn modules_tarball_for_another_kernel_is_refused() {
        let s = Scratch::new();
        let archive = s.write("m.tar", &modules_tar("6.1.0-55-cloud-amd64"));
        match install_modules(&archive, &s.target(), "6.1.0-56-cloud-amd64") {
            Err(e @ InstallError::WrongKernel { .. }) => {
                assert!(
                    e.to_string().contains("holds \"6.1.0-55-cloud-amd64/\""),
                    "{e}"
                )
            }
            other => panic!("{other:?}"),
        }
        // Rooted at the release directory: no kernel name to check, refused.
        let flat = Tar::new()
            .file("modules.dep", b"")
            .file("kernel/x.ko", b"")
            .bytes();
        let archive = s.write("flat.tar", &flat);
        assert!(matches!(
            install_modules(&archive, &s.target(), "6.1.0"),
            Err(InstallError::WrongKernel { .. })
        ));
        let no_dep = Tar::new().file("6.1.0/kernel/x.ko", b"").bytes();
        let archive = s.write("nodep.tar", &no_dep);
        match install_modules(&archive, &s.target(), "6.1.0") {
            Err(InstallError::Archive(e)) => assert!(e.contains("modules.dep"), "{e}"),
            other => panic!("{other:?}"),
        }
        assert!(install_modules(&archive, &s.target(), "../x").is_err());
        // The release directory itself must be a directory, not a link to another one.
        let linked = Tar::new().symlink("6.1.0", ".").bytes();
        let archive = s.write("linked.tar", &linked);
        match install_modules(&archive, &s.target(), "6.1.0") {
            Err(InstallError::Archive(e)) => assert!(e.contains("modules.dep"), "{e}"),
            other => panic!("{other:?}"),
        }
        assert!(s.listing().is_empty(), "{:?}", s.listing());
    }

    /// `<scratch>/outside` with one file in it: what must look the same after every install.
    fn sentinel(s: &Scratch) -> PathBuf {
        let outside = s.0.join("outside");
        fs::create_dir_all(&outside).unwrap();
        fs::write(outside.join("sentinel"), "precious").unwrap();
        outside
    }

    fn untouched(outside: &Path) {
        let names: Vec<_> = fs::read_dir(outside)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(
            names,
            ["sentinel"],
            "something was written outside the root"
        );
        assert_eq!(
            fs::read_to_string(outside.join("sentinel")).unwrap(),
            "precious"
        );
    }

    /// Issue 17 point 3: links planted by the archive itself or already in the next root
    /// (an earlier artifact's) where a later entry's parent, a merge destination's parent or
    /// the staging directory is: the install refuses, naming the entry or path, and nothing
    /// outside the root changes.
    #[test]
    fn planted_links_never_take_a_write_outside_the_root() {
        let s = Scratch::new();
        let t = s.target();
        let outside = sentinel(&s);
        let out = outside.to_str().unwrap();
        // In the archive: `etc -> /outside`, then `etc/passwd`.
        let bytes = Tar::new()
            .symlink("etc", out)
            .file("etc/passwd", b"root::0:0")
            .bytes();
        assert_eq!(
            refusal(unpack(&s.write("a.tar", &bytes), &t)),
            ("etc/passwd".into(), Rule::ThroughSymlink("etc".into()))
        );
        // In the archive: the chain `a -> .`, `b -> a/../..`, then a file below `b`.
        let bytes = Tar::new()
            .symlink("a", ".")
            .symlink("b", "a/../..")
            .file("b/outside/x", b"x")
            .bytes();
        assert_eq!(
            refusal(unpack(&s.write("b.tar", &bytes), &t)).1,
            Rule::LinkDotDotAfterName("a/../..".into())
        );
        untouched(&outside);
        assert!(s.listing().is_empty(), "{:?}", s.listing());
        // In the next root, from an earlier artifact: a link at a merge destination's parent,
        // at the top and one level down.
        fs::create_dir(t.join("usr")).unwrap();
        std::os::unix::fs::symlink(&outside, t.join("etc")).unwrap();
        std::os::unix::fs::symlink(&outside, t.join("usr/lib")).unwrap();
        for (entry, at) in [("etc/passwd", "etc"), ("usr/lib/libc.so", "usr/lib")] {
            let bytes = Tar::new().file(entry, b"x").bytes();
            match unpack(&s.write("c.tar", &bytes), &t) {
                Err(e @ InstallError::Conflict { .. }) => {
                    assert!(e.to_string().contains("symlink"), "{e}");
                    assert!(e.to_string().contains(at), "{e}");
                }
                other => panic!("{entry}: {other:?}"),
            }
        }
        // Where the staging directory of a restarted run would be: the link is removed, its
        // target left alone.
        let stale = format!(".zos-unpack-{}", std::process::id());
        std::os::unix::fs::symlink(&outside, t.join(&stale)).unwrap();
        std::os::unix::fs::symlink(&outside, t.join(format!("{stale}-0000000000000000"))).unwrap();
        let bytes = Tar::new().file("srv/x", b"inside").bytes();
        unpack(&s.write("d.tar", &bytes), &t).unwrap();
        assert_eq!(fs::read(t.join("srv/x")).unwrap(), b"inside");
        assert!(
            !s.listing().iter().any(|l| l.contains(".zos-")),
            "{:?}",
            s.listing()
        );
        untouched(&outside);
    }

    /// The caller opens the target beneath the next root and hands the descriptor over: a
    /// path swapped for a link afterwards is not looked up again (the old `unpack_with(path)`
    /// after the check re-resolved it and wrote through the link).
    #[test]
    fn a_target_swapped_for_a_symlink_after_it_was_opened_is_not_followed() {
        let s = Scratch::new();
        let t = s.target();
        let outside = sentinel(&s);
        let dir = Root::open(&t)
            .unwrap()
            .create_dirs(Path::new("/opt/app"))
            .unwrap();
        fs::rename(t.join("opt/app"), t.join("opt/moved")).unwrap();
        std::os::unix::fs::symlink(&outside, t.join("opt/app")).unwrap();
        let bytes = Tar::new().file("bin/tool", b"x").bytes();
        unpack_into(&s.write("a.tar", &bytes), &dir, &Policy::ROOTFS).unwrap();
        assert_eq!(fs::read(t.join("opt/moved/bin/tool")).unwrap(), b"x");
        untouched(&outside);
    }

    /// A directory of the next root swapped back and forth with a link to outside while
    /// archives merge into it (the window between looking at a path and using it that every
    /// by-path install has): with descriptors, a merge lands inside or fails, never outside.
    #[test]
    fn a_directory_swapped_for_a_symlink_during_installs_is_never_written_through() {
        use std::sync::atomic::{AtomicBool, AtomicU64};
        let s = Scratch::new();
        let t = s.target();
        let outside = sentinel(&s);
        fs::create_dir(t.join("etc")).unwrap();
        std::os::unix::fs::symlink(&outside, t.join("etc.link")).unwrap();
        let mut tar = Tar::new().dir("etc/");
        for i in 0..32 {
            tar = tar.file(&format!("etc/f{i}"), b"x");
        }
        let archive = s.write("etc.tar", &tar.bytes());
        let stop = AtomicBool::new(false);
        let swaps = AtomicU64::new(0);
        let (mut ok, mut failed) = (0, 0);
        std::thread::scope(|scope| {
            scope.spawn(|| {
                let (etc, real, link) = (t.join("etc"), t.join("etc.real"), t.join("etc.link"));
                while !stop.load(Ordering::Relaxed) {
                    let _ = fs::rename(&etc, &real);
                    let _ = fs::rename(&link, &etc);
                    std::thread::yield_now();
                    let _ = fs::rename(&etc, &link);
                    let _ = fs::rename(&real, &etc);
                    swaps.fetch_add(1, Ordering::Relaxed);
                    std::thread::yield_now();
                }
            });
            for _ in 0..60 {
                match unpack(&archive, &t) {
                    Ok(_) => ok += 1,
                    Err(_) => failed += 1,
                }
            }
            stop.store(true, Ordering::Relaxed);
        });
        eprintln!(
            "{ok} installs, {failed} refused, {} swaps",
            swaps.load(Ordering::Relaxed)
        );
        untouched(&outside);
        assert!(swaps.load(Ordering::Relaxed) > 0, "the swaps never ran");
    }

    /// A 255-byte file name (NAME_MAX) cannot be part of its temporary name; it installs.
    #[test]
    fn an_entry_name_of_255_bytes_is_installed() {
        let s = Scratch::new();
        let long = "n".repeat(255);
        // The header's name field holds 100 bytes: a GNU long name.
        let mut b = tar::Builder::new(Vec::new());
        let mut h = Header::new_gnu();
        h.set_size(1);
        h.set_mode(0o644);
        h.set_mtime(0);
        h.set_uid(0);
        h.set_gid(0);
        b.append_data(&mut h, format!("d/{long}"), &b"x"[..])
            .unwrap();
        let archive = s.write("long.tar", &b.into_inner().unwrap());
        unpack(&archive, &s.target()).unwrap();
        assert_eq!(fs::read(s.target().join("d").join(&long)).unwrap(), b"x");
    }
}
