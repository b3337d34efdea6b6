//! `Grep`: the three output modes, context, file filters, binary files and the cap.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use common::*;
use serde_json::json;
use tool::ToolError;

/// A small tree: two Rust files, a Markdown file, a binary file.
fn tree(fx: &Fixture) {
    fx.file(
        "src/main.rs",
        "fn main() {\n    let needle = 1;\n    println!(\"{needle}\");\n}\n",
    );
    fx.file("src/lib.rs", "// no match here\npub fn haystack() {}\n");
    fx.file("docs/guide.md", "A needle in the docs.\n");
    std::fs::write(fx.scope.join("blob.bin"), b"needle\0binary").unwrap();
}

#[test]
fn files_with_matches_is_the_default() {
    let fx = Fixture::new();
    tree(&fx);
    let out = ok(call(&fx.ctx(), "Grep", json!({"pattern": "needle"})));
    let s = |rel: &str| fx.scope.join(rel).display().to_string();
    // Sorted by path; the binary file is skipped (its NUL byte is in the first buffer).
    assert_eq!(
        content(&out),
        format!("{}\n{}\n", s("docs/guide.md"), s("src/main.rs"))
    );
    assert_contains(&out.summary, &["Found 2 files"]);
}

#[test]
fn binary_files_are_not_searched_past_their_first_nul() {
    let fx = Fixture::new();
    std::fs::write(fx.scope.join("blob.bin"), b"\0\0header then needle").unwrap();
    let out = ok(call(&fx.ctx(), "Grep", json!({"pattern": "needle"})));
    assert_eq!(out.content, None, "{out:?}");
    // A match in a large file before the first NUL (beyond the first buffer) is kept,
    // as ripgrep keeps it.
    let mut big = b"needle\n".to_vec();
    big.extend(std::iter::repeat_n(b'x', 256 * 1024));
    big.extend_from_slice(b"\0 needle");
    std::fs::write(fx.scope.join("big.bin"), &big).unwrap();
    let out = ok(call(
        &fx.ctx(),
        "Grep",
        json!({"pattern": "needle", "output_mode": "count"}),
    ));
    assert_eq!(
        content(&out),
        format!("{}:1\n", fx.scope.join("big.bin").display())
    );
}

#[test]
fn content_mode_shows_numbered_lines_and_context() {
    let fx = Fixture::new();
    tree(&fx);
    let main = fx.scope.join("src/main.rs").display().to_string();
    let out = ok(call(
        &fx.ctx(),
        "Grep",
        json!({"pattern": "needle", "path": "src", "output_mode": "content"}),
    ));
    assert_eq!(
        content(&out),
        format!("{main}:2:    let needle = 1;\n{main}:3:    println!(\"{{needle}}\");\n")
    );
    assert_contains(&out.summary, &["2 matching lines in 1 file"]);
    let out = ok(call(
        &fx.ctx(),
        "Grep",
        json!({"pattern": "let needle", "path": "src/main.rs", "output_mode": "content", "context": 1}),
    ));
    assert_eq!(
        content(&out),
        format!(
            "{main}-1-fn main() {{\n{main}:2:    let needle = 1;\n{main}-3-    println!(\"{{needle}}\");\n"
        )
    );
}

#[test]
fn context_groups_are_separated() {
    let fx = Fixture::new();
    let text: String = (1..=20)
        .map(|i| {
            if i == 3 || i == 15 {
                "hit\n".to_owned()
            } else {
                format!("line {i}\n")
            }
        })
        .collect();
    let f = fx.file("a.txt", &text).display().to_string();
    let out = ok(call(
        &fx.ctx(),
        "Grep",
        json!({"pattern": "hit", "output_mode": "content", "context": 1}),
    ));
    assert_eq!(
        content(&out),
        format!(
            "{f}-2-line 2\n{f}:3:hit\n{f}-4-line 4\n--\n{f}-14-line 14\n{f}:15:hit\n{f}-16-line 16\n"
        )
    );
}

#[test]
fn count_mode_counts_matching_lines_per_file() {
    let fx = Fixture::new();
    tree(&fx);
    let out = ok(call(
        &fx.ctx(),
        "Grep",
        json!({"pattern": "needle", "path": "src", "output_mode": "count"}),
    ));
    assert_eq!(
        content(&out),
        format!("{}:2\n", fx.scope.join("src/main.rs").display())
    );
}

#[test]
fn type_and_glob_filter_files() {
    let fx = Fixture::new();
    tree(&fx);
    let out = ok(call(
        &fx.ctx(),
        "Grep",
        json!({"pattern": "needle", "type": "md"}),
    ));
    assert_eq!(
        content(&out),
        format!("{}\n", fx.scope.join("docs/guide.md").display())
    );
    let out = ok(call(
        &fx.ctx(),
        "Grep",
        json!({"pattern": "needle|haystack", "glob": "*.rs"}),
    ));
    assert_eq!(
        content(&out),
        format!(
            "{}\n{}\n",
            fx.scope.join("src/lib.rs").display(),
            fx.scope.join("src/main.rs").display()
        )
    );
}

