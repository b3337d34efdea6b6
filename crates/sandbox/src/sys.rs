//! Thin wrappers over the Linux system calls the sandbox needs: the mount API, Landlock,
//! capability sets, `prctl`s and `pidfd_open`. Where rustix wraps a call safely it makes
//! it (`open_tree`, `move_mount`, `mount`, capabilities, `prctl`, `pidfd_open`, `pipe2`);
//! the `landlock` crate builds and enforces the Landlock ruleset; what neither wraps stays
//! a raw `libc` call here: `mount_setattr`, the Landlock ABI query, `keyctl` and the
//! loopback `ioctl`. Each returns `io::Error` from `errno`; callers add
//! what they were doing when it failed ([`SetupError`]).

use std::ffi::{CStr, CString};
use std::fmt;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use landlock::{
    AccessFs, AccessNet, BitFlags, CompatLevel, Compatible, PathBeneath, PathFd, PathFdError,
    Ruleset as LlRuleset, RulesetAttr, RulesetCreated, RulesetCreatedAttr, RulesetError, Scope,
};

use rustix::fs::CWD;
use rustix::io::Errno;
use rustix::mount::{
    MountFlags, MountPropagationFlags, MoveMountFlags, OpenTreeFlags, UnmountFlags,
};
use rustix::pipe::PipeFlags;
use rustix::process::{Pid, PidfdFlags, Signal};
use rustix::thread::{CapabilitiesSecureBits, CapabilitySet, CapabilitySets};

/// A failed sandbox step: what was being done, with which system call, and the errno.
#[derive(Debug)]
pub(crate) struct SetupError {
    /// What the helper was doing, e.g. `make / read-only`.
    pub what: String,
    /// The system call (or operation) that failed, e.g. `mount_setattr`.
    pub call: &'static str,
    /// The error it returned.
    pub source: io::Error,
}

impl SetupError {
    /// A failed step with its call and error.
    pub(crate) fn new(what: impl Into<String>, call: &'static str, source: io::Error) -> Self {
        SetupError {
            what: what.into(),
            call,
            source,
        }
    }
}

impl fmt::Display for SetupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "sandbox: cannot {} ({}): {}",
            self.what,
            self.call,
            errno_text(&self.source)
        )
    }
}

/// `EPERM (Operation not permitted)` for an OS error, the plain message otherwise, so
/// errors name the errno a person would search for.
pub(crate) fn errno_text(err: &io::Error) -> String {
    let Some(code) = err.raw_os_error() else {
        return err.to_string();
    };
    let name = match code {
        libc::EPERM => "EPERM",
        libc::ENOENT => "ENOENT",
        libc::ESRCH => "ESRCH",
        libc::EINTR => "EINTR",
        libc::EIO => "EIO",
        libc::E2BIG => "E2BIG",
        libc::EBADF => "EBADF",
        libc::ECHILD => "ECHILD",
        libc::EAGAIN => "EAGAIN",
        libc::ENOMEM => "ENOMEM",
        libc::EACCES => "EACCES",
        libc::EFAULT => "EFAULT",
        libc::EBUSY => "EBUSY",
        libc::EEXIST => "EEXIST",
        libc::EXDEV => "EXDEV",
        libc::ENOTDIR => "ENOTDIR",
        libc::EISDIR => "EISDIR",
        libc::EINVAL => "EINVAL",
        libc::EMFILE => "EMFILE",
        libc::ENOSPC => "ENOSPC",
        libc::EROFS => "EROFS",
        libc::ENAMETOOLONG => "ENAMETOOLONG",
        libc::ENOSYS => "ENOSYS",
        libc::ELOOP => "ELOOP",
        libc::EOPNOTSUPP => "EOPNOTSUPP",
        libc::EUSERS => "EUSERS",
        _ => return err.to_string(),
    };
    let plain = io::Error::from_raw_os_error(code).to_string();
    // std formats it as "Operation not permitted (os error 1)"; keep the words only.
    let words = plain.split(" (os error").next().unwrap_or(&plain);
    format!("{name} ({words})")
}

/// The last OS error.
fn last() -> io::Error {
    io::Error::last_os_error()
}

/// `Ok(())` when a C-style call returned 0 or more, the errno otherwise.
fn check(ret: libc::c_long) -> io::Result<libc::c_long> {
    if ret < 0 { Err(last()) } else { Ok(ret) }
}

