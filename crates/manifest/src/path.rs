//! Path resolution: `~` expansion and joining of manifest targets onto their layer's base
//! directory, and the canonical form every scope check compares
//! ([`canonicalize_lenient`]). It does not decide what is allowed; [`crate::scope`] does.

use std::ffi::OsString;
use std::fs;
use std::io;
use std::path::{Component, Path, PathBuf};

/// Like Linux's `MAXSYMLINKS`: more links than this in one resolution is treated as a loop.
const MAX_SYMLINKS: usize = 40;

/// Why a `~` path could not be expanded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TildeError {
    /// The path starts with `~` but no home directory is known.
    NoHome,
    /// The path starts with `~name`, which would need the user database.
    OtherUser,
}

/// Expands a leading `~` or `~/` to `home`; other paths are returned unchanged.
pub(crate) fn expand_home(path: &Path, home: Option<&Path>) -> Result<PathBuf, TildeError> {
    let mut components = path.components();
    match components.next() {
        Some(Component::Normal(first)) if first == "~" => {
            let home = home.ok_or(TildeError::NoHome)?;
            Ok(home.join(components.as_path()))
        }
        Some(Component::Normal(first)) if first.as_encoded_bytes().starts_with(b"~") => {
            Err(TildeError::OtherUser)
        }
        _ => Ok(path.to_path_buf()),
    }
}

/// Expands `~`, joins a relative path onto `base` and drops `.` components and doubled
/// slashes. `..` is kept: removing it lexically would be wrong across symlinks, so it is
/// left for [`canonicalize_lenient`] to resolve against the real filesystem.
pub(crate) fn resolve_target(
    target: &Path,
    base: &Path,
    home: Option<&Path>,
) -> Result<PathBuf, TildeError> {
    let expanded = expand_home(target, home)?;
    let joined = base.join(expanded);
    Ok(joined.components().collect())
}

/// One step still to walk while resolving a path.
enum Step {
    /// `..`
    Parent,
    /// A name to look up in the directory resolved so far.
    Name(OsString),
}

/// Pushes the steps of `path` (which must not contain a root) onto `stack` so that the
/// first component is popped first.
fn push_steps(stack: &mut Vec<Step>, path: &Path) {
    let steps = path.components().filter_map(|c| match c {
        Component::ParentDir => Some(Step::Parent),
        Component::Normal(name) => Some(Step::Name(name.to_os_string())),
        Component::RootDir | Component::CurDir | Component::Prefix(_) => None,
    });
    let start = stack.len();
    stack.extend(steps);
    stack[start..].reverse();
}

