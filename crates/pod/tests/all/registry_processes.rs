//! The scope registry across real processes: racing claimers, pods killed with SIGKILL,
//! a writer killed between writing the temp file and renaming it, suspended parents,
//! corrupt files and lock timeouts.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::registry_support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use pod::runtime::pod_registry::{
    self, DeathReason, LockFileGuard, LockOptions, PodState, Registry, RegistryError,
};
use registry_support::{
    Fixture, Helper, entry_for, entry_for_me, hold_pod_lock, report, role, var, wait_for_eof,
    wait_for_go, write,
};

/// Entry point of helper processes; see `registry_support`.
#[test]
#[ignore = "runs only as a helper process of the other tests"]
fn child_role() {
    let role = role().expect("child_role runs only as a helper process");
    if role == "default_path" {
        match pod_registry::default_registry_path() {
            Ok(path) => report(&format!("PATH {}", path.display())),
            Err(e) => report(&format!("PATH error {e}")),
        }
        return;
    }
    let registry = PathBuf::from(var("POD_TEST_REGISTRY"));
    let runtime = registry.parent().unwrap().to_path_buf();
    match role.as_str() {
        // Take the pod lock, wait for the start signal, claim, report, stay alive.
        "claimer" => {
            let name = var("POD_TEST_NAME");
            let _pod_lock = hold_pod_lock(&runtime, &name);
            let entry = entry_for_me(&name, vec![write(var("POD_TEST_CLAIM"))]);
            report("READY");
            wait_for_go();
            let options = LockOptions::for_pod(&name).with_timeout(Duration::from_secs(30));
            let mut guard = LockFileGuard::open_with(&registry, &options).unwrap();
            match guard.claim(entry) {
                Ok(()) => report("RESULT won"),
                Err(e @ RegistryError::ScopeConflict { .. }) => report(&format!("RESULT lost {e}")),
                Err(e) => report(&format!("RESULT error {e}")),
            }
            // The file must parse after every claim.
            guard.load().unwrap();
            drop(guard);
            wait_for_eof();
        }
        // Claim a path (with or without a pod lock file) and stay until killed.
        "holder" => {
            let name = var("POD_TEST_NAME");
            let _pod_lock = std::env::var("POD_TEST_NO_LOCK_FILE")
                .is_err()
                .then(|| hold_pod_lock(&runtime, &name));
            let entry = entry_for_me(&name, vec![write(var("POD_TEST_CLAIM"))]);
            LockFileGuard::open(&registry)
                .unwrap()
                .claim(entry)
                .unwrap();
            report("CLAIMED");
            wait_for_eof();
        }
        // Only hold a pod lock (the test registers this process itself).
        "pod_lock" => {
            let _pod_lock = hold_pod_lock(&runtime, &var("POD_TEST_NAME"));
            report("LOCKED");
            wait_for_eof();
        }
        // Hold the registry lock itself.
        "registry_lock" => {
            let _guard = LockFileGuard::open_with(&registry, &LockOptions::for_pod("api")).unwrap();
            report("LOCKED");
            wait_for_eof();
        }
        // Add an entry and stop forever between the temp file and the rename.
        "crash_before_rename" => {
            let mut guard = LockFileGuard::open(&registry).unwrap();
            let mut doc = guard.load().unwrap();
            doc.claim(entry_for_me("crasher", vec![write(var("POD_TEST_CLAIM"))]))
                .unwrap();
            guard
                .save_with_pre_rename_hook(&doc, &mut |_| {
                    report("TEMP_WRITTEN");
                    loop {
                        std::thread::sleep(Duration::from_secs(3600));
                    }
                })
                .unwrap();
            unreachable!("the hook never returns");
        }
        other => panic!("unknown helper role {other}"),
    }
}

fn load(path: &Path) -> Registry {
    Registry::from_json(&std::fs::read(path).unwrap(), path).unwrap()
}

fn names(registry: &Registry) -> BTreeSet<String> {
    registry.pods.iter().map(|p| p.full_name.clone()).collect()
}

