//! `Write` and `Edit`: creating, the read-before-write rule, atomic replacement that
//! keeps the mode, and every way an edit can fail.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use std::fs;
use std::os::unix::fs::PermissionsExt;

use common::*;
use serde_json::json;
use tool::ToolError;

#[test]
fn write_creates_a_new_file_without_a_read() {
    let fx = Fixture::new();
    let out = ok(call(
        &fx.ctx(),
        "Write",
        json!({"path": "new.txt", "content": "a\nb\n"}),
    ));
    assert_contains(&out.summary, &["Created", "new.txt", "4 bytes", "2 lines"]);
    assert_eq!(
        fs::read_to_string(fx.scope.join("new.txt")).unwrap(),
        "a\nb\n"
    );
    assert!(!has_temp_files(&fx.scope));
}

#[test]
fn overwriting_needs_a_read_first() {
    let fx = Fixture::new();
    fx.file("a.txt", "original\n");
    let ctx = fx.ctx();
    let e = err(call(
        &ctx,
        "Write",
        json!({"path": "a.txt", "content": "new\n"}),
    ));
    assert_contains(&e, &["this pod has not read it", "Read it first"]);
    assert_eq!(
        fs::read_to_string(fx.scope.join("a.txt")).unwrap(),
        "original\n"
    );
    ok(call(&ctx, "Read", json!({"path": "a.txt"})));
    let out = ok(call(
        &ctx,
        "Write",
        json!({"path": "a.txt", "content": "new\n"}),
    ));
    assert_contains(&out.summary, &["Overwrote"]);
    assert_eq!(fs::read_to_string(fx.scope.join("a.txt")).unwrap(), "new\n");
    // What this pod wrote it knows: a second write needs no new Read.
    ok(call(
        &ctx,
        "Write",
        json!({"path": "a.txt", "content": "newer\n"}),
    ));
    assert_eq!(
        fs::read_to_string(fx.scope.join("a.txt")).unwrap(),
        "newer\n"
    );
}

#[test]
fn a_read_by_one_pod_does_not_count_for_another() {
    let fx = Fixture::new();
    fx.file("a.txt", "original\n");
    ok(call(&fx.ctx(), "Read", json!({"path": "a.txt"})));
    let other = fx.ctx();
    let e = err(call(
        &other,
        "Write",
        json!({"path": "a.txt", "content": "x"}),
    ));
    assert_contains(&e, &["Read it first"]);
    assert_eq!(
        std::fs::read_to_string(fx.scope.join("a.txt")).unwrap(),
        "original\n"
    );
}

#[test]
fn a_read_through_another_spelling_of_the_path_counts() {
    let fx = Fixture::new();
    fx.file("d/a.txt", "original\n");
    std::os::unix::fs::symlink(fx.scope.join("d"), fx.scope.join("alias")).unwrap();
    let ctx = fx.ctx();
    ok(call(&ctx, "Read", json!({"path": "alias/a.txt"})));
    ok(call(
        &ctx,
        "Write",
        json!({"path": "./d/../d/a.txt", "content": "x"}),
    ));
}

#[test]
fn writing_after_an_external_change_is_refused() {
    let fx = Fixture::new();
    let path = fx.file("a.txt", "original\n");
    let ctx = fx.ctx();
    ok(call(&ctx, "Read", json!({"path": "a.txt"})));
    fs::write(&path, "changed by someone else\n").unwrap();
    let e = err(call(
        &ctx,
        "Write",
        json!({"path": "a.txt", "content": "mine\n"}),
    ));
    assert_contains(
        &e,
        &["changed since your last Read", "it was 9 bytes, now 24"],
    );
    // Same size, different content is caught too.
    ok(call(&ctx, "Read", json!({"path": "a.txt"})));
    fs::write(&path, "CHANGED BY SOMEONE ELSE\n").unwrap();
    let e = err(call(
        &ctx,
        "Write",
        json!({"path": "a.txt", "content": "mine\n"}),
    ));
    assert_contains(&e, &["changed since your last Read", "same size"]);
    assert_eq!(
        fs::read_to_string(&path).unwrap(),
        "CHANGED BY SOMEONE ELSE\n"
    );
    // Touched but unchanged is still the file the pod saw.
    ok(call(&ctx, "Read", json!({"path": "a.txt"})));
    let f = fs::File::options().write(true).open(&path).unwrap();
    f.set_modified(std::time::SystemTime::UNIX_EPOCH).unwrap();
    ok(call(
        &ctx,
        "Write",
        json!({"path": "a.txt", "content": "mine\n"}),
    ));
}

