//! Every way a path can fall outside what the scope allows, for each file tool: outside
//! the scope, deny rules, non-recursive rules, symlinks and `..` leading out, paths that
//! do not exist yet, `.pods/`, protected directories, and delegation to child pods.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use std::fs;
use std::os::unix::fs::symlink;

use common::*;
use manifest::{Permission, Scope, ScopeRule};
use serde_json::json;
use std::sync::{Arc, RwLock};
use tools::ToolContext;

const OUTSIDE_SCOPE: &str = "outside this pod's scope";

#[test]
fn outside_the_scope_is_refused_for_every_tool() {
    let fx = Fixture::new();
    let ctx = fx.ctx();
    let secret = fx.outside.join("secret.txt");
    for (tool, args) in [
        ("Read", json!({"path": secret})),
        (
            "Write",
            json!({"path": fx.outside.join("new.txt"), "content": "x"}),
        ),
        (
            "Edit",
            json!({"path": secret, "old_string": "TOP", "new_string": "NO"}),
        ),
        ("Glob", json!({"pattern": "*", "path": fx.outside})),
        ("Grep", json!({"pattern": "SECRET", "path": fx.outside})),
        ("Grep", json!({"pattern": "SECRET", "path": secret})),
    ] {
        let e = err(call(&ctx, tool, args));
        assert_contains(&e, &["refused", OUTSIDE_SCOPE]);
    }
    assert!(!fx.outside.join("new.txt").exists());
    assert_eq!(fs::read_to_string(&secret).unwrap(), "TOP SECRET\n");
}

#[test]
fn a_read_deny_hides_content_and_a_write_deny_leaves_read() {
    let fx = Fixture::new();
    fx.file("secrets/key.txt", "KEY=1\n");
    fx.file("vendor/lib.txt", "vendored\n");
    let scope = Scope::new(
        [ScopeRule::recursive(&fx.scope, Permission::Write)],
        [
            ScopeRule::recursive(fx.scope.join("secrets"), Permission::Read),
            ScopeRule::recursive(fx.scope.join("vendor"), Permission::Write),
        ],
    )
    .unwrap();
    let ctx = fx.ctx_with(scope, Vec::new(), 64 * 1024);
    let e = err(call(&ctx, "Read", json!({"path": "secrets/key.txt"})));
    assert_contains(&e, &["read access", "which the manifest denies"]);
    let e = err(call(
        &ctx,
        "Write",
        json!({"path": "secrets/new.txt", "content": "x"}),
    ));
    assert_contains(&e, &["which the manifest denies"]);
    assert!(!fx.scope.join("secrets/new.txt").exists());
    assert_eq!(
        fs::read_dir(fx.scope.join("secrets")).unwrap().count(),
        1,
        "nothing new in the denied dir"
    );

    // Write-denied: readable, not writable.
    ok(call(&ctx, "Read", json!({"path": "vendor/lib.txt"})));
    let e = err(call(
        &ctx,
        "Write",
        json!({"path": "vendor/lib.txt", "content": "x"}),
    ));
    assert_contains(
        &e,
        &["write access", "which the manifest denies (write access)"],
    );
    let e = err(call(
        &ctx,
        "Edit",
        json!({"path": "vendor/lib.txt", "old_string": "vendored", "new_string": "mine"}),
    ));
    assert_contains(&e, &["which the manifest denies"]);
    assert_eq!(
        fs::read_to_string(fx.scope.join("vendor/lib.txt")).unwrap(),
        "vendored\n"
    );

    // Walks skip the denied subtree silently and never show its content.
    let out = ok(call(
        &ctx,
        "Grep",
        json!({"pattern": "KEY|vendored", "output_mode": "content"}),
    ));
    assert!(!content(&out).contains("KEY"), "{}", content(&out));
    assert_contains(content(&out), &["vendored"]);
    let out = ok(call(&ctx, "Glob", json!({"pattern": "**/*.txt"})));
    assert!(!content(&out).contains("key.txt"), "{}", content(&out));
    let e = err(call(
        &ctx,
        "Grep",
        json!({"pattern": "KEY", "path": "secrets"}),
    ));
    assert_contains(&e, &["which the manifest denies"]);
}

