//! The second line of defence: a directory swapped for a symlink after the scope check
//! but before the open must not let a read or write escape. These call the scoped file
//! functions directly, with the swap between `check` and the open.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use std::fs;
use std::os::unix::fs::symlink;
use std::path::Path;

use common::*;
use tools::scoped_fs::{self, AccessError};

/// Replaces the directory `dir` by a symlink to `target`.
fn swap_for_symlink(dir: &Path, target: &Path) {
    fs::rename(dir, dir.with_extension("moved")).unwrap();
    symlink(target, dir).unwrap();
}

#[test]
fn a_write_after_a_swap_writes_nothing_outside() {
    let fx = Fixture::new();
    fs::create_dir(fx.scope.join("d")).unwrap();
    let ctx = fx.ctx();
    let checked = scoped_fs::check_write(&ctx, &fx.scope.join("d/f.txt")).unwrap();
    assert_eq!(checked.canonical(), fx.scope.join("d/f.txt"));
    swap_for_symlink(&fx.scope.join("d"), &fx.outside);
    let e = checked.write_atomic(&ctx, b"escaped").unwrap_err();
    assert!(matches!(e, AccessError::Raced { .. }), "{e}");
    assert_contains(
        &e.to_string(),
        &["a symlink appeared", "nothing was read or written"],
    );
    assert!(!fx.outside.join("f.txt").exists());
    assert_eq!(fs::read_dir(&fx.outside).unwrap().count(), 1);
}

#[test]
fn a_write_creating_parents_after_a_swap_writes_nothing_outside() {
    let fx = Fixture::new();
    fs::create_dir(fx.scope.join("d")).unwrap();
    let ctx = fx.ctx();
    let checked = scoped_fs::check_write(&ctx, &fx.scope.join("d/new/deeper/f.txt")).unwrap();
    swap_for_symlink(&fx.scope.join("d"), &fx.outside);
    let e = checked.write_atomic(&ctx, b"escaped").unwrap_err();
    assert!(matches!(e, AccessError::Raced { .. }), "{e}");
    assert!(!fx.outside.join("new").exists());
}

#[test]
fn a_write_whose_target_became_a_symlink_is_refused() {
    let fx = Fixture::new();
    let ctx = fx.ctx();
    let checked = scoped_fs::check_write(&ctx, &fx.scope.join("f.txt")).unwrap();
    symlink(fx.outside.join("secret.txt"), fx.scope.join("f.txt")).unwrap();
    let e = checked.write_atomic(&ctx, b"escaped").unwrap_err();
    assert!(matches!(e, AccessError::Raced { .. }), "{e}");
    assert_eq!(
        fs::read_to_string(fx.outside.join("secret.txt")).unwrap(),
        "TOP SECRET\n"
    );
}

#[test]
fn a_read_after_a_swap_reads_nothing_outside() {
    let fx = Fixture::new();
    fx.file("d/secret.txt", "inside\n");
    let ctx = fx.ctx();
    let checked = scoped_fs::check_read(&ctx, &fx.scope.join("d/secret.txt")).unwrap();
    swap_for_symlink(&fx.scope.join("d"), &fx.outside);
    let e = checked.open_read().unwrap_err();
    assert!(matches!(e, AccessError::Raced { .. }), "{e}");
}

#[test]
fn a_swap_into_a_denied_subtree_inside_the_scope_is_caught_too() {
    let fx = Fixture::new();
    fx.file("d/notes.txt", "fine\n");
    fx.file("secrets/notes.txt", "KEY\n");
    let scope = manifest::Scope::new(
        [manifest::ScopeRule::recursive(
            &fx.scope,
            manifest::Permission::Write,
        )],
        [manifest::ScopeRule::recursive(
            fx.scope.join("secrets"),
            manifest::Permission::Read,
        )],
    )
    .unwrap();
    let ctx = fx.ctx_with(scope, Vec::new(), 4096);
    let checked = scoped_fs::check_read(&ctx, &fx.scope.join("d/notes.txt")).unwrap();
    swap_for_symlink(&fx.scope.join("d"), &fx.scope.join("secrets"));
    let e = checked.open_read().unwrap_err();
    assert!(matches!(e, AccessError::Raced { .. }), "{e}");
}

#[test]
fn a_swapped_walk_root_is_refused() {
    let fx = Fixture::new();
    fs::create_dir(fx.scope.join("d")).unwrap();
    let ctx = fx.ctx();
    let checked = scoped_fs::check_read(&ctx, &fx.scope.join("d")).unwrap();
    swap_for_symlink(&fx.scope.join("d"), &fx.outside);
    let e = checked.open_dir().unwrap_err();
    assert!(matches!(e, AccessError::Raced { .. }), "{e}");
}

#[test]
fn a_read_check_cannot_be_used_to_write() {
    let fx = Fixture::new();
    let scope = manifest::Scope::new(
        [manifest::ScopeRule::recursive(
            &fx.scope,
            manifest::Permission::Read,
        )],
        [],
    )
    .unwrap();
    let ctx = fx.ctx_with(scope, Vec::new(), 4096);
    let checked = scoped_fs::check_read(&ctx, &fx.scope.join("f.txt")).unwrap();
    let e = checked.write_atomic(&ctx, b"x").unwrap_err();
    assert_contains(
        &e.to_string(),
        &["write access", "outside this pod's scope"],
    );
    assert!(!fx.scope.join("f.txt").exists());
}

#[test]
fn the_scope_is_checked_live_between_calls() {
    let fx = Fixture::new();
    let ctx = fx.ctx();
    let checked = scoped_fs::check_write(&ctx, &fx.scope.join("sub/f.txt")).unwrap();
    ctx.scope()
        .write()
        .unwrap()
        .delegate_away(&fx.scope.join("sub"))
        .unwrap();
    // The directory to create is re-checked against the scope as it is now.
    let e = checked.write_atomic(&ctx, b"x").unwrap_err();
    assert_contains(&e.to_string(), &["delegated to a child pod"]);
    assert!(!fx.scope.join("sub").exists());
}