#[test]
fn a_deleted_file_may_be_written_again() {
    let fx = Fixture::new();
    let path = fx.file("a.txt", "original\n");
    let ctx = fx.ctx();
    ok(call(&ctx, "Read", json!({"path": "a.txt"})));
    fs::remove_file(&path).unwrap();
    let out = ok(call(
        &ctx,
        "Write",
        json!({"path": "a.txt", "content": "x"}),
    ));
    assert_contains(&out.summary, &["Created"]);
}

#[test]
fn overwriting_keeps_the_mode() {
    let fx = Fixture::new();
    let path = fx.file("run.sh", "#!/bin/sh\n");
    fs::set_permissions(&path, fs::Permissions::from_mode(0o750)).unwrap();
    let ctx = fx.ctx();
    ok(call(&ctx, "Read", json!({"path": "run.sh"})));
    ok(call(
        &ctx,
        "Write",
        json!({"path": "run.sh", "content": "#!/bin/sh\nexit 0\n"}),
    ));
    assert_eq!(
        fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o750
    );
    ok(call(
        &ctx,
        "Edit",
        json!({"path": "run.sh", "old_string": "exit 0", "new_string": "exit 1"}),
    ));
    assert_eq!(
        fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o750
    );
    assert!(!has_temp_files(&fx.scope));
}

#[test]
fn writing_over_a_directory_is_an_error() {
    let fx = Fixture::new();
    fs::create_dir(fx.scope.join("d")).unwrap();
    let e = err(call(
        &fx.ctx(),
        "Write",
        json!({"path": "d", "content": "x"}),
    ));
    assert_contains(&e, &["is a directory"]);
}

#[test]
fn edit_replaces_a_unique_match_and_shows_a_diff() {
    let fx = Fixture::new();
    let path = fx.file("lib.rs", "fn a() {}\nfn b() {}\nfn c() {}\n");
    let ctx = fx.ctx();
    ok(call(&ctx, "Read", json!({"path": "lib.rs"})));
    let out = ok(call(
        &ctx,
        "Edit",
        json!({"path": "lib.rs", "old_string": "fn b() {}", "new_string": "fn b() { todo!() }"}),
    ));
    assert_eq!(
        fs::read_to_string(&path).unwrap(),
        "fn a() {}\nfn b() { todo!() }\nfn c() {}\n"
    );
    assert_contains(&out.summary, &["Edited", "replaced 1 occurrence", "+1 -1"]);
    assert_contains(
        content(&out),
        &[
            "@@ -1,3 +1,3 @@",
            "-fn b() {}\n",
            "+fn b() { todo!() }\n",
            " fn a() {}\n",
        ],
    );
    // The edit is recorded: a second edit needs no new Read.
    ok(call(
        &ctx,
        "Edit",
        json!({"path": "lib.rs", "old_string": "fn c() {}", "new_string": ""}),
    ));
    assert_eq!(
        fs::read_to_string(&path).unwrap(),
        "fn a() {}\nfn b() { todo!() }\n\n"
    );
}

#[test]
fn edit_refuses_a_non_unique_match_unless_replace_all() {
    let fx = Fixture::new();
    let path = fx.file("a.txt", "x = 1\ny = 1\nz = 1\n");
    let ctx = fx.ctx();
    ok(call(&ctx, "Read", json!({"path": "a.txt"})));
    let e = err(call(
        &ctx,
        "Edit",
        json!({"path": "a.txt", "old_string": "= 1", "new_string": "= 2"}),
    ));
    assert_contains(&e, &["matches 3 times", "replace_all"]);
    assert_eq!(fs::read_to_string(&path).unwrap(), "x = 1\ny = 1\nz = 1\n");
    let out = ok(call(
        &ctx,
        "Edit",
        json!({"path": "a.txt", "old_string": "= 1", "new_string": "= 2", "replace_all": true}),
    ));
    assert_contains(&out.summary, &["replaced 3 occurrences"]);
    assert_eq!(fs::read_to_string(&path).unwrap(), "x = 2\ny = 2\nz = 2\n");
}

#[test]
fn edit_matches_crlf_files_with_the_lf_text_read_shows() {
    let fx = Fixture::new();
    let path = fx.file("dos.txt", "one\r\ntwo\r\nthree\r\n");
    let ctx = fx.ctx();
    let out = ok(call(&ctx, "Read", json!({"path": "dos.txt"})));
    assert_eq!(content(&out), "     1\tone\n     2\ttwo\n     3\tthree\n");
    ok(call(
        &ctx,
        "Edit",
        json!({"path": "dos.txt", "old_string": "one\ntwo", "new_string": "1\n2"}),
    ));
    assert_eq!(fs::read_to_string(&path).unwrap(), "1\r\n2\r\nthree\r\n");
}

