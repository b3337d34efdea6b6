//! Which claims overlap: equal, ancestor, descendant and sibling roots, and aliases of one
//! directory through a symlink, `..` and a bind mount (made in a private mount namespace
//! of a helper process, so the host never sees it).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::registry_support;

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use pod::runtime::pod_registry::{LockFileGuard, RegistryError};
use registry_support::{Fixture, Helper, entry_for_me, report, role, var, write};

/// Entry point of helper processes; see `registry_support`.
#[test]
#[ignore = "runs only as a helper process of the other tests"]
fn child_role() {
    let role = role().expect("child_role runs only as a helper process");
    match role.as_str() {
        "bind_mount" => bind_mount_cases(Path::new(&var("POD_TEST_ROOT"))),
        other => panic!("unknown helper role {other}"),
    }
}

/// What claiming `second` after `first` should give.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// Refused; the canonical paths show it.
    Conflict,
    /// Refused; only directory identities show it.
    AliasConflict,
    /// Both granted.
    Granted,
}

/// Claims `first` for pod "first" and `second` for pod "second" in a fresh registry
/// under `root` and checks the outcome.
fn check(root: &Path, case: &str, first: &Path, second: &Path, expect: Expect) {
    let registry = root.join(format!("run-{case}/pods.json"));
    let mut guard = LockFileGuard::open(&registry).unwrap();
    guard
        .claim(entry_for_me("first", vec![write(first)]))
        .unwrap();
    let got = guard.claim(entry_for_me("second", vec![write(second)]));
    let outcome = match &got {
        Ok(()) => Expect::Granted,
        Err(RegistryError::ScopeConflict {
            holder, via_alias, ..
        }) => {
            assert_eq!(holder, "first", "{case}");
            if *via_alias {
                Expect::AliasConflict
            } else {
                Expect::Conflict
            }
        }
        Err(e) => panic!("{case}: unexpected error {e}"),
    };
    assert_eq!(
        outcome,
        expect,
        "{case}: {} then {}: {got:?}",
        first.display(),
        second.display()
    );
}

#[test]
fn overlap_table() {
    let fx = Fixture::new();
    let repo = fx.dir("repo");
    let src = fx.dir("repo/src");
    let docs = fx.dir("repo/docs");
    std::os::unix::fs::symlink(&src, fx.root.join("src-link")).unwrap();
    let cases: [(&str, PathBuf, PathBuf, Expect); 9] = [
        ("equal", src.clone(), src.clone(), Expect::Conflict),
        ("ancestor", src.clone(), repo.clone(), Expect::Conflict),
        (
            "descendant",
            repo.clone(),
            src.join("a/b"),
            Expect::Conflict,
        ),
        ("siblings", src.clone(), docs.clone(), Expect::Granted),
        (
            "name-prefix sibling",
            src.clone(),
            repo.join("src2"),
            Expect::Granted,
        ),
        (
            "symlinked alias",
            src.clone(),
            fx.root.join("src-link"),
            Expect::Conflict,
        ),
        (
            "symlinked alias, below",
            src.clone(),
            fx.root.join("src-link/new/dir"),
            Expect::Conflict,
        ),
        (
            "dotdot alias",
            src.clone(),
            docs.join("../src"),
            Expect::Conflict,
        ),
        (
            "dotdot through a missing dir",
            repo.clone(),
            fx.root.join("elsewhere/missing/../../repo/x"),
            Expect::Conflict,
        ),
    ];
    for (case, first, second, expect) in cases {
        check(&fx.root, &case.replace(' ', "-"), &first, &second, expect);
    }
}

#[test]
fn bind_mount_alias_is_a_conflict() {
    let fx = Fixture::new();
    let mut helper = Helper::spawn(module_path!(), "bind_mount", &[("POD_TEST_ROOT", &fx.root)]);
    match helper.expect("RESULT").as_str() {
        "ok" => {}
        "skipped" => {
            // Only without the privilege to make a mount namespace (not root in CI).
            // SAFETY: getuid has no preconditions.
            assert_ne!(unsafe { libc::getuid() }, 0, "root must be able to unshare");
            test_support::loud(
                "!!! SKIPPED the bind-mount alias case: this user cannot make a mount namespace (run as root to check it)",
            );
        }
        other => panic!("bind mount helper: {other}"),
    }
    assert!(helper.wait().success());
    // The mount never reached this namespace.
    assert!(
        std::fs::read_dir(fx.root.join("alias"))
            .unwrap()
            .next()
            .is_none(),
        "the bind mount leaked out of the helper's namespace"
    );
}

fn cstr(path: &Path) -> CString {
    CString::new(path.as_os_str().as_bytes()).unwrap()
}

/// In the helper: a private mount namespace, `alias` bound onto `real`, `holder/m`
/// bound onto `real` too, then the claims.
fn bind_mount_cases(root: &Path) {
    let real = root.join("real");
    let alias = root.join("alias");
    let holder = root.join("holder");
    for dir in [
        real.join("x/deep"),
        real.join("y"),
        alias.clone(),
        holder.join("m"),
    ] {
        std::fs::create_dir_all(dir).unwrap();
    }
    // SAFETY: plain system calls on valid NUL-terminated paths. unshare(CLONE_NEWNS) moves
    // this thread into a new mount namespace; everything below runs on this thread.
    unsafe {
        if libc::unshare(libc::CLONE_NEWNS) != 0 {
            let err = std::io::Error::last_os_error();
            if err.raw_os_error() == Some(libc::EPERM) {
                report("RESULT skipped");
                return;
            }
            panic!("unshare: {err}");
        }
        // Nothing mounted from here on propagates back to the host.
        let slash = cstr(Path::new("/"));
        let rc = libc::mount(
            std::ptr::null(),
            slash.as_ptr(),
            std::ptr::null(),
            libc::MS_REC | libc::MS_PRIVATE,
            std::ptr::null(),
        );
        assert_eq!(rc, 0, "make / private: {}", std::io::Error::last_os_error());
        for target in [&alias, &holder.join("m")] {
            let (src, dst) = (cstr(&real), cstr(target));
            let rc = libc::mount(
                src.as_ptr(),
                dst.as_ptr(),
                std::ptr::null(),
                libc::MS_BIND,
                std::ptr::null(),
            );
            assert_eq!(rc, 0, "bind mount: {}", std::io::Error::last_os_error());
        }
    }
    assert!(
        alias.join("x/deep").is_dir(),
        "the bind mount is not visible"
    );

    let x = real.join("x");
    // The alias is the parent of the held root: an ancestor through a mount.
    check(root, "bind-ancestor", &x, &alias, Expect::AliasConflict);
    // Equal and descendant through the mount.
    check(
        root,
        "bind-equal",
        &x,
        &alias.join("x"),
        Expect::AliasConflict,
    );
    check(
        root,
        "bind-descendant",
        &x,
        &alias.join("x/deep"),
        Expect::AliasConflict,
    );
    // The other way round: the held root is reached through the mount.
    check(
        root,
        "bind-held-alias",
        &alias.join("x"),
        &x.join("deep"),
        Expect::AliasConflict,
    );
    // A sibling through the mount is still a sibling.
    check(root, "bind-sibling", &x, &alias.join("y"), Expect::Granted);
    // A root with a mount point of the held directory inside it.
    check(root, "mount-inside", &x, &holder, Expect::AliasConflict);
    report("RESULT ok");
}