#[test]
fn a_non_recursive_rule_covers_direct_children_only() {
    let fx = Fixture::new();
    let flat = fx.scope.join("flat");
    fx.file("flat/top.txt", "top\n");
    fx.file("flat/sub/deep.txt", "deep\n");
    let scope = Scope::new([ScopeRule::non_recursive(&flat, Permission::Write)], []).unwrap();
    let ctx = fx.ctx_with(scope, Vec::new(), 64 * 1024);
    ok(call(&ctx, "Read", json!({"path": flat.join("top.txt")})));
    ok(call(
        &ctx,
        "Write",
        json!({"path": flat.join("new.txt"), "content": "n\n"}),
    ));
    let e = err(call(
        &ctx,
        "Read",
        json!({"path": flat.join("sub/deep.txt")}),
    ));
    assert_contains(&e, &[OUTSIDE_SCOPE, "[non-recursive]"]);
    let e = err(call(
        &ctx,
        "Write",
        json!({"path": flat.join("sub/new.txt"), "content": "x"}),
    ));
    assert_contains(&e, &[OUTSIDE_SCOPE]);
    let e = err(call(
        &ctx,
        "Write",
        json!({"path": flat.join("newdir/new.txt"), "content": "x"}),
    ));
    assert_contains(&e, &[OUTSIDE_SCOPE]);
    assert!(!flat.join("newdir").exists());
    // Walks list the direct children and nothing below.
    let out = ok(call(
        &ctx,
        "Grep",
        json!({"pattern": "top|deep", "path": flat}),
    ));
    assert_contains(content(&out), &["top.txt"]);
    assert!(!content(&out).contains("deep.txt"), "{}", content(&out));
    let out = ok(call(
        &ctx,
        "Glob",
        json!({"pattern": "**/*.txt", "path": flat}),
    ));
    assert!(!content(&out).contains("deep.txt"), "{}", content(&out));
}

#[test]
fn a_file_symlink_pointing_out_is_refused() {
    let fx = Fixture::new();
    symlink(fx.outside.join("secret.txt"), fx.scope.join("link.txt")).unwrap();
    let ctx = fx.ctx();
    let e = err(call(&ctx, "Read", json!({"path": "link.txt"})));
    assert_contains(
        &e,
        &[
            &format!("resolves to {}", fx.outside.join("secret.txt").display()),
            OUTSIDE_SCOPE,
        ],
    );
    let e = err(call(
        &ctx,
        "Write",
        json!({"path": "link.txt", "content": "pwned"}),
    ));
    assert_contains(&e, &[OUTSIDE_SCOPE]);
    assert_eq!(
        fs::read_to_string(fx.outside.join("secret.txt")).unwrap(),
        "TOP SECRET\n"
    );
    // A dangling link pointing out cannot create its target either.
    symlink(fx.outside.join("created.txt"), fx.scope.join("dangling")).unwrap();
    let e = err(call(
        &ctx,
        "Write",
        json!({"path": "dangling", "content": "x"}),
    ));
    assert_contains(&e, &[OUTSIDE_SCOPE]);
    assert!(!fx.outside.join("created.txt").exists());
    // Walks do not follow it.
    let out = ok(call(&ctx, "Grep", json!({"pattern": "SECRET"})));
    assert_eq!(out.content, None, "{out:?}");
}