#[test]
fn thirty_two_processes_race_for_overlapping_scopes() {
    const CLAIMERS: usize = 32;
    const GROUPS: usize = 4;
    let fx = Fixture::new();
    for g in 0..GROUPS {
        fx.dir(&format!("work/g{g}/sub/deeper"));
    }
    fx.dir("work/x");
    // Each group's root is contested by eight claimers through four spellings: the root,
    // a descendant, a deeper descendant, and the root reached through `..`.
    let claim_for = |i: usize| {
        let g = i % GROUPS;
        match (i / GROUPS) % 4 {
            0 => fx.root.join(format!("work/g{g}")),
            1 => fx.root.join(format!("work/g{g}/sub")),
            2 => fx.root.join(format!("work/g{g}/sub/deeper")),
            _ => fx.root.join(format!("work/x/../g{g}")),
        }
    };
    let mut helpers: Vec<Helper> = (0..CLAIMERS)
        .map(|i| {
            Helper::spawn(
                module_path!(),
                "claimer",
                &[
                    ("POD_TEST_REGISTRY", &fx.registry),
                    ("POD_TEST_NAME", Path::new(&format!("c{i}"))),
                    ("POD_TEST_CLAIM", &claim_for(i)),
                ],
            )
        })
        .collect();
    for h in &mut helpers {
        h.expect("READY");
    }

    // Read the file without the lock for the whole race: every version seen must parse.
    let stop = Arc::new(AtomicBool::new(false));
    let reads = Arc::new(AtomicUsize::new(0));
    let reader = {
        let (stop, reads, path) = (stop.clone(), reads.clone(), fx.registry.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                if let Ok(bytes) = std::fs::read(&path) {
                    Registry::from_json(&bytes, &path).unwrap();
                    reads.fetch_add(1, Ordering::Relaxed);
                }
            }
        })
    };

    for h in &mut helpers {
        h.go();
    }
    let results: Vec<String> = helpers.iter_mut().map(|h| h.expect("RESULT")).collect();
    stop.store(true, Ordering::Relaxed);
    reader.join().unwrap();

    // Exactly one winner per group, and the registry holds exactly the winners.
    let mut winners: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for (i, result) in results.iter().enumerate() {
        if result == "won" {
            winners.entry(i % GROUPS).or_default().push(i);
        } else {
            assert!(
                result.starts_with("lost scope conflict: "),
                "c{i}: {result}"
            );
        }
    }
    assert_eq!(winners.len(), GROUPS, "{results:#?}");
    assert!(winners.values().all(|w| w.len() == 1), "{winners:?}");
    let registry = load(&fx.registry);
    let expected: BTreeSet<String> = winners.values().map(|w| format!("c{}", w[0])).collect();
    assert_eq!(names(&registry), expected);
    // Each loser was refused by its own group's winner.
    for (i, result) in results.iter().enumerate() {
        if result != "won" {
            let winner = winners[&(i % GROUPS)][0];
            assert!(
                result.contains(&format!("pod \"c{winner}\"")),
                "c{i} should name c{winner}: {result}"
            );
        }
    }
    assert!(reads.load(Ordering::Relaxed) > 0);
    for h in &mut helpers {
        assert!(h.finish().success());
    }
}

#[test]
fn kill_9_of_a_holder_then_reclaim_frees_its_grant() {
    let fx = Fixture::new();
    let with_lock = fx.dir("work/with-lock");
    let without_lock = fx.dir("work/without-lock");
    let mut a = Helper::spawn(
        module_path!(),
        "holder",
        &[
            ("POD_TEST_REGISTRY", &fx.registry),
            ("POD_TEST_NAME", Path::new("a")),
            ("POD_TEST_CLAIM", &with_lock),
        ],
    );
    a.expect("CLAIMED");
    // `b` has no lock file: liveness falls back to pid and start time.
    let mut b = Helper::spawn(
        module_path!(),
        "holder",
        &[
            ("POD_TEST_REGISTRY", &fx.registry),
            ("POD_TEST_NAME", Path::new("b")),
            ("POD_TEST_CLAIM", &without_lock),
            ("POD_TEST_NO_LOCK_FILE", Path::new("1")),
        ],
    );
    b.expect("CLAIMED");

    let mut guard = LockFileGuard::open(&fx.registry).unwrap();
    // While they live, reclaim keeps them and their paths are taken.
    assert!(pod_registry::reclaim_stale(&mut guard).is_empty());
    for (path, holder) in [(&with_lock, "a"), (&without_lock, "b")] {
        let err = guard
            .claim(entry_for_me("me", vec![write(path.join("x"))]))
            .unwrap_err();
        assert!(
            matches!(&err, RegistryError::ScopeConflict { holder: h, .. } if h == holder),
            "{err}"
        );
    }
    drop(guard);

    a.kill9();
    b.kill9();
    let mut guard = LockFileGuard::open(&fx.registry).unwrap();
    // Nothing changes until someone reclaims.
    assert_eq!(load(&fx.registry).pods.len(), 2);
    let report = pod_registry::reclaim_stale(&mut guard);
    assert!(report.failure.is_none(), "{:?}", report.failure);
    let mut removed: Vec<(String, DeathReason)> = report
        .removed
        .iter()
        .map(|r| (r.full_name.clone(), r.reason.clone()))
        .collect();
    removed.sort_by(|x, y| x.0.cmp(&y.0));
    assert_eq!(
        removed,
        [
            ("a".to_owned(), DeathReason::LockReleased),
            ("b".to_owned(), DeathReason::ProcessGone)
        ]
    );
    assert!(load(&fx.registry).pods.is_empty());
    guard
        .claim(entry_for_me(
            "me",
            vec![write(&with_lock), write(&without_lock)],
        ))
        .unwrap();
}

