//! Attachments to user messages: the files a message names, found by path, by
//! name and by the symbols it mentions, within the scope and the caps; an
//! attached file counts as Read.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use common::*;
use serde_json::json;
use tools::grounding::Grounder;

#[test]
fn a_named_file_is_attached_whole_and_may_then_be_edited() {
    let fx = Fixture::new();
    fx.file(
        "rect.py",
        "def area(width, height):\n    return width + height\n",
    );
    fx.file("other.py", "x = 1\n");
    let g = Grounder::new(fx.ctx(), true).ground("fix area in rect.py please", &[], false);
    assert_eq!(g.attached, ["rect.py"]);
    assert_contains(
        &g.text,
        &[
            "fix area in rect.py please",
            "rect.py (2 lines):",
            "return width + height",
        ],
    );
    assert!(!g.text.contains("x = 1"), "only what the message names");
    // The grounder holds a clone of the pod's context: the read record is
    // shared with the tools, so Edit needs no Read first.
    let ctx = fx.ctx();
    let g = Grounder::new(ctx.clone(), true).ground("fix rect.py", &[], false);
    assert_eq!(g.attached, ["rect.py"]);
    ok(call(
        &ctx,
        "Edit",
        json!({"path": "rect.py", "old_string": "width + height", "new_string": "width * height"}),
    ));
}

#[test]
fn a_file_named_without_its_directory_and_a_symbol_find_their_files() {
    let fx = Fixture::new();
    fx.file(
        "src/wire_format.py",
        "import struct\n\n\ndef parse_header(data):\n    return 1\n",
    );
    fx.file("src/app.py", "from wire_format import parse_header\n");
    fx.file("src/view.py", "def render(x):\n    return str(x)\n");
    let g = Grounder::new(fx.ctx(), true).ground("look at view.py", &[], false);
    assert_eq!(g.attached, ["src/view.py"]);
    // The file defining the symbol comes first, then the one using it.
    let g = Grounder::new(fx.ctx(), true).ground("Which file defines parse_header?", &[], false);
    assert_eq!(g.attached, ["src/wire_format.py", "src/app.py"]);
    let g = Grounder::new(fx.ctx(), true).ground("what does render() return", &[], false);
    assert_eq!(g.attached, ["src/view.py"]);
}

#[test]
fn the_first_message_lists_the_working_directory() {
    let fx = Fixture::new();
    fx.file("a.py", "1\n");
    fx.file("pkg/b.py", "2\n");
    fx.file("pkg/c.py", "3\n");
    fx.file("pkg/d.py", "4\n");
    let g = Grounder::new(fx.ctx(), true).ground("how many python files are there?", &[], true);
    assert_contains(
        &g.text,
        &["[Files in the working directory: a.py pkg/b.py pkg/c.py pkg/d.py]"],
    );
    assert!(g.attached.is_empty(), "more than three files: only listed");
    let later = Grounder::new(fx.ctx(), true).ground("and now?", &[], false);
    assert_eq!(later.text, "and now?");
}

#[test]
fn outside_the_scope_and_binary_files_are_never_attached() {
    let fx = Fixture::new();
    fx.file("bin.dat", "\0\0\0binary");
    let secret = fx.outside.join("secret.txt").display().to_string();
    let g = Grounder::new(fx.ctx(), true).ground(
        &format!("read {secret} and bin.dat"),
        std::slice::from_ref(&secret),
        false,
    );
    assert!(g.attached.is_empty(), "{:?}", g.attached);
    assert!(!g.text.contains("TOP SECRET"));
}

#[test]
fn a_long_file_gets_the_region_around_the_symbol_and_no_read_record() {
    let fx = Fixture::new();
    let mut text: String = (0..400).map(|i| format!("x_{i} = {i}\n")).collect();
    text.push_str("def target_fn():\n    return 42\n");
    fx.file("big.py", &text);
    let ctx = fx.ctx();
    let g = Grounder::new(ctx.clone(), true).ground("what does target_fn return?", &[], false);
    assert_eq!(g.attached, ["big.py"]);
    assert_contains(
        &g.text,
        &[
            "big.py, lines 398-",
            "of 402 (Read it for the rest)",
            "return 42",
        ],
    );
    // Only part of it was shown: Edit still wants a Read.
    let e = err(call(
        &ctx,
        "Edit",
        json!({"path": "big.py", "old_string": "return 42", "new_string": "return 43"}),
    ));
    assert!(e.contains("Read"), "{e}");
}

#[test]
fn explicit_file_refs_are_attached_for_any_model_and_names_only_for_small_ones() {
    let fx = Fixture::new();
    fx.file("notes.md", "remember the milk\n");
    // A hosted model's pod: the words of the message are not searched...
    let g = Grounder::new(fx.ctx(), false).ground("summarise notes.md", &[], true);
    assert!(g.attached.is_empty() && g.text == "summarise notes.md");
    // ...but a file_ref segment is attached.
    let g =
        Grounder::new(fx.ctx(), false).ground("summarise @notes.md", &["notes.md".into()], true);
    assert_eq!(g.attached, ["notes.md"]);
    assert_contains(&g.text, &["remember the milk"]);
}

#[test]
fn a_tiny_project_is_shown_whole_on_the_first_turn() {
    let fx = Fixture::new();
    fx.file("server.js", "const PORT = 3000;\n");
    let g = Grounder::new(fx.ctx(), true).ground("listen on port 8080 instead", &[], true);
    assert_eq!(g.attached, ["server.js"]);
    assert_contains(&g.text, &["const PORT = 3000;"]);
    // Only on the first turn.
    let later = Grounder::new(fx.ctx(), true).ground("and 9090 now", &[], false);
    assert!(later.attached.is_empty());
}

#[test]
fn a_childs_task_names_paths_from_its_own_directory() {
    use std::path::Path;
    use tools::grounding::task_for_child;
    let dir = Path::new("docs");
    assert_eq!(
        task_for_child("Create the file docs/README.md containing: hi", dir),
        "Create the file README.md containing: hi"
    );
    assert_eq!(
        task_for_child("write `./docs/a.md` and docs/b.md", dir),
        "write `a.md` and b.md"
    );
    // Only at the start of a word, and only its own directory.
    assert_eq!(
        task_for_child("see mydocs/x and src/docs/y", dir),
        "see mydocs/x and src/docs/y"
    );
    assert_eq!(task_for_child("docs/x", Path::new("")), "docs/x");
}
