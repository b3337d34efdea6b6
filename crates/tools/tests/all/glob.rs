//! `Glob`: pattern matching, newest-first order, gitignore, the result cap.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use std::fs;
use std::time::{Duration, SystemTime};

use common::*;
use serde_json::json;
use tool::ToolError;

/// Sets a file's modification time to `secs` after the epoch.
fn set_mtime(path: &std::path::Path, secs: u64) {
    let f = fs::File::options().write(true).open(path).unwrap();
    f.set_modified(SystemTime::UNIX_EPOCH + Duration::from_secs(secs))
        .unwrap();
}

#[test]
fn lists_matches_newest_first_as_absolute_paths() {
    let fx = Fixture::new();
    let old = fx.file("src/old.rs", "");
    let new = fx.file("src/deep/new.rs", "");
    let mid = fx.file("mid.rs", "");
    fx.file("src/readme.md", "");
    set_mtime(&old, 1_000);
    set_mtime(&mid, 2_000);
    set_mtime(&new, 3_000);
    let out = ok(call(&fx.ctx(), "Glob", json!({"pattern": "**/*.rs"})));
    assert_eq!(
        content(&out),
        format!("{}\n{}\n{}\n", new.display(), mid.display(), old.display())
    );
    assert_contains(&out.summary, &["Found 3 files"]);
    // `*` stays within one directory.
    let out = ok(call(&fx.ctx(), "Glob", json!({"pattern": "*.rs"})));
    assert_eq!(content(&out), format!("{}\n", mid.display()));
    let out = ok(call(
        &fx.ctx(),
        "Glob",
        json!({"pattern": "*.rs", "path": "src"}),
    ));
    assert_eq!(content(&out), format!("{}\n", old.display()));
}

#[test]
fn an_absolute_pattern_sets_the_base() {
    let fx = Fixture::new();
    let a = fx.file("src/a.rs", "");
    let pattern = format!("{}/src/*.rs", fx.scope.display());
    let out = ok(call(&fx.ctx(), "Glob", json!({"pattern": pattern})));
    assert_eq!(content(&out), format!("{}\n", a.display()));
    let out = ok(call(&fx.ctx(), "Glob", json!({"pattern": a})));
    assert_eq!(content(&out), format!("{}\n", a.display()));
    let e = err(call(
        &fx.ctx(),
        "Glob",
        json!({"pattern": format!("{}/*", fx.outside.display())}),
    ));
    assert_contains(&e, &["outside this pod's scope"]);
}

#[test]
fn honours_gitignore_and_skips_dot_git_but_not_hidden_files() {
    let fx = Fixture::new();
    fs::create_dir(fx.scope.join(".git")).unwrap();
    fx.file(".git/config.txt", "");
    fx.file(".gitignore", "target/\n*.log\n");
    fx.file("target/out.txt", "");
    fx.file("debug.log", "");
    let kept = fx.file("notes.txt", "");
    let hidden = fx.file(".github/ci.txt", "");
    let out = ok(call(
        &fx.ctx(),
        "Glob",
        json!({"pattern": "**/*.{txt,log}"}),
    ));
    let text = content(&out);
    assert_contains(
        text,
        &[&kept.display().to_string(), &hidden.display().to_string()],
    );
    for absent in ["out.txt", "debug.log", "config.txt"] {
        assert!(!text.contains(absent), "{absent} in {text}");
    }
}

#[test]
fn results_are_capped_at_100_with_a_count_of_the_rest() {
    let fx = Fixture::new();
    for i in 0..130 {
        fx.file(&format!("f{i:03}.txt"), "");
    }
    let out = ok(call(&fx.ctx(), "Glob", json!({"pattern": "*.txt"})));
    let text = content(&out);
    assert_eq!(text.lines().filter(|l| l.ends_with(".txt")).count(), 100);
    assert_contains(text, &["[30 more not shown"]);
    assert_contains(&out.summary, &["Found 130 files", "showing the 100 newest"]);
}

#[test]
fn no_match_and_bad_patterns() {
    let fx = Fixture::new();
    let out = ok(call(&fx.ctx(), "Glob", json!({"pattern": "*.none"})));
    assert_contains(&out.summary, &["No files match"]);
    assert_eq!(out.content, None);
    let e = call(&fx.ctx(), "Glob", json!({"pattern": "a[b"})).unwrap_err();
    assert!(matches!(e, ToolError::InvalidArgument(_)), "{e}");
    let e = call(
        &fx.ctx(),
        "Glob",
        json!({"pattern": "/abs/*.rs", "path": "src"}),
    )
    .unwrap_err();
    assert!(matches!(e, ToolError::InvalidArgument(_)), "{e}");
}

#[test]
fn a_file_as_the_base_is_an_error() {
    let fx = Fixture::new();
    fx.file("a.txt", "");
    let e = err(call(
        &fx.ctx(),
        "Glob",
        json!({"pattern": "*", "path": "a.txt"}),
    ));
    assert_contains(&e, &["is not a directory"]);
}
