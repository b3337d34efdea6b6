//! Do two write grants overlap? Compared twice: on canonical paths, and on the identity
//! (device, inode) of every existing directory along each root, so that `..`, symlinks
//! and bind-mount aliases of one directory are recognised as the same directory.
//!
//! Each root is described by its *anchors*: for every existing ancestor-or-self `A` of
//! its canonical path, the pair (identity of `A`, the rest of the path below `A`). Two
//! roots reached through different paths share an anchor exactly when some directory on
//! one path is some directory on the other; below a shared anchor the rests compare like
//! plain paths. A recursive root also anchors every mount point strictly inside it (with
//! an empty rest, as it covers all of it), so a claim of `/mnt` sees that `/mnt/x`, a bind
//! mount of someone's `/repo`, is `/repo`.
//!
//! What a rule covers: a recursive rule its target and everything below; a non-recursive
//! rule its target and the target's direct children (as [`manifest::Scope`] reads it).
//! Two rules conflict when these sets share a path. So a non-recursive `D` conflicts with
//! a non-recursive `D`, its parent or any direct child; with a recursive root at `D`, at
//! an ancestor of `D`, or at a direct child of `D` (which the non-recursive rule could
//! rename or remove). Read rules never reach this module.
//!
//! Not seen: a mount inside one root whose source lies strictly inside another root
//! without being one of its ancestors-or-self (`/mnt/x` bound from `/repo/sub` when
//! someone claims `/repo`): the identity of `/repo/sub` is not on any path of `/repo`'s.
//! Identities are read when the check runs, as the checking process sees the filesystem.

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// A directory's identity: same device and inode means the same directory, whatever
/// path reached it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct FileId {
    dev: u64,
    ino: u64,
}

impl FileId {
    fn of(path: &Path) -> Option<FileId> {
        std::fs::metadata(path).ok().map(|m| FileId {
            dev: m.dev(),
            ino: m.ino(),
        })
    }
}

/// The mount points of the checking process's mount namespace.
#[derive(Debug, Default)]
pub(crate) struct Mounts {
    points: Vec<PathBuf>,
}

impl Mounts {
    /// Reads the calling thread's mount table (a thread can have its own mount
    /// namespace; `/proc/self` would show the main thread's); unreadable means "no mounts
    /// known" (the path and ancestor checks still run).
    pub(crate) fn load() -> Mounts {
        let text = std::fs::read_to_string("/proc/thread-self/mountinfo")
            .or_else(|_| std::fs::read_to_string("/proc/self/mountinfo"))
            .unwrap_or_default();
        Mounts::parse(&text)
    }

    fn parse(text: &str) -> Mounts {
        let points = text
            .lines()
            .filter_map(|line| line.split(' ').nth(4))
            .map(|field| PathBuf::from(unescape_mount_path(field)))
            .collect();
        Mounts { points }
    }

    fn strictly_below<'a>(&'a self, root: &'a Path) -> impl Iterator<Item = &'a Path> + 'a {
        self.points
            .iter()
            .map(PathBuf::as_path)
            .filter(move |p| p != &root && p.starts_with(root))
    }
}

