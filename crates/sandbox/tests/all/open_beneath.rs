//! Opening beneath a directory handle: symlinks and `..` below a handle are refused, and
//! a file replaced through a handle is written whole, keeping its permission bits. (The
//! scope checks on top, and the swap-after-check races, are tested in `tools`.)

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};

use sandbox::beneath::{BeneathError, DirHandle};

/// A canonical temp dir with `scope/` and `outside/` (holding `secret.txt`).
struct Fixture {
    _dir: tempfile::TempDir,
    scope: PathBuf,
    outside: PathBuf,
}

impl Fixture {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let root = fs::canonicalize(dir.path()).unwrap();
        let scope = root.join("scope");
        let outside = root.join("outside");
        fs::create_dir(&scope).unwrap();
        fs::create_dir(&outside).unwrap();
        fs::write(outside.join("secret.txt"), "TOP SECRET\n").unwrap();
        Fixture {
            _dir: dir,
            scope,
            outside,
        }
    }
}

#[test]
fn handles_refuse_symlinks_and_dotdot_beneath_them() {
    let fx = Fixture::new();
    fs::write(fx.scope.join("a.txt"), "a\n").unwrap();
    symlink(fx.outside.join("secret.txt"), fx.scope.join("link")).unwrap();
    let dir = DirHandle::open_canonical(&fx.scope).unwrap();
    assert_eq!(dir.path(), fx.scope);
    dir.open_file(Path::new("a.txt")).unwrap();
    for rel in ["link", "../outside/secret.txt"] {
        let e = dir.open_file(Path::new(rel)).unwrap_err();
        assert!(matches!(e, BeneathError::Raced { .. }), "{rel}: {e}");
    }
    let e = DirHandle::open_canonical(&fx.scope.join("link")).unwrap_err();
    assert!(matches!(e, BeneathError::Raced { .. }), "{e}");
}

#[test]
fn a_replaced_file_is_whole_and_keeps_its_mode() {
    let fx = Fixture::new();
    let dir = DirHandle::open_canonical(&fx.scope).unwrap();
    dir.create_dir(Path::new("d")).unwrap();
    // Creating it again (a concurrent creation) is fine.
    dir.create_dir(Path::new("d")).unwrap();
    let d = dir
        .open_dir(Path::new("d"))
        .unwrap()
        .open_writable()
        .unwrap();
    assert_eq!(d.path(), fx.scope.join("d"));

    let first = d.replace_file(Path::new("f.sh"), b"one").unwrap();
    assert!(first.created);
    assert_eq!(first.size, 3);
    fs::set_permissions(fx.scope.join("d/f.sh"), fs::Permissions::from_mode(0o750)).unwrap();
    let second = d.replace_file(Path::new("f.sh"), b"second").unwrap();
    assert!(!second.created);
    assert_eq!(
        fs::read_to_string(fx.scope.join("d/f.sh")).unwrap(),
        "second"
    );
    let mode = fs::metadata(fx.scope.join("d/f.sh"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o750);
    // No temporary file is left behind.
    assert_eq!(fs::read_dir(fx.scope.join("d")).unwrap().count(), 1);

    symlink(fx.outside.join("secret.txt"), fx.scope.join("d/link")).unwrap();
    let e = d.replace_file(Path::new("link"), b"escaped").unwrap_err();
    assert!(matches!(e, BeneathError::Raced { .. }), "{e}");
    assert_eq!(
        fs::read_to_string(fx.outside.join("secret.txt")).unwrap(),
        "TOP SECRET\n"
    );
    let e = d.replace_file(Path::new("."), b"x").unwrap_err();
    assert!(matches!(e, BeneathError::IsDirectory { .. }), "{e}");
}