#[test]
fn kill_between_temp_write_and_rename_leaves_a_valid_registry() {
    let fx = Fixture::new();
    let first = fx.dir("work/first");
    let second = fx.dir("work/second");
    LockFileGuard::open(&fx.registry)
        .unwrap()
        .claim(entry_for_me("first", vec![write(&first)]))
        .unwrap();
    let before = std::fs::read(&fx.registry).unwrap();

    let mut crasher = Helper::spawn(
        module_path!(),
        "crash_before_rename",
        &[
            ("POD_TEST_REGISTRY", &fx.registry),
            ("POD_TEST_CLAIM", &second),
        ],
    );
    crasher.expect("TEMP_WRITTEN");
    crasher.kill9();

    // The old document is intact; the temp file holds the unfinished one, unused.
    assert_eq!(std::fs::read(&fx.registry).unwrap(), before);
    assert_eq!(names(&load(&fx.registry)), BTreeSet::from(["first".into()]));
    let tmp = fx.runtime.join("pods.json.tmp");
    assert!(names(&load(&tmp)).contains("crasher"));

    // The lock died with the writer; the next writer replaces the temp file.
    let mut guard = LockFileGuard::open_with(
        &fx.registry,
        &LockOptions::default().with_timeout(Duration::from_secs(1)),
    )
    .unwrap();
    guard
        .claim(entry_for_me("second", vec![write(&second)]))
        .unwrap();
    assert_eq!(
        names(&load(&fx.registry)),
        BTreeSet::from(["first".into(), "second".into()])
    );
    assert!(!tmp.exists());
}

#[test]
fn a_dead_parent_with_a_live_child_is_suspended_and_keeps_its_grant() {
    let fx = Fixture::new();
    let repo = fx.dir("work/repo");
    let sub = fx.dir("work/repo/sub");
    let spawn = |name: &str| {
        let mut h = Helper::spawn(
            module_path!(),
            "pod_lock",
            &[
                ("POD_TEST_REGISTRY", &fx.registry),
                ("POD_TEST_NAME", Path::new(name)),
            ],
        );
        h.expect("LOCKED");
        h
    };
    let mut parent = spawn("p");
    let mut child = spawn("p.c");
    let parent_entry = entry_for("p", parent.pid(), vec![write(&repo)]);
    let parent_id = parent_entry.instance_id.clone();
    let mut guard = LockFileGuard::open(&fx.registry).unwrap();
    guard.claim(parent_entry).unwrap();
    guard
        .delegate(
            &parent_id,
            entry_for("p.c", child.pid(), vec![]),
            &[write(&sub)],
        )
        .unwrap();
    drop(guard);

    parent.kill9();
    let mut guard = LockFileGuard::open(&fx.registry).unwrap();
    let report = pod_registry::reclaim_stale(&mut guard);
    assert!(report.removed.is_empty(), "{report:?}");
    assert_eq!(report.suspended.len(), 1, "{report:?}");
    assert_eq!(report.suspended[0].full_name, "p");
    assert_eq!(report.suspended[0].reason, DeathReason::LockReleased);
    let doc = guard.load().unwrap();
    let p = doc.get(&parent_id).unwrap();
    assert_eq!(p.state, PodState::Suspended);
    assert_eq!(p.write_rules, vec![write(&repo)]);
    assert_eq!(p.delegated, vec![sub.clone()]);

    // Its remaining grant and its child's are both still taken.
    for (path, holder) in [(repo.join("other"), "p"), (sub.join("x"), "p")] {
        let err = guard
            .claim(entry_for_me("third", vec![write(&path)]))
            .unwrap_err();
        assert!(
            matches!(&err, RegistryError::ScopeConflict { holder: h, holder_state: PodState::Suspended, .. } if h == holder),
            "{err}"
        );
        assert!(err.to_string().contains("suspended"), "{err}");
    }
    // Reclaiming again changes nothing while the child lives.
    assert!(pod_registry::reclaim_stale(&mut guard).is_empty());

    child.kill9();
    let report = pod_registry::reclaim_stale(&mut guard);
    assert_eq!(report.removed.len(), 2, "{report:?}");
    assert!(guard.load().unwrap().pods.is_empty());
    guard
        .claim(entry_for_me("third", vec![write(&repo)]))
        .unwrap();
}