/// mountinfo writes space, tab, newline and backslash as `\ooo` octal escapes.
fn unescape_mount_path(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes
            .get(i + 1..i + 4)
            .filter(|d| bytes[i] == b'\\' && d.iter().all(|b| (b'0'..=b'7').contains(b)))
            .map(|d| d.iter().fold(0u32, |acc, b| acc * 8 + u32::from(b - b'0')))
            .and_then(|v| u8::try_from(v).ok());
        match octal {
            Some(value) => {
                out.push(value);
                i += 4;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A grant root prepared for comparison.
#[derive(Debug, Clone)]
pub(crate) struct RootView {
    canonical: PathBuf,
    recursive: bool,
    anchors: Vec<(FileId, PathBuf)>,
}

impl RootView {
    /// Prepares `canonical` (from `canonicalize_lenient`) for comparison, reading the
    /// identities of its existing ancestors and, for a recursive root, of mount points
    /// inside it.
    pub(crate) fn new(canonical: &Path, recursive: bool, mounts: &Mounts) -> RootView {
        let mut anchors = Vec::new();
        for ancestor in canonical.ancestors() {
            if let Some(id) = FileId::of(ancestor) {
                let rest = canonical.strip_prefix(ancestor).unwrap_or(Path::new(""));
                anchors.push((id, rest.to_path_buf()));
            }
        }
        if recursive {
            for point in mounts.strictly_below(canonical) {
                if let Some(id) = FileId::of(point) {
                    anchors.push((id, PathBuf::new()));
                }
            }
        }
        RootView {
            canonical: canonical.to_path_buf(),
            recursive,
            anchors,
        }
    }

    /// The canonical root.
    pub(crate) fn path(&self) -> &Path {
        &self.canonical
    }
}

/// How an overlap was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Via {
    /// The canonical paths overlap.
    Path,
    /// Only the directory identities show it: a bind mount or similar alias.
    Alias,
}

/// Whether two rules' covered paths intersect.
pub(crate) fn overlap(a: &RootView, b: &RootView) -> Option<Via> {
    let related = |ta: &Path, tb: &Path| rests_overlap(ta, a.recursive, tb, b.recursive);
    if related(&a.canonical, &b.canonical) {
        return Some(Via::Path);
    }
    shared_anchor(a, b, related).then_some(Via::Alias)
}

/// Whether everything `inner` covers lies inside the recursive root `outer`.
pub(crate) fn contains(outer: &RootView, inner: &RootView) -> Option<Via> {
    if !outer.recursive {
        return None;
    }
    let inside = |to: &Path, ti: &Path| ti.starts_with(to);
    if inside(&outer.canonical, &inner.canonical) {
        return Some(Via::Path);
    }
    shared_anchor(outer, inner, inside).then_some(Via::Alias)
}

/// Whether some anchor identity appears in both views with rests that satisfy `test`.
fn shared_anchor(a: &RootView, b: &RootView, test: impl Fn(&Path, &Path) -> bool) -> bool {
    let mut by_id: HashMap<FileId, Vec<&Path>> = HashMap::new();
    for (id, rest) in &a.anchors {
        by_id.entry(*id).or_default().push(rest);
    }
    b.anchors.iter().any(|(id, rb)| {
        by_id
            .get(id)
            .is_some_and(|rests| rests.iter().any(|ra| test(ra, rb)))
    })
}

/// Overlap of two rules given as paths below a common directory (or both absolute).
fn rests_overlap(a: &Path, a_recursive: bool, b: &Path, b_recursive: bool) -> bool {
    let parent_is = |child: &Path, parent: &Path| child.parent() == Some(parent);
    match (a_recursive, b_recursive) {
        (true, true) => a.starts_with(b) || b.starts_with(a),
        (true, false) => b.starts_with(a) || parent_is(a, b),
        (false, true) => a.starts_with(b) || parent_is(b, a),
        (false, false) => a == b || parent_is(a, b) || parent_is(b, a),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rests_overlap_table() {
        let p = Path::new;
        // (a, a recursive, b, b recursive, expected)
        let table = [
            ("/r", true, "/r", true, true),
            ("/r", true, "/r/a", true, true),
            ("/r/a", true, "/r", true, true),
            ("/r/a", true, "/r/b", true, false),
            ("/r/a", true, "/r/ab", true, false),
            ("/r", false, "/r", false, true),
            ("/r", false, "/r/a", false, true),
            ("/r/a", false, "/r/b", false, false),
            ("/r", false, "/r/a/b", false, false),
            ("/r", true, "/r/a/b", false, true),
            ("/r/a", true, "/r", false, true),
            ("/r/a/b", true, "/r", false, false),
            ("/r/b", true, "/r/a", false, false),
            ("/r", false, "/r/a", true, true),
            ("/r", false, "/", true, true),
            ("", true, "x/y", true, true),
            ("", false, "x", true, true),
            ("", false, "x/y", true, false),
        ];
        for (a, ar, b, br, want) in table {
            assert_eq!(
                rests_overlap(p(a), ar, p(b), br),
                want,
                "{a} (recursive {ar}) vs {b} (recursive {br})"
            );
            assert_eq!(
                rests_overlap(p(b), br, p(a), ar),
                want,
                "symmetric: {b} vs {a}"
            );
        }
    }

    #[test]
    fn mountinfo_parsing_unescapes_paths() {
        let m = Mounts::parse(
            "36 35 98:0 /mnt1 /mnt/with\\040space rw,noatime master:1 - ext3 /dev/root rw\n\
             37 35 98:0 / / rw - ext4 /dev/vda rw\n",
        );
        assert_eq!(
            m.points,
            vec![PathBuf::from("/mnt/with space"), PathBuf::from("/")]
        );
        let below: Vec<&Path> = m.strictly_below(Path::new("/mnt")).collect();
        assert_eq!(below, vec![Path::new("/mnt/with space")]);
        assert_eq!(unescape_mount_path("a\\134b\\04"), "a\\b\\04");
    }
}
