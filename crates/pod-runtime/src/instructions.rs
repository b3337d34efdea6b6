//! Project instructions: the `AGENTS.md` files (the convention several coding
//! agents share; `CLAUDE.md` where a directory has no `AGENTS.md`) from a pod's
//! working directory up to its project root, which go into its system prompt.
//!
//! The project root is the directory holding `.pods/`, else the git root, else
//! the working directory itself, so a pod never picks up instructions from
//! outside its project.

use std::path::{Path, PathBuf};

/// File names looked for in each directory, the first found winning.
const NAMES: [&str; 2] = ["AGENTS.md", "CLAUDE.md"];

/// The most bytes of instructions a system prompt takes (all files together);
/// more is cut, with a note saying where the rest is.
pub const MAX_BYTES: usize = 16 * 1024;

/// One instructions file, as loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instructions {
    /// Where it was read.
    pub path: PathBuf,
    /// Its text (cut to what fits under [`MAX_BYTES`]).
    pub text: String,
    /// Bytes left out because of the cap.
    pub cut: usize,
}

/// The project root of `cwd`: the nearest directory holding `.pods/`, else the
/// nearest holding `.git`, else `cwd`.
pub fn project_root(cwd: &Path) -> &Path {
    let holding = |name: &str| cwd.ancestors().find(|dir| dir.join(name).exists());
    holding(".pods").or_else(|| holding(".git")).unwrap_or(cwd)
}

/// The instructions files a pod working in `cwd` loads: from the project root
/// down to `cwd` (the nearest last, so it can refine the general ones), at most
/// [`MAX_BYTES`] in all. Unreadable files are skipped.
pub fn load(cwd: &Path) -> Vec<Instructions> {
    let root = project_root(cwd);
    let mut dirs: Vec<&Path> = cwd
        .ancestors()
        .take_while(|dir| dir.starts_with(root))
        .collect();
    dirs.reverse();
    let mut left = MAX_BYTES;
    let mut out = Vec::new();
    for dir in dirs {
        let Some((path, text)) = NAMES.iter().find_map(|name| {
            let path = dir.join(name);
            std::fs::read_to_string(&path).ok().map(|text| (path, text))
        }) else {
            continue;
        };
        let text = text.trim().to_string();
        if text.is_empty() {
            continue;
        }
        let keep = floor_boundary(&text, left);
        let cut = text.len() - keep;
        left -= keep;
        out.push(Instructions {
            path,
            text: text[..keep].to_string(),
            cut,
        });
    }
    out
}

/// The system prompt's section for `files` (empty when there are none).
pub fn prompt_section(files: &[Instructions]) -> String {
    let mut out = String::new();
    for file in files {
        if out.is_empty() {
            out.push_str("Project instructions (the nearest file last; follow them):");
        }
        out.push_str(&format!("\n\nFrom {}:\n{}", file.path.display(), file.text));
        if file.cut > 0 {
            out.push_str(&format!(
                "\n[{} more bytes of this file were left out; read it for the rest]",
                file.cut
            ));
        }
    }
    out
}

/// What a pod started in `cwd` would load, in one line (for `pod doctor`).
pub fn describe(cwd: &Path) -> String {
    let files = load(cwd);
    if files.is_empty() {
        return format!(
            "none (AGENTS.md, else CLAUDE.md, in each directory from {} down to {})",
            project_root(cwd).display(),
            cwd.display()
        );
    }
    describe_files(&files)
}

/// `files` in one line: each path with its size.
pub fn describe_files(files: &[Instructions]) -> String {
    files
        .iter()
        .map(|f| match f.cut {
            0 => format!("{} ({} bytes)", f.path.display(), f.text.len()),
            cut => format!("{} ({} bytes, {cut} cut)", f.path.display(), f.text.len()),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The largest char boundary at or below `at` in `text`.
fn floor_boundary(text: &str, at: usize) -> usize {
    let mut at = at.min(text.len());
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    at
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_load_from_the_project_root_down_to_the_working_directory() {
        let dir = tempfile::tempdir().unwrap();
        let outside = dir.path();
        let root = outside.join("repo");
        let deep = root.join("crates/app");
        std::fs::create_dir_all(&deep).unwrap();
        std::fs::create_dir_all(root.join(".git")).unwrap();
        std::fs::write(outside.join("AGENTS.md"), "outside the project").unwrap();
        std::fs::write(root.join("AGENTS.md"), "use cargo").unwrap();
        std::fs::write(root.join("CLAUDE.md"), "not read: AGENTS.md wins").unwrap();
        std::fs::write(root.join("crates/CLAUDE.md"), "crates rule").unwrap();
        std::fs::write(deep.join("AGENTS.md"), "  \n").unwrap();
        let files = load(&deep);
        let texts: Vec<&str> = files.iter().map(|f| f.text.as_str()).collect();
        assert_eq!(texts, ["use cargo", "crates rule"]);
        assert_eq!(project_root(&deep), root.as_path());
        let section = prompt_section(&files);
        assert!(section.starts_with("Project instructions"));
        assert!(section.find("use cargo") < section.find("crates rule"));
        assert_eq!(prompt_section(&[]), "");
        let line = describe(&deep);
        assert!(
            line.contains("repo/AGENTS.md (9 bytes)") && line.contains("crates/CLAUDE.md"),
            "{line}"
        );
        let empty = tempfile::tempdir().unwrap();
        assert!(describe(empty.path()).starts_with("none (AGENTS.md, else CLAUDE.md"));
    }

    #[test]
    fn a_pods_dir_marks_the_root_and_the_cap_cuts_with_a_note() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("p");
        std::fs::create_dir_all(root.join(".pods")).unwrap();
        std::fs::create_dir_all(dir.path().join(".git")).unwrap();
        std::fs::write(root.join("AGENTS.md"), "é".repeat(MAX_BYTES)).unwrap();
        let files = load(&root);
        assert_eq!(files.len(), 1);
        assert!(files[0].text.len() <= MAX_BYTES && files[0].cut >= MAX_BYTES - 1);
        assert!(prompt_section(&files).contains("more bytes of this file were left out"));
        // Without any marker, only the working directory itself counts.
        let lone = dir.path().join("lone/sub");
        std::fs::create_dir_all(&lone).unwrap();
        std::fs::remove_dir_all(dir.path().join(".git")).unwrap();
        assert_eq!(project_root(&lone), lone.as_path());
    }
}