/// A path as a C string (paths with NUL bytes cannot name a file).
pub(crate) fn cpath(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes()).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} contains a NUL byte", path.display()),
        )
    })
}

// ---------------------------------------------------------------------------------------
// The new mount API.

/// `AT_RECURSIVE` (linux/fcntl.h): apply to the whole mount tree (`mount_setattr`,
/// which rustix does not wrap yet).
const AT_RECURSIVE: libc::c_uint = 0x8000;
/// `MOUNT_ATTR_RDONLY`.
const MOUNT_ATTR_RDONLY: u64 = 1;

/// `struct mount_attr` (version 0, 32 bytes).
#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

/// A detached recursive copy of the mount tree at `path` (`open_tree(OPEN_TREE_CLONE |
/// AT_RECURSIVE)`), to attach elsewhere or later with [`attach`].
pub(crate) fn clone_tree(path: &CStr) -> io::Result<OwnedFd> {
    let flags = OpenTreeFlags::OPEN_TREE_CLONE
        | OpenTreeFlags::AT_RECURSIVE
        | OpenTreeFlags::OPEN_TREE_CLOEXEC;
    Ok(rustix::mount::open_tree(CWD, path, flags)?)
}

/// Attaches a detached mount tree (from [`clone_tree`]) on `target`.
pub(crate) fn attach(tree: &OwnedFd, target: &CStr) -> io::Result<()> {
    Ok(rustix::mount::move_mount(
        tree,
        c"",
        CWD,
        target,
        MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH,
    )?)
}

/// Makes every mount of a tree read-only: the tree at `path`, or (with `path` empty) the
/// detached tree `fd` refers to.
fn set_readonly_at(dirfd: libc::c_int, path: &CStr, extra_flags: libc::c_uint) -> io::Result<()> {
    let attr = MountAttr {
        attr_set: MOUNT_ATTR_RDONLY,
        attr_clr: 0,
        propagation: 0,
        userns_fd: 0,
    };
    // SAFETY: path is a valid C string and attr a properly sized mount_attr.
    check(unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            dirfd,
            path.as_ptr(),
            AT_RECURSIVE | extra_flags,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    })?;
    Ok(())
}

/// Makes the mount tree at `path` read-only, recursively.
pub(crate) fn set_readonly(path: &CStr) -> io::Result<()> {
    set_readonly_at(libc::AT_FDCWD, path, 0)
}

/// Makes a detached mount tree read-only, recursively.
pub(crate) fn set_tree_readonly(tree: &OwnedFd) -> io::Result<()> {
    set_readonly_at(tree.as_raw_fd(), c"", libc::AT_EMPTY_PATH as libc::c_uint)
}

/// Mounts a fresh filesystem of type `fstype` (`tmpfs`, `proc`; also its source name)
/// on `target`, with `flags` and optional `data`.
pub(crate) fn mount_fs(
    fstype: &CStr,
    target: &CStr,
    flags: MountFlags,
    data: Option<&CStr>,
) -> io::Result<()> {
    Ok(rustix::mount::mount(fstype, target, fstype, flags, data)?)
}

/// Makes the mount tree at `target` private, recursively: nothing mounted in it from
/// here on propagates to the mount namespace it was copied from.
pub(crate) fn make_private(target: &CStr) -> io::Result<()> {
    Ok(rustix::mount::mount_change(
        target,
        MountPropagationFlags::REC | MountPropagationFlags::PRIVATE,
    )?)
}

/// Detaches the top mount on `target` (`umount2(MNT_DETACH)`).
pub(crate) fn detach_mount(target: &CStr) -> io::Result<()> {
    Ok(rustix::mount::unmount(target, UnmountFlags::DETACH)?)
}

// ---------------------------------------------------------------------------------------
// Landlock.
//
// The ruleset is built with the `landlock` crate, set to a hard requirement throughout:
// the helper only asks for what the ABI it measured offers, so any right the crate would
// otherwise drop silently is an error here, as it was with the raw calls. The ABI number
// itself stays a raw query ([`landlock_abi`]): the crate does not expose it, and the helper
// needs it to choose (TCP rules from 4, scopes from 6, "needs ABI 4").

/// `LANDLOCK_CREATE_RULESET_VERSION`.
const CREATE_RULESET_VERSION: libc::c_uint = 1;