#[test]
fn edit_with_no_match_says_so() {
    let fx = Fixture::new();
    fx.file("a.txt", "    indented\n");
    let ctx = fx.ctx();
    ok(call(&ctx, "Read", json!({"path": "a.txt"})));
    let e = err(call(
        &ctx,
        "Edit",
        json!({"path": "a.txt", "old_string": "  indented\n\n", "new_string": "x"}),
    ));
    assert_contains(&e, &["old_string was not found", "exactly"]);
}

#[test]
fn edit_needs_a_read_and_an_unchanged_file() {
    let fx = Fixture::new();
    let path = fx.file("a.txt", "one\n");
    let ctx = fx.ctx();
    let args = json!({"path": "a.txt", "old_string": "one", "new_string": "two"});
    assert_contains(&err(call(&ctx, "Edit", args.clone())), &["Read it first"]);
    ok(call(&ctx, "Read", json!({"path": "a.txt"})));
    fs::write(&path, "one!\n").unwrap();
    assert_contains(
        &err(call(&ctx, "Edit", args)),
        &["changed since your last Read"],
    );
    assert_eq!(fs::read_to_string(&path).unwrap(), "one!\n");
}

#[test]
fn edit_refuses_missing_binary_and_pointless_edits() {
    let fx = Fixture::new();
    let ctx = fx.ctx();
    let e = err(call(
        &ctx,
        "Edit",
        json!({"path": "nope.txt", "old_string": "a", "new_string": "b"}),
    ));
    assert_contains(&e, &["does not exist", "use Write"]);
    let e = call(
        &ctx,
        "Edit",
        json!({"path": "nope.txt", "old_string": "", "new_string": "b"}),
    )
    .unwrap_err();
    assert!(matches!(e, ToolError::InvalidArgument(_)), "{e}");
    let e = call(
        &ctx,
        "Edit",
        json!({"path": "nope.txt", "old_string": "same", "new_string": "same"}),
    )
    .unwrap_err();
    assert!(matches!(e, ToolError::InvalidArgument(_)), "{e}");

    assert!(!fx.scope.join("nope.txt").exists());
}

#[test]
fn edit_refuses_a_file_that_is_not_utf8_past_its_head() {
    let fx = Fixture::new();
    // Read sniffs the first 8 KiB only, so this file reads (lossily) and is recorded.
    let mut bytes = "a\n".repeat(5000).into_bytes();
    bytes.extend_from_slice(b"caf\xe9\n");
    let path = fx.scope.join("mixed.txt");
    fs::write(&path, &bytes).unwrap();
    let ctx = fx.ctx();
    ok(call(
        &ctx,
        "Read",
        json!({"path": "mixed.txt", "offset": 5001}),
    ));
    let e = err(call(
        &ctx,
        "Edit",
        json!({"path": "mixed.txt", "old_string": "caf", "new_string": "tea"}),
    ));
    assert_contains(&e, &["is not UTF-8 text", "offset 10003"]);
    assert_eq!(fs::read(&path).unwrap(), bytes);
}

#[test]
fn an_edit_that_renames_points_at_the_names_left_in_files_seen() {
    let fx = Fixture::new();
    fx.file("billing.py", "def get_total(items):\n    return 1\n");
    fx.file(
        "report.py",
        "from billing import get_total\nprint(get_total([]))\n",
    );
    fx.file("unseen.py", "get_total\n");
    let ctx = fx.ctx();
    ok(call(&ctx, "Read", json!({"path": "billing.py"})));
    ok(call(&ctx, "Read", json!({"path": "report.py"})));
    let out = ok(call(
        &ctx,
        "Edit",
        json!({"path": "billing.py", "old_string": "def get_total(", "new_string": "def compute_total("}),
    ));
    // Only files this pod has seen are searched (not unseen.py).
    assert!(
        content(&out).ends_with("\nStill there: `get_total` in report.py (2×)."),
        "{}",
        content(&out)
    );
    // An edit that renames nothing adds nothing.
    let out = ok(call(
        &ctx,
        "Edit",
        json!({"path": "billing.py", "old_string": "return 1", "new_string": "return 2"}),
    ));
    assert!(!content(&out).contains("Still there"), "{}", content(&out));
}