/// The canonical form of an absolute path that may not exist yet: every symlink resolved,
/// no `.` or `..` left.
///
/// The existing part is resolved like `realpath(3)`; the first missing component ends the
/// lookups and the rest is appended as plain names. Every symlink is followed, including a
/// dangling one: `/scope/link -> /outside/new` resolves to `/outside/new`, because that is
/// where a write through `/scope/link` would create the file. `..` is applied to the path
/// resolved so far, never to the text as given, so `/scope/new/../../etc/passwd` is
/// `/etc/passwd` and `/scope/link/..` is the parent of the link's target.
///
/// Errors (permission denied on a lookup, a symlink loop, a relative path) mean the path
/// cannot be judged; scope checks treat them as a refusal.
///
/// The answer is only as current as the filesystem it read: a file tool must still open
/// beneath directory handles so that a symlink swapped in afterwards cannot redirect it.
pub fn canonicalize_lenient(path: &Path) -> io::Result<PathBuf> {
    if !path.is_absolute() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} is not an absolute path", path.display()),
        ));
    }
    // The common case (the path exists) in one system call.
    if let Ok(canonical) = fs::canonicalize(path) {
        return Ok(canonical);
    }

    let mut stack = Vec::new();
    push_steps(&mut stack, path);
    let mut resolved = PathBuf::from("/");
    // How many trailing components of `resolved` are known not to exist. While it is
    // non-zero no lookups happen: nothing can exist below a missing directory.
    let mut missing = 0usize;
    let mut symlinks = 0usize;

    while let Some(step) = stack.pop() {
        match step {
            Step::Parent => {
                // `resolved` holds no symlinks, so its lexical parent is its real parent.
                resolved.pop();
                missing = missing.saturating_sub(1);
            }
            Step::Name(name) => {
                let candidate = resolved.join(&name);
                if missing > 0 {
                    resolved = candidate;
                    missing += 1;
                    continue;
                }
                match fs::symlink_metadata(&candidate) {
                    Ok(meta) if meta.file_type().is_symlink() => {
                        symlinks += 1;
                        if symlinks > MAX_SYMLINKS {
                            return Err(io::Error::new(
                                io::ErrorKind::InvalidInput,
                                format!(
                                    "too many levels of symbolic links resolving {}",
                                    path.display()
                                ),
                            ));
                        }
                        let link = fs::read_link(&candidate)?;
                        if link.is_absolute() {
                            resolved = PathBuf::from("/");
                        }
                        // A relative link is relative to the directory holding it, which
                        // is `resolved` as it stands.
                        push_steps(&mut stack, &link);
                    }
                    Ok(_) => resolved = candidate,
                    Err(err)
                        if matches!(
                            err.kind(),
                            io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
                        ) =>
                    {
                        resolved = candidate;
                        missing = 1;
                    }
                    Err(err) => return Err(err),
                }
            }
        }
    }
    Ok(resolved)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn canonical_tempdir() -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let root = fs::canonicalize(dir.path()).unwrap();
        (dir, root)
    }

    #[test]
    fn tilde_expands_to_home_only_at_the_start() {
        let home = Path::new("/home/u");
        assert_eq!(
            expand_home(Path::new("~"), Some(home)).unwrap(),
            PathBuf::from("/home/u")
        );
        assert_eq!(
            expand_home(Path::new("~/.npm"), Some(home)).unwrap(),
            PathBuf::from("/home/u/.npm")
        );
        assert_eq!(
            expand_home(Path::new("a/~"), Some(home)).unwrap(),
            PathBuf::from("a/~")
        );
        assert_eq!(expand_home(Path::new("~/x"), None), Err(TildeError::NoHome));
        assert_eq!(
            expand_home(Path::new("~bob/x"), Some(home)),
            Err(TildeError::OtherUser)
        );
    }

    #[test]
    fn resolve_target_joins_relative_and_keeps_dotdot() {
        let base = Path::new("/repo");
        assert_eq!(
            resolve_target(Path::new("./src//lib"), base, None).unwrap(),
            PathBuf::from("/repo/src/lib")
        );
        assert_eq!(
            resolve_target(Path::new("../other"), base, None).unwrap(),
            PathBuf::from("/repo/../other")
        );
        assert_eq!(
            resolve_target(Path::new("/abs"), base, None).unwrap(),
            PathBuf::from("/abs")
        );
    }

    #[test]
    fn missing_tail_is_appended_to_the_canonical_prefix() {
        let (_dir, root) = canonical_tempdir();
        fs::create_dir(root.join("real")).unwrap();
        symlink(root.join("real"), root.join("alias")).unwrap();
        assert_eq!(
            canonicalize_lenient(&root.join("alias/a/b/c.txt")).unwrap(),
            root.join("real/a/b/c.txt")
        );
    }

    #[test]
    fn dotdot_in_the_missing_tail_climbs_from_the_real_path() {
        let (_dir, root) = canonical_tempdir();
        fs::create_dir(root.join("scope")).unwrap();
        assert_eq!(
            canonicalize_lenient(&root.join("scope/new/../../x")).unwrap(),
            root.join("x")
        );
        // Climbing above `/` stays at `/`, as the kernel does.
        let deep = root
            .join("scope/new")
            .join("../".repeat(64))
            .join("etc/passwd");
        assert_eq!(
            canonicalize_lenient(&deep).unwrap(),
            PathBuf::from("/etc/passwd")
        );
    }

    #[test]
    fn dangling_symlink_resolves_to_where_it_points() {
        let (_dir, root) = canonical_tempdir();
        symlink(root.join("elsewhere/new.txt"), root.join("dangling")).unwrap();
        assert_eq!(
            canonicalize_lenient(&root.join("dangling")).unwrap(),
            root.join("elsewhere/new.txt")
        );
        // A relative dangling link is relative to its own directory.
        fs::create_dir(root.join("d")).unwrap();
        symlink("../up/file", root.join("d/rel")).unwrap();
        assert_eq!(
            canonicalize_lenient(&root.join("d/rel")).unwrap(),
            root.join("up/file")
        );
    }

    #[test]
    fn symlink_loops_are_errors() {
        let (_dir, root) = canonical_tempdir();
        symlink(root.join("b"), root.join("a")).unwrap();
        symlink(root.join("a"), root.join("b")).unwrap();
        assert!(canonicalize_lenient(&root.join("a/x")).is_err());
    }

    #[test]
    fn relative_paths_are_errors() {
        assert!(canonicalize_lenient(Path::new("relative/x")).is_err());
    }
}