#[test]
fn a_glob_given_as_path_searches_the_files_it_matches() {
    let fx = Fixture::new();
    tree(&fx);
    fx.file("docs/notes.rs", "// needle\n");
    let s = |rel: &str| fx.scope.join(rel).display().to_string();
    // The directory before the first wildcard is searched, the rest filters.
    let out = ok(call(
        &fx.ctx(),
        "Grep",
        json!({"pattern": "needle", "path": "src/**/*.rs"}),
    ));
    assert_eq!(content(&out), format!("{}\n", s("src/main.rs")));
    let out = ok(call(
        &fx.ctx(),
        "Grep",
        json!({"pattern": "needle", "path": "*.rs"}),
    ));
    assert_eq!(
        content(&out),
        format!("{}\n{}\n", s("docs/notes.rs"), s("src/main.rs"))
    );
    // Nothing found: the filter is named, so a wrong guess shows.
    let out = ok(call(
        &fx.ctx(),
        "Grep",
        json!({"pattern": "needle", "path": "src/**/*.py"}),
    ));
    assert_contains(
        &out.summary,
        &["No matches", "(searched only files matching `**/*.py`)"],
    );
    // An existing file whose name holds a wildcard character is that file.
    fx.file("odd[1].txt", "needle\n");
    let out = ok(call(
        &fx.ctx(),
        "Grep",
        json!({"pattern": "needle", "path": "odd[1].txt"}),
    ));
    assert_contains(&out.summary, &["Found 1 file"]);
    // Both a glob path and `glob`: which one is meant is unclear.
    let e = call(
        &fx.ctx(),
        "Grep",
        json!({"pattern": "x", "path": "src/*.rs", "glob": "*.md"}),
    )
    .unwrap_err();
    assert!(
        matches!(&e, ToolError::InvalidArgument(m) if m.contains("is a glob")),
        "{e}"
    );
}

#[test]
fn bad_regex_type_and_glob_are_invalid_arguments() {
    let fx = Fixture::new();
    for args in [
        json!({"pattern": "("}),
        json!({"pattern": "x", "type": "no-such-type"}),
        json!({"pattern": "x", "glob": "a[b"}),
        json!({"pattern": "x", "output_mode": "lines"}),
    ] {
        let e = call(&fx.ctx(), "Grep", args.clone()).unwrap_err();
        assert!(matches!(e, ToolError::InvalidArgument(_)), "{args}: {e}");
    }
}

#[test]
fn no_match_says_so() {
    let fx = Fixture::new();
    tree(&fx);
    let out = ok(call(&fx.ctx(), "Grep", json!({"pattern": "zebra"})));
    assert_contains(&out.summary, &["No matches for `zebra`"]);
    assert_eq!(out.content, None);
}

#[test]
fn gitignored_and_hidden_files_are_skipped_like_ripgrep() {
    let fx = Fixture::new();
    std::fs::create_dir(fx.scope.join(".git")).unwrap();
    fx.file(".gitignore", "build/\n");
    fx.file("build/gen.txt", "needle\n");
    fx.file(".hidden/h.txt", "needle\n");
    let kept = fx.file("kept.txt", "needle\n");
    let out = ok(call(&fx.ctx(), "Grep", json!({"pattern": "needle"})));
    assert_eq!(content(&out), format!("{}\n", kept.display()));
}

#[test]
fn huge_output_is_capped_with_a_note() {
    let fx = Fixture::new();
    for f in 0..50 {
        let text: String = (0..200)
            .map(|i| format!("match line {i} of file {f}\n"))
            .collect();
        fx.file(&format!("f{f:02}.txt"), &text);
    }
    let ctx = fx.ctx_with(fx.write_scope(), Vec::new(), 4096);
    let out = ok(call(
        &ctx,
        "Grep",
        json!({"pattern": "match", "output_mode": "content"}),
    ));
    let text = content(&out);
    assert!(text.len() <= 4096, "{} bytes", text.len());
    assert_contains(text, &["[output capped at", "narrow the search"]);
    let out = ok(call(
        &ctx,
        "Grep",
        json!({"pattern": "match", "output_mode": "count"}),
    ));
    assert!(content(&out).len() <= 4096);
    // Listing modes collect everything and say how much was left out.
    let ctx = fx.ctx_with(fx.write_scope(), Vec::new(), 1024);
    let out = ok(call(&ctx, "Grep", json!({"pattern": "match"})));
    assert_contains(&out.summary, &["Found 50 files"]);
    assert_contains(content(&out), &["more files not shown"]);
}

#[test]
fn long_matching_lines_are_cut() {
    let fx = Fixture::new();
    fx.file(
        "min.js",
        &format!("{}needle{}\n", "a".repeat(600), "b".repeat(600)),
    );
    let out = ok(call(
        &fx.ctx(),
        "Grep",
        json!({"pattern": "needle", "output_mode": "content"}),
    ));
    assert_contains(content(&out), &["[line cut: 706 more characters]"]);
}