#[test]
fn corrupt_registry_is_reported_and_left_untouched() {
    let fx = Fixture::new();
    let work = fx.dir("work");
    let garbage = b"{\"version\": 1,\n  \"pods\": [ {\"full_name\": \"a\", }\n";
    std::fs::write(&fx.registry, garbage).unwrap();

    let mut guard = LockFileGuard::open(&fx.registry).unwrap();
    let err = guard
        .claim(entry_for_me("me", vec![write(&work)]))
        .unwrap_err();
    let text = err.to_string();
    assert!(
        matches!(err, RegistryError::Corrupt { line: 2, .. }),
        "{err:?}"
    );
    assert!(
        text.starts_with(&format!(
            "registry {} is corrupt at line 2, column",
            fx.registry.display()
        )),
        "{text}"
    );
    assert!(text.contains("run `pod doctor --repair`"), "{text}");
    let report = pod_registry::reclaim_stale(&mut guard);
    assert!(
        matches!(report.failure, Some(RegistryError::Corrupt { .. })),
        "{report:?}"
    );
    assert!(guard.release("whatever").is_err());
    assert_eq!(std::fs::read(&fx.registry).unwrap(), garbage);

    // The repair path rebuilds without reading it.
    let rebuilt = guard.rebuild(vec![]).unwrap();
    assert_eq!(rebuilt, Default::default());
    guard.claim(entry_for_me("me", vec![write(&work)])).unwrap();
}

#[test]
fn lock_timeout_names_the_holder() {
    let fx = Fixture::new();
    let mut holder = Helper::spawn(
        module_path!(),
        "registry_lock",
        &[("POD_TEST_REGISTRY", &fx.registry)],
    );
    holder.expect("LOCKED");
    let options = LockOptions::default().with_timeout(Duration::from_millis(200));
    let err = LockFileGuard::open_with(&fx.registry, &options).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "registry lock {}.lock held by pid {} (pod \"api\") for more than 200 ms; if that process is stuck, stop it and retry",
            fx.registry.display(),
            holder.pid()
        )
    );
    assert!(holder.finish().success());
    LockFileGuard::open_with(&fx.registry, &options).unwrap();
}

#[test]
fn default_registry_path_follows_the_runtime_dir_variables() {
    let fx = Fixture::new();
    let dir_vars = [
        "POD_RUNTIME_DIR",
        "XDG_RUNTIME_DIR",
        "POD_HOME",
        "XDG_DATA_HOME",
        "POD_CONFIG_DIR",
        "XDG_CONFIG_HOME",
        "POD_MODEL_DIR",
        "XDG_CACHE_HOME",
        "HOME",
    ];
    let cases: [(&[(&str, &Path)], PathBuf); 3] = [
        (
            &[("POD_RUNTIME_DIR", &fx.runtime), ("HOME", &fx.root)],
            fx.runtime.join("pods.json"),
        ),
        (
            &[("XDG_RUNTIME_DIR", &fx.root), ("HOME", &fx.root)],
            fx.root.join("pods/pods.json"),
        ),
        // No HOME at all: the runtime dir does not need it.
        (
            &[("POD_RUNTIME_DIR", &fx.runtime)],
            fx.runtime.join("pods.json"),
        ),
    ];
    for (envs, want) in cases {
        let mut helper = Helper::spawn_without(module_path!(), "default_path", envs, &dir_vars);
        assert_eq!(
            helper.expect("PATH"),
            want.display().to_string(),
            "{envs:?}"
        );
        assert!(helper.wait().success());
    }
}
