//! Session logs hold whole conversations: the directory is 0700 and its files 0600
//! whatever the umask, and looser ones are tightened when a writer opens them.

// Test code: a panic is the failure report (clippy.toml allows this only inside
// `#[test]` functions, not in this file's helpers).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use session_store::{HEAD_FILE_NAME, LOCK_FILE_NAME, SessionWriter};

use crate::session_log::{segment, session_dir, text_body, write_traffic};

/// Set in the child process that reruns a test under another umask.
const UMASK_CHILD: &str = "SESSION_STORE_TEST_UMASK_CHILD";

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

fn set_mode(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// Creates a session with two segments and a head; returns every file in it.
fn session_with_every_file(dir: &Path) -> Vec<PathBuf> {
    write_traffic(dir, 5, 31);
    let (mut writer, _) = SessionWriter::open(dir).unwrap();
    writer.start_segment(Vec::new()).unwrap();
    writer.append(text_body("in segment 2")).unwrap();
    writer.sync().unwrap();
    drop(writer);
    vec![
        dir.join(LOCK_FILE_NAME),
        segment(dir, 1),
        segment(dir, 2),
        dir.join(HEAD_FILE_NAME),
    ]
}

#[test]
fn a_new_session_is_private_whatever_the_umask() {
    let (tmp, dir) = session_dir();
    if std::env::var_os(UMASK_CHILD).is_some() {
        // The parent set umask 000: a file created without an explicit mode is 0666.
        let probe = tmp.path().join("probe");
        std::fs::write(&probe, b"").unwrap();
        assert_eq!(mode(&probe), 0o666, "the child's umask is not 000");
    }

    let files = session_with_every_file(&dir);
    // `sessions/` was missing too: created private as well.
    for created in [dir.parent().unwrap(), &dir] {
        assert_eq!(mode(created), 0o700, "{}", created.display());
    }
    for file in &files {
        assert_eq!(mode(file), 0o600, "{}", file.display());
    }

    if std::env::var_os(UMASK_CHILD).is_none() {
        // Once more in a child process under umask 000 (the umask is per process, and
        // the other tests run on this process's threads).
        let name = format!(
            "{}::a_new_session_is_private_whatever_the_umask",
            module_path!().split_once("::").unwrap().1
        );
        let output = std::process::Command::new("sh")
            .args(["-c", "umask 000 && exec \"$0\" \"$@\""])
            .arg(std::env::current_exe().unwrap())
            .args(["--exact", &name, "--test-threads=1"])
            .env(UMASK_CHILD, "1")
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success() && stdout.contains("1 passed"),
            "the umask-000 run failed:\n{stdout}\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

#[test]
fn loose_permissions_are_tightened_on_open() {
    let (_tmp, dir) = session_dir();
    let files = session_with_every_file(&dir);
    set_mode(&dir, 0o777);
    for file in &files {
        set_mode(file, 0o666);
    }
    // Another program's file in the directory is none of the writer's business.
    let other = dir.join("launch.json");
    std::fs::write(&other, "{}").unwrap();
    set_mode(&other, 0o644);

    let (writer, report) = SessionWriter::open(&dir).unwrap();
    assert_eq!(mode(&dir), 0o700);
    for file in &files {
        assert_eq!(mode(file), 0o600, "{}", file.display());
    }
    assert_eq!(mode(&other), 0o644);
    let mut expected = vec![dir.clone()];
    expected.extend(files.iter().cloned());
    assert_eq!(report.tightened, expected);
    drop(writer);

    // Group-readable only is loose too; tight modes are left as they are.
    set_mode(&segment(&dir, 1), 0o400);
    set_mode(&segment(&dir, 2), 0o640);
    let (_, report) = SessionWriter::open(&dir).unwrap();
    assert_eq!(report.tightened, vec![segment(&dir, 2)]);
    assert_eq!(mode(&segment(&dir, 1)), 0o400);
    assert_eq!(mode(&segment(&dir, 2)), 0o600);
}
