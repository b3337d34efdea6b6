//! `pod doctor`'s report, line by line (the library's `doctor::run`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use pod::doctor::{run, sandbox_check, sandbox_unknown};
use pod::runtime::dir::{DirEnv, current_uid};
use sandbox::{Level, SandboxReport};

#[test]
fn sandbox_line_names_level_gaps_and_the_way_out() {
    let full = sandbox_check(&SandboxReport {
        level: Level::Full,
        landlock_abi: Some(7),
        gaps: vec![],
        detail: "namespaces work; Landlock ABI 7".into(),
    });
    assert!(full.ok);
    assert_eq!(full.name, "sandbox");
    assert_eq!(full.detail, "full (namespaces work; Landlock ABI 7)");

    let ll = sandbox_check(&SandboxReport {
        level: Level::Landlock,
        landlock_abi: Some(3),
        gaps: vec!["a".into(), "b".into()],
        detail: "d".into(),
    });
    assert!(ll.ok);
    assert_eq!(ll.detail, "landlock (d); gaps: a; b");

    let none = sandbox_check(&SandboxReport {
        level: Level::None,
        landlock_abi: None,
        gaps: vec![],
        detail: "unshare: EPERM".into(),
    });
    assert!(!none.ok);
    assert!(
        none.detail.starts_with("none: unshare: EPERM;"),
        "{}",
        none.detail
    );
    assert!(none.detail.contains("mode = \"off\""), "{}", none.detail);
    assert!(!sandbox_unknown("x").ok);
}

#[test]
fn reports_places() {
    let tmp = tempfile::tempdir().unwrap();
    let runtime = tmp.path().join("rt");
    let env = DirEnv::from_pairs(
        current_uid(),
        [
            ("POD_RUNTIME_DIR", runtime.to_str().unwrap()),
            ("HOME", tmp.path().to_str().unwrap()),
        ],
    );
    let report = run(&env, current_uid());
    assert!(report.ok(), "{report:?}");
    assert!(runtime.is_dir());
    let model = report
        .checks
        .iter()
        .find(|c| c.name == "local model")
        .unwrap();
    assert!(model.detail.contains("not downloaded"), "{}", model.detail);
    let state = report
        .checks
        .iter()
        .find(|c| c.name == "state dir")
        .unwrap();
    assert!(
        state.detail.ends_with("(not created yet)"),
        "{}",
        state.detail
    );
}

#[test]
fn a_bad_runtime_dir_fails_the_report_with_the_reason() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("not-a-dir");
    std::fs::write(&file, "").unwrap();
    let env = DirEnv::from_pairs(
        current_uid(),
        [
            ("POD_RUNTIME_DIR", file.to_str().unwrap()),
            ("HOME", tmp.path().to_str().unwrap()),
        ],
    );
    let report = run(&env, current_uid());
    assert!(!report.ok());
    let rt = report
        .checks
        .iter()
        .find(|c| c.name == "runtime dir")
        .unwrap();
    assert!(!rt.ok);
    assert!(
        rt.detail.contains("refusing to use runtime dir") || rt.detail.contains("File exists"),
        "{}",
        rt.detail
    );
}