#[test]
fn a_directory_symlink_pointing_out_is_refused() {
    let fx = Fixture::new();
    symlink(&fx.outside, fx.scope.join("out")).unwrap();
    let ctx = fx.ctx();
    let e = err(call(&ctx, "Read", json!({"path": "out/secret.txt"})));
    assert_contains(&e, &[OUTSIDE_SCOPE]);
    let e = err(call(
        &ctx,
        "Write",
        json!({"path": "out/new.txt", "content": "x"}),
    ));
    assert_contains(&e, &[OUTSIDE_SCOPE]);
    let e = err(call(
        &ctx,
        "Write",
        json!({"path": "out/a/b/new.txt", "content": "x"}),
    ));
    assert_contains(&e, &[OUTSIDE_SCOPE]);
    assert!(!fx.outside.join("new.txt").exists());
    assert!(!fx.outside.join("a").exists());
    let e = err(call(&ctx, "Glob", json!({"pattern": "*", "path": "out"})));
    assert_contains(&e, &[OUTSIDE_SCOPE]);
    let out = ok(call(&ctx, "Glob", json!({"pattern": "**/*"})));
    assert!(!content(&out).contains("secret"), "{}", content(&out));
    let out = ok(call(&ctx, "Grep", json!({"pattern": "SECRET"})));
    assert_eq!(out.content, None);
}

#[test]
fn dotdot_cannot_climb_out() {
    let fx = Fixture::new();
    fs::create_dir(fx.scope.join("sub")).unwrap();
    let ctx = fx.ctx();
    let e = err(call(&ctx, "Read", json!({"path": "../outside/secret.txt"})));
    assert_contains(&e, &[OUTSIDE_SCOPE]);
    let e = err(call(
        &ctx,
        "Write",
        json!({"path": "sub/../../outside/x.txt", "content": "x"}),
    ));
    assert_contains(&e, &[OUTSIDE_SCOPE]);
    // Through a directory that does not exist yet, too.
    let e = err(call(
        &ctx,
        "Write",
        json!({"path": "new/../../outside/y.txt", "content": "x"}),
    ));
    assert_contains(&e, &[OUTSIDE_SCOPE]);
    assert!(!fx.outside.join("x.txt").exists());
    assert!(!fx.outside.join("y.txt").exists());
    assert!(!fx.scope.join("new").exists());
    // `..` that stays inside is fine.
    ok(call(
        &ctx,
        "Write",
        json!({"path": "sub/../inside.txt", "content": "x"}),
    ));
    assert!(fx.scope.join("inside.txt").exists());
}

#[test]
fn paths_that_do_not_exist_yet_are_judged_by_where_they_would_be() {
    let fx = Fixture::new();
    let ctx = fx.ctx();
    let out = ok(call(
        &ctx,
        "Write",
        json!({"path": "a/b/c/new.txt", "content": "hi\n"}),
    ));
    assert_contains(&out.summary, &["Created"]);
    assert_eq!(
        fs::read_to_string(fx.scope.join("a/b/c/new.txt")).unwrap(),
        "hi\n"
    );
    let e = err(call(
        &ctx,
        "Write",
        json!({"path": fx.outside.join("x/y/new.txt"), "content": "x"}),
    ));
    assert_contains(&e, &[OUTSIDE_SCOPE]);
    assert!(!fx.outside.join("x").exists());
    let e = err(call(
        &ctx,
        "Read",
        json!({"path": fx.outside.join("nope.txt")}),
    ));
    assert_contains(&e, &[OUTSIDE_SCOPE]);
}

#[test]
fn a_scope_root_that_does_not_exist_yet_is_created_on_write() {
    let fx = Fixture::new();
    let fresh = fx.root.join("fresh");
    let scope = Scope::new([ScopeRule::recursive(&fresh, Permission::Write)], []).unwrap();
    let ctx = fx.ctx_with(scope, Vec::new(), 64 * 1024);
    ok(call(
        &ctx,
        "Write",
        json!({"path": fresh.join("d/f.txt"), "content": "x"}),
    ));
    assert_eq!(fs::read_to_string(fresh.join("d/f.txt")).unwrap(), "x");
}