#[test]
fn an_overwrite_says_which_lines_it_dropped() {
    let fx = Fixture::new();
    fx.file("mathutil.py", "def double(x):\n    return 2 * x\n");
    let ctx = fx.ctx();
    ok(call(&ctx, "Read", json!({"path": "mathutil.py"})));
    let out = ok(call(
        &ctx,
        "Write",
        json!({"path": "mathutil.py", "content": "def clamp(x, lo, hi):\n    return max(lo, min(x, hi))\n"}),
    ));
    assert_contains(
        content(&out),
        &[
            "no longer has 2 of its lines",
            "def double(x):",
            "return 2 * x",
            "write the file again",
        ],
    );
    // Keeping everything and adding says nothing more.
    let out = ok(call(
        &ctx,
        "Write",
        json!({"path": "mathutil.py", "content": "def clamp(x, lo, hi):\n    return max(lo, min(x, hi))\n\n\ndef double(x):\n    return 2 * x\n"}),
    ));
    assert!(out.content.is_none(), "{out:?}");
}

#[test]
fn small_model_writes_of_a_new_function_are_merged_unless_whole() {
    let fx = Fixture::new();
    let old = "def double(x):\n    return 2 * x\n";
    fx.file("m.py", old);
    let clamp = "def clamp(x, lo, hi):\n    return max(lo, min(x, hi))\n";

    // Another model: the write replaces the file whole, and says what it lost.
    let ctx = fx.ctx();
    ok(call(&ctx, "Read", json!({"path": "m.py"})));
    let out = ok(call(
        &ctx,
        "Write",
        json!({"path": "m.py", "content": clamp}),
    ));
    assert_contains(&out.summary, &["Overwrote"]);
    assert_contains(content(&out), &["no longer has 2 of its lines"]);
    assert_eq!(fs::read_to_string(fx.scope.join("m.py")).unwrap(), clamp);

    // The small-model profile: merged, and the result says so with the diff.
    fs::write(fx.scope.join("m.py"), old).unwrap();
    let ctx = fx.ctx().merging_partial_writes().unwrap();
    ok(call(&ctx, "Read", json!({"path": "m.py"})));
    let out = ok(call(
        &ctx,
        "Write",
        json!({"path": "m.py", "content": clamp}),
    ));
    assert_contains(&out.summary, &["Merged into", "m.py", "+3 -0"]);
    assert_contains(
        content(&out),
        &["+def clamp", "added `clamp`", "\"whole\": true"],
    );
    let merged = format!("{old}\n{clamp}");
    assert_eq!(fs::read_to_string(fx.scope.join("m.py")).unwrap(), merged);

    // The same write again changes nothing, and the pod may still write.
    let out = ok(call(
        &ctx,
        "Write",
        json!({"path": "m.py", "content": clamp}),
    ));
    assert_contains(&out.summary, &["Left", "as it was"]);
    assert_eq!(fs::read_to_string(fx.scope.join("m.py")).unwrap(), merged);

    // `whole` makes it the whole file.
    let out = ok(call(
        &ctx,
        "Write",
        json!({"path": "m.py", "content": clamp, "whole": true}),
    ));
    assert_contains(&out.summary, &["Overwrote"]);
    assert_eq!(fs::read_to_string(fx.scope.join("m.py")).unwrap(), clamp);
}

#[test]
fn small_model_writes_still_need_a_read_and_an_unchanged_file() {
    let fx = Fixture::new();
    fx.file("setup.cfg", "[metadata]\nname = t\nversion = 1.3.2\n");
    let ctx = fx.ctx().merging_partial_writes().unwrap();
    let e = err(call(
        &ctx,
        "Write",
        json!({"path": "setup.cfg", "content": "version = 1.4.0\n"}),
    ));
    assert_contains(&e, &["has not read it"]);
    ok(call(&ctx, "Read", json!({"path": "setup.cfg"})));
    fx.file("setup.cfg", "[metadata]\nname = t\nversion = 1.3.3\n");
    let e = err(call(
        &ctx,
        "Write",
        json!({"path": "setup.cfg", "content": "version = 1.4.0\n"}),
    ));
    assert_contains(&e, &["changed"]);
    ok(call(&ctx, "Read", json!({"path": "setup.cfg"})));
    let out = ok(call(
        &ctx,
        "Write",
        json!({"path": "setup.cfg", "content": "version = 1.4.0\n"}),
    ));
    assert_contains(content(&out), &["only those lines were replaced"]);
    assert_eq!(
        fs::read_to_string(fx.scope.join("setup.cfg")).unwrap(),
        "[metadata]\nname = t\nversion = 1.4.0\n"
    );
}

#[test]
fn configuring_a_shared_context_is_refused() {
    let fx = Fixture::new();
    let ctx = fx.ctx();
    let _shared = ctx.clone();
    let e = ctx.merging_partial_writes().unwrap_err();
    assert!(e.to_string().contains("already shared"), "{e}");
}