/// Landlock filesystem access rights, listed by name (not `AccessFs::from_write`, which
/// grows with the crate: from ABI 5 it adds `IOCTL_DEV`, which the helper leaves free).
pub(crate) mod access {
    use landlock::{AccessFs, BitFlags, make_bitflags};

    /// Every right that changes the filesystem, for the given ABI.
    pub(crate) fn writes(abi: u32) -> BitFlags<AccessFs> {
        let mut all = make_bitflags!(AccessFs::{
            WriteFile | RemoveDir | RemoveFile | MakeChar | MakeDir | MakeReg | MakeSock
                | MakeFifo | MakeBlock | MakeSym
        });
        if abi >= 2 {
            // Link or rename into another directory.
            all |= AccessFs::Refer;
        }
        if abi >= 3 {
            all |= AccessFs::Truncate;
        }
        all
    }

    /// The rights that make sense on a file (not a directory) rule.
    pub(crate) const FILE_RIGHTS: BitFlags<AccessFs> =
        make_bitflags!(AccessFs::{WriteFile | Truncate});
}

/// The Landlock ABI version the kernel supports (an error when Landlock is unavailable).
pub(crate) fn landlock_abi() -> io::Result<u32> {
    // SAFETY: a NULL attr with size 0 and the VERSION flag only queries the version.
    let ret = check(unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<u8>(),
            0usize,
            CREATE_RULESET_VERSION,
        )
    })?;
    Ok(ret as u32)
}

/// The errno behind a `landlock` crate error, so setup messages name it as before; the
/// crate's own text for what is not a system call (a right the ABI lacks).
fn landlock_error(err: RulesetError) -> io::Error {
    use landlock::{
        AddRuleError, AddRulesError, CreateRulesetError, PathBeneathError, RestrictSelfError,
    };
    match err {
        RulesetError::CreateRuleset(CreateRulesetError::CreateRulesetCall { source, .. })
        | RulesetError::AddRules(AddRulesError::Fs(AddRuleError::AddRuleCall { source, .. }))
        | RulesetError::AddRules(AddRulesError::Fs(AddRuleError::Compat(
            landlock::CompatError::PathBeneath(PathBeneathError::StatCall { source, .. }),
        )))
        | RulesetError::RestrictSelf(RestrictSelfError::RestrictSelfCall { source, .. }) => source,
        other => io::Error::other(other),
    }
}

/// A Landlock ruleset being built: handles every write right (reads stay free), and
/// scopes signals and abstract Unix sockets where the ABI allows.
pub(crate) struct Ruleset {
    inner: RulesetCreated,
    handled: BitFlags<AccessFs>,
}

impl Ruleset {
    /// A ruleset for `abi` (from [`landlock_abi`]); with `deny_tcp` (ABI ≥ 4) every TCP
    /// bind and connect is refused too, since no net rule is ever added.
    pub(crate) fn new(abi: u32, deny_tcp: bool) -> io::Result<Self> {
        let handled = access::writes(abi);
        let mut ruleset = LlRuleset::default()
            .set_compatibility(CompatLevel::HardRequirement)
            .handle_access(handled)
            .map_err(landlock_error)?;
        if deny_tcp && abi >= 4 {
            ruleset = ruleset
                .handle_access(AccessNet::BindTcp | AccessNet::ConnectTcp)
                .map_err(landlock_error)?;
        }
        if abi >= 6 {
            ruleset = ruleset
                .scope(Scope::AbstractUnixSocket | Scope::Signal)
                .map_err(landlock_error)?;
        }
        // no_new_privs is set by the child itself (with its own error message) just
        // before it restricts itself.
        let inner = ruleset
            .create()
            .map_err(landlock_error)?
            .no_new_privs(false);
        Ok(Ruleset { inner, handled })
    }

    /// Allows `rights` (masked to what the ruleset handles, and to file rights when the
    /// path is not a directory) beneath `path`.
    pub(crate) fn allow(&mut self, path: &CStr, rights: BitFlags<AccessFs>) -> io::Result<()> {
        let path = Path::new(std::ffi::OsStr::from_bytes(path.to_bytes()));
        let target = PathFd::new(path).map_err(|e| match e {
            PathFdError::OpenCall { source, .. } => source,
            other => io::Error::other(other),
        })?;
        // Masked here rather than by the crate, which under a hard requirement refuses
        // directory rights on a file instead of dropping them.
        let mut allowed = rights & self.handled;
        let mode = rustix::fs::fstat(&target)?.st_mode;
        if !rustix::fs::FileType::from_raw_mode(mode).is_dir() {
            allowed &= access::FILE_RIGHTS;
        }
        if allowed.is_empty() {
            return Ok(());
        }
        (&mut self.inner)
            .add_rule(PathBeneath::new(target, allowed))
            .map_err(landlock_error)?;
        Ok(())
    }

