//! The `Read` tool: numbering, paging, cutting, binary and image handling, output cap.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use common::*;
use serde_json::json;
use tool::ToolError;

#[test]
fn numbers_lines_like_cat_n() {
    let fx = Fixture::new();
    fx.file("a.txt", "one\ntwo\r\nthree");
    let out = ok(call(&fx.ctx(), "Read", json!({"path": "a.txt"})));
    assert_eq!(content(&out), "     1\tone\n     2\ttwo\n     3\tthree\n");
    assert_contains(&out.summary, &["lines 1-3 of 3"]);
}

#[test]
fn absolute_paths_and_unknown_fields_are_accepted() {
    let fx = Fixture::new();
    let path = fx.file("a.txt", "x\n");
    let out = ok(call(
        &fx.ctx(),
        "Read",
        json!({"path": path, "pages": 3, "extra": {"a": 1}}),
    ));
    assert_eq!(content(&out), "     1\tx\n");
}

#[test]
fn offset_and_limit_page_with_a_note_of_what_remains() {
    let fx = Fixture::new();
    let text: String = (1..=10).map(|i| format!("line {i}\n")).collect();
    fx.file("ten.txt", &text);
    let out = ok(call(
        &fx.ctx(),
        "Read",
        json!({"path": "ten.txt", "offset": 4, "limit": 3}),
    ));
    assert_eq!(
        content(&out),
        "     4\tline 4\n     5\tline 5\n     6\tline 6\n[4 more lines; call Read with offset=7 to continue]\n"
    );
    assert_contains(&out.summary, &["lines 4-6 of 10", "4 more"]);
}

#[test]
fn default_limit_is_2000_lines() {
    let fx = Fixture::new();
    let text: String = (1..=2100).map(|i| format!("{i}\n")).collect();
    fx.file("long.txt", &text);
    let out = ok(call(&fx.ctx(), "Read", json!({"path": "long.txt"})));
    assert_contains(
        content(&out),
        &[
            "  2000\t2000\n",
            "[100 more lines; call Read with offset=2001",
        ],
    );
    assert!(!content(&out).contains("\t2001\n"));
}

#[test]
fn offset_past_the_end_says_so() {
    let fx = Fixture::new();
    fx.file("a.txt", "one\ntwo\n");
    let out = ok(call(
        &fx.ctx(),
        "Read",
        json!({"path": "a.txt", "offset": 9}),
    ));
    assert_contains(&out.summary, &["has 2 lines", "offset 9 is past the end"]);
    assert_eq!(out.content, None);
}

#[test]
fn zero_limit_is_an_invalid_argument() {
    let fx = Fixture::new();
    fx.file("a.txt", "one\n");
    let e = call(&fx.ctx(), "Read", json!({"path": "a.txt", "limit": 0})).unwrap_err();
    assert!(matches!(e, ToolError::InvalidArgument(_)), "{e}");
}

#[test]
fn missing_path_argument_is_an_invalid_argument() {
    let fx = Fixture::new();
    let e = call(&fx.ctx(), "Read", json!({"file": "a.txt"})).unwrap_err();
    assert!(matches!(e, ToolError::InvalidArgument(_)), "{e}");
}

#[test]
fn long_lines_are_cut_with_a_marker() {
    let fx = Fixture::new();
    let long = "é".repeat(2500);
    fx.file("wide.txt", &format!("{long}\nshort\n"));
    let out = ok(call(&fx.ctx(), "Read", json!({"path": "wide.txt"})));
    let text = content(&out);
    assert_contains(
        text,
        &[
            "[line cut: 500 more characters]",
            "     2\tshort\n",
            "[1 lines longer than 2000 characters were cut]",
        ],
    );
    assert!(text.len() < 2000 * 2 + 200);
}

#[test]
fn empty_file_is_said_to_be_empty() {
    let fx = Fixture::new();
    fx.file("empty.txt", "");
    let out = ok(call(&fx.ctx(), "Read", json!({"path": "empty.txt"})));
    assert_contains(&out.summary, &["is empty"]);
    assert_eq!(out.content, None);
}

#[test]
fn binary_files_are_refused() {
    let fx = Fixture::new();
    let path = fx.scope.join("blob.bin");
    std::fs::write(&path, b"abc\0def").unwrap();
    let e = err(call(&fx.ctx(), "Read", json!({"path": "blob.bin"})));
    assert_contains(&e, &["is a binary file", "NUL byte at offset 3"]);
    std::fs::write(&path, [b'o', b'k', 0xFF, 0xFE]).unwrap();
    let e = err(call(&fx.ctx(), "Read", json!({"path": "blob.bin"})));
    assert_contains(&e, &["is a binary file", "not UTF-8 at offset 2"]);
}

#[test]
fn images_are_reported_by_type_and_size() {
    let fx = Fixture::new();
    let mut png = b"\x89PNG\r\n\x1a\n\0\0\0\x0dIHDR".to_vec();
    png.extend_from_slice(&640u32.to_be_bytes());
    png.extend_from_slice(&480u32.to_be_bytes());
    png.extend_from_slice(&[0u8; 100]);
    std::fs::write(fx.scope.join("pic.png"), &png).unwrap();
    let out = ok(call(&fx.ctx(), "Read", json!({"path": "pic.png"})));
    assert_contains(
        &out.summary,
        &[
            "PNG image",
            "640x480 pixels",
            &format!("{} bytes", png.len()),
        ],
    );
}

#[test]
fn output_is_capped_with_a_way_to_continue() {
    let fx = Fixture::new();
    let text: String = (1..=1000).map(|i| format!("{i:0>60}\n")).collect();
    fx.file("big.txt", &text);
    let ctx = fx.ctx_with(fx.write_scope(), Vec::new(), 2048);
    let out = ok(call(&ctx, "Read", json!({"path": "big.txt"})));
    let text = content(&out);
    assert!(text.len() <= 2048, "{} bytes", text.len());
    assert_contains(text, &["(output limit reached); call Read with offset="]);
}

#[test]
fn directories_and_missing_files_are_errors() {
    let fx = Fixture::new();
    std::fs::create_dir(fx.scope.join("d")).unwrap();
    assert_contains(
        &err(call(&fx.ctx(), "Read", json!({"path": "d"}))),
        &["is a directory"],
    );
    assert_contains(
        &err(call(&fx.ctx(), "Read", json!({"path": "nope.txt"}))),
        &["nope.txt does not exist"],
    );
}

#[test]
fn fifos_are_refused_without_hanging() {
    let fx = Fixture::new();
    let fifo = fx.scope.join("pipe");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: a valid C string; mkfifo has no other preconditions.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    assert_contains(
        &err(call(&fx.ctx(), "Read", json!({"path": "pipe"}))),
        &["not a regular file"],
    );
}