#[test]
fn dot_pods_inside_the_scope_is_never_written() {
    let fx = Fixture::new();
    fx.file(".pods/manifest.toml", "[pod]\n");
    fx.file("sub/.pods/x.toml", "a = 1\n");
    let ctx = fx.ctx();
    ok(call(&ctx, "Read", json!({"path": ".pods/manifest.toml"})));
    let e = err(call(
        &ctx,
        "Write",
        json!({"path": ".pods/manifest.toml", "content": "[scope]\n"}),
    ));
    assert_contains(&e, &["inside a `.pods` directory", "protected"]);
    let e = err(call(
        &ctx,
        "Edit",
        json!({"path": ".pods/manifest.toml", "old_string": "[pod]", "new_string": "[x]"}),
    ));
    assert_contains(&e, &["`.pods`"]);
    let e = err(call(
        &ctx,
        "Write",
        json!({"path": "sub/.pods/new.toml", "content": "x"}),
    ));
    assert_contains(&e, &["`.pods`"]);
    let e = err(call(
        &ctx,
        "Write",
        json!({"path": "new/.pods/m.toml", "content": "x"}),
    ));
    assert_contains(&e, &["`.pods`"]);
    // Through a symlink too: the canonical path is what counts.
    symlink(fx.scope.join(".pods"), fx.scope.join("alias")).unwrap();
    let e = err(call(
        &ctx,
        "Write",
        json!({"path": "alias/manifest.toml", "content": "x"}),
    ));
    assert_contains(&e, &["`.pods`"]);
    assert_eq!(
        fs::read_to_string(fx.scope.join(".pods/manifest.toml")).unwrap(),
        "[pod]\n"
    );
    assert!(!fx.scope.join("new").exists());
}

#[test]
fn a_protected_dir_inside_the_scope_is_never_written() {
    let fx = Fixture::new();
    fx.file("state/sessions/log.jsonl", "{}\n");
    let ctx = fx.ctx_with(fx.write_scope(), vec![fx.scope.join("state")], 64 * 1024);
    ok(call(
        &ctx,
        "Read",
        json!({"path": "state/sessions/log.jsonl"}),
    ));
    let e = err(call(
        &ctx,
        "Write",
        json!({"path": "state/sessions/log.jsonl", "content": "x"}),
    ));
    assert_contains(&e, &["which pods keeps for itself", "state"]);
    let e = err(call(
        &ctx,
        "Write",
        json!({"path": "state/new/f", "content": "x"}),
    ));
    assert_contains(&e, &["which pods keeps for itself"]);
    assert!(!fx.scope.join("state/new").exists());
    // A protected dir that does not exist yet is protected all the same.
    let ctx = fx.ctx_with(fx.write_scope(), vec![fx.scope.join("models")], 64 * 1024);
    let e = err(call(
        &ctx,
        "Write",
        json!({"path": "models/m.gguf", "content": "x"}),
    ));
    assert_contains(&e, &["which pods keeps for itself"]);
    assert!(!fx.scope.join("models").exists());
}

/// The runtime dir holds every pod's spilled Bash output and private tmp: the
/// file tools of one pod read only their own part of it (a pod Reads its own
/// long outputs there), and no walk lists another pod's files.
#[test]
fn another_pods_runtime_files_are_hidden_and_its_own_are_not() {
    let fx = Fixture::new();
    let runtime = fx.scope.join("run");
    fx.file("run/victim/bash-output/1.txt", "SECRET from the victim\n");
    fx.file("run/victim/tmp/note", "SECRET note\n");
    fx.file("run/me/bash-output/1.txt", "SECRET of my own\n");
    fx.file("notes.txt", "SECRET in the project\n");
    let ctx = ToolContext::new(
        &fx.scope,
        Arc::new(RwLock::new(fx.write_scope())),
        vec![runtime.clone()],
        64 * 1024,
    )
    .unwrap()
    .hiding(&runtime, &runtime.join("me"))
    .unwrap();
    for (tool, args) in [
        ("Read", json!({"path": "run/victim/bash-output/1.txt"})),
        ("Read", json!({"path": "run/victim/tmp/note"})),
        ("Grep", json!({"pattern": "SECRET", "path": runtime})),
        (
            "Grep",
            json!({"pattern": "SECRET", "path": "run/victim/tmp/note"}),
        ),
        ("Glob", json!({"pattern": "**/*", "path": "run/victim"})),
    ] {
        let e = err(call(&ctx, tool, args.clone()));
        assert_contains(&e, &["refused", "private files", "reads only its own"]);
        assert!(!e.contains("SECRET"), "{tool} {args}: {e}");
    }
    // A walk from above the runtime dir skips it whole.
    let out = ok(call(&ctx, "Grep", json!({"pattern": "SECRET"})));
    assert_contains(content(&out), &["notes.txt"]);
    assert!(!content(&out).contains("run/"), "{}", content(&out));
    let out = ok(call(&ctx, "Glob", json!({"pattern": "**/*.txt"})));
    assert!(!content(&out).contains("victim"), "{}", content(&out));
    // Its own spilled output stays readable and searchable.
    let out = ok(call(
        &ctx,
        "Read",
        json!({"path": "run/me/bash-output/1.txt"}),
    ));
    assert_contains(content(&out), &["SECRET of my own"]);
    let out = ok(call(
        &ctx,
        "Grep",
        json!({"pattern": "SECRET", "path": "run/me"}),
    ));
    assert_contains(content(&out), &["1.txt"]);
    // A context already handed out cannot be changed.
    let handed_out = ctx.clone();
    assert!(ctx.hiding(&runtime, &runtime.join("me")).is_err());
    drop(handed_out);
}