    /// Enforces the ruleset on the calling thread (and so on what it execs). Needs
    /// `no_new_privs` (see [`set_no_new_privs`]).
    pub(crate) fn restrict_self(self) -> io::Result<()> {
        self.inner.restrict_self().map_err(landlock_error)?;
        Ok(())
    }
}

/// Brings the loopback interface of the current network namespace up (a new network
/// namespace starts with `lo` down). Needs `CAP_NET_ADMIN` there.
pub(crate) fn bring_up_loopback() -> io::Result<()> {
    // SAFETY: socket with constant arguments; the fd is owned right after.
    let raw = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if raw < 0 {
        return Err(last());
    }
    // SAFETY: a fresh fd we own.
    let sock = unsafe { OwnedFd::from_raw_fd(raw) };
    // SAFETY: ifreq is plain old data; all-zero is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(b"lo\0") {
        *dst = *src as libc::c_char;
    }
    // SAFETY: a valid socket and ifreq; the kernel fills in the flags.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) } < 0 {
        return Err(last());
    }
    // SAFETY: the flags member is the one SIOCGIFFLAGS set.
    unsafe {
        req.ifr_ifru.ifru_flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
    }
    // SAFETY: a valid socket and ifreq.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &req) } < 0 {
        return Err(last());
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Privileges and processes.

/// Sets `no_new_privs`: setuid bits and file capabilities stop working from here on.
pub(crate) fn set_no_new_privs() -> io::Result<()> {
    Ok(rustix::thread::set_no_new_privs(true)?)
}

/// Joins a new anonymous session keyring, so the keys the pod's session keyring holds
/// are no longer possessed (and so not readable). Kernels without keys support have
/// nothing to leak, and where a seccomp filter refuses `keyctl` (Docker's default
/// profile does) the command cannot reach any keyring either.
pub(crate) fn join_new_session_keyring() -> io::Result<()> {
    const KEYCTL_JOIN_SESSION_KEYRING: libc::c_long = 1;
    // SAFETY: keyctl with a NULL name creates and joins an anonymous keyring.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_keyctl,
            KEYCTL_JOIN_SESSION_KEYRING,
            std::ptr::null::<libc::c_char>(),
        )
    };
    match check(rc) {
        Err(e) if matches!(e.raw_os_error(), Some(libc::ENOSYS | libc::EPERM)) => Ok(()),
        other => other.map(|_| ()),
    }
}

/// Asks for SIGKILL when the parent dies.
pub(crate) fn kill_me_when_parent_dies() -> io::Result<()> {
    Ok(rustix::process::set_parent_process_death_signal(Some(
        Signal::KILL,
    ))?)
}

/// Makes this process the reaper of its orphaned descendants.
pub(crate) fn set_child_subreaper() -> io::Result<()> {
    // The kernel only asks for a non-zero argument; rustix takes it as a pid.
    Ok(rustix::process::set_child_subreaper(Some(
        rustix::process::getpid(),
    ))?)
}

/// Drops every capability for good: securebits so that uid 0 gains none on exec, an
/// empty bounding set, no ambient set, and empty effective/permitted/inheritable sets.
///
/// Inside the user namespace the helper holds all capabilities, and a command running
/// as uid 0 would keep them across exec; with them it could undo the read-only mounts.
pub(crate) fn drop_all_capabilities() -> io::Result<()> {
    if !rustix::thread::capabilities(None)?.permitted.is_empty() {
        rustix::thread::set_capabilities_secure_bits(
            CapabilitiesSecureBits::NO_ROOT
                | CapabilitiesSecureBits::NO_ROOT_LOCKED
                | CapabilitiesSecureBits::NO_SETUID_FIXUP
                | CapabilitiesSecureBits::NO_SETUID_FIXUP_LOCKED
                | CapabilitiesSecureBits::KEEP_CAPS_LOCKED,
        )?;
        // By number, not by rustix's list of names: a kernel newer than rustix may know
        // capabilities it has no name for, and those must go too.
        for cap in 0..64 {
            match rustix::thread::remove_capability_from_bounding_set(
                CapabilitySet::from_bits_retain(1 << cap),
            ) {
                Ok(()) => {}
                // EINVAL: past the last capability this kernel knows.
                Err(Errno::INVAL) => break,
                Err(e) => return Err(e.into()),
            }
        }
    }
    rustix::thread::clear_ambient_capability_set()?;
    let none = CapabilitySets {
        effective: CapabilitySet::empty(),
        permitted: CapabilitySet::empty(),
        inheritable: CapabilitySet::empty(),
    };
    Ok(rustix::thread::set_capabilities(None, none)?)
}

/// A pollable fd that becomes readable when process `pid` exits.
pub(crate) fn pidfd_open(pid: Pid) -> io::Result<OwnedFd> {
    Ok(rustix::process::pidfd_open(pid, PidfdFlags::empty())?)
}

/// A close-on-exec pipe: (read end, write end).
pub(crate) fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    Ok(rustix::pipe::pipe_with(PipeFlags::CLOEXEC)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errno_text_names_the_errno_and_its_words() {
        let err = io::Error::from_raw_os_error(libc::EPERM);
        assert_eq!(errno_text(&err), "EPERM (Operation not permitted)");
        let other = io::Error::other("custom");
        assert_eq!(errno_text(&other), "custom");
    }

    #[test]
    fn setup_error_says_what_which_call_and_errno() {
        let err = SetupError::new(
            "make / read-only",
            "mount_setattr",
            io::Error::from_raw_os_error(libc::EPERM),
        );
        assert_eq!(
            err.to_string(),
            "sandbox: cannot make / read-only (mount_setattr): EPERM (Operation not permitted)"
        );
    }

    #[test]
    fn write_rights_grow_with_the_abi() {
        use landlock::AccessFs;
        assert!(!access::writes(1).contains(AccessFs::Refer));
        assert!(access::writes(2).contains(AccessFs::Refer));
        assert!(!access::writes(2).contains(AccessFs::Truncate));
        assert!(access::writes(3).contains(AccessFs::Truncate));
    }

    #[test]
    fn write_rights_are_the_raw_bits_of_before() {
        // The bits the hand-written ruleset handled (linux/landlock.h): WRITE_FILE (1 << 1),
        // REMOVE_DIR .. MAKE_SYM (1 << 4 .. 1 << 12), REFER (1 << 13), TRUNCATE (1 << 14);
        // never IOCTL_DEV (1 << 15), whatever the ABI.
        let v1: u64 = (1 << 1) | (0x1ff << 4);
        assert_eq!(access::writes(1).bits(), v1);
        assert_eq!(access::writes(2).bits(), v1 | (1 << 13));
        for abi in 3..=9 {
            assert_eq!(access::writes(abi).bits(), v1 | (1 << 13) | (1 << 14));
        }
        assert_eq!(access::FILE_RIGHTS.bits(), (1 << 1) | (1 << 14));
    }

    #[test]
    fn rules_on_files_keep_only_file_rights_under_the_hard_requirement() {
        // Without the masking in `allow`, the crate would refuse directory rights on a
        // file (hard requirement); the helper allows every write on each device this way.
        let Ok(abi) = landlock_abi() else {
            return; // No Landlock on this kernel: nothing to build.
        };
        let mut ruleset = Ruleset::new(abi, abi >= 4).unwrap();
        ruleset.allow(c"/dev/null", access::writes(abi)).unwrap();
        ruleset.allow(c"/tmp", access::writes(abi)).unwrap();
        let missing = ruleset.allow(c"/nonexistent-pods-test", access::writes(abi));
        assert_eq!(
            missing.unwrap_err().raw_os_error(),
            Some(libc::ENOENT),
            "the helper skips missing paths by this errno"
        );
    }

    #[test]
    fn paths_with_nul_bytes_are_refused() {
        use std::os::unix::ffi::OsStrExt;
        let bad = Path::new(std::ffi::OsStr::from_bytes(b"/a\0b"));
        assert!(cpath(bad).is_err());
        assert_eq!(cpath(Path::new("/a")).unwrap().as_bytes(), b"/a");
    }
}