#[test]
fn a_delegated_subtree_is_read_only_until_given_back() {
    let fx = Fixture::new();
    fx.file("child/work.txt", "before\n");
    let ctx = fx.ctx();
    ok(call(&ctx, "Read", json!({"path": "child/work.txt"})));
    ctx.scope()
        .write()
        .unwrap()
        .delegate_away(&fx.scope.join("child"))
        .unwrap();
    let e = err(call(
        &ctx,
        "Write",
        json!({"path": "child/work.txt", "content": "x"}),
    ));
    assert_contains(&e, &["delegated to a child pod"]);
    let e = err(call(
        &ctx,
        "Edit",
        json!({"path": "child/work.txt", "old_string": "before", "new_string": "after"}),
    ));
    assert_contains(&e, &["delegated to a child pod"]);
    let e = err(call(
        &ctx,
        "Write",
        json!({"path": "child/new/x.txt", "content": "x"}),
    ));
    assert_contains(&e, &["delegated to a child pod"]);
    // Nothing changed on disk while it was delegated.
    assert_eq!(
        fs::read_to_string(fx.scope.join("child/work.txt")).unwrap(),
        "before\n"
    );
    assert!(!fx.scope.join("child/new").exists());
    // Still readable.
    ok(call(&ctx, "Read", json!({"path": "child/work.txt"})));
    ctx.scope()
        .write()
        .unwrap()
        .give_back(&fx.scope.join("child"))
        .unwrap();
    ok(call(
        &ctx,
        "Edit",
        json!({"path": "child/work.txt", "old_string": "before", "new_string": "after"}),
    ));
    assert_eq!(
        fs::read_to_string(fx.scope.join("child/work.txt")).unwrap(),
        "after\n"
    );
}

#[test]
fn a_read_only_scope_refuses_writes() {
    let fx = Fixture::new();
    fx.file("a.txt", "a\n");
    let scope = Scope::new([ScopeRule::recursive(&fx.scope, Permission::Read)], []).unwrap();
    let ctx = fx.ctx_with(scope, Vec::new(), 64 * 1024);
    ok(call(&ctx, "Read", json!({"path": "a.txt"})));
    let e = err(call(
        &ctx,
        "Write",
        json!({"path": "a.txt", "content": "b"}),
    ));
    assert_contains(&e, &["write access", OUTSIDE_SCOPE]);
    assert_eq!(fs::read_to_string(fx.scope.join("a.txt")).unwrap(), "a\n");
    let e = err(call(
        &ctx,
        "Write",
        json!({"path": "new.txt", "content": "b"}),
    ));
    assert_contains(&e, &["write access", OUTSIDE_SCOPE]);
    assert!(!fx.scope.join("new.txt").exists());
}
