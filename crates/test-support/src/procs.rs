//! Processes found by a token in their command line: how tests check that a
//! command's processes (a `sleep 30.<unique>`) were killed, instead of
//! waiting and checking that a file they would have written is absent.

use std::time::{Duration, Instant};

/// Whether any process has `token` in its command line.
pub fn process_with(token: &str) -> bool {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return false;
    };
    dir.flatten().any(|e| {
        std::fs::read(e.path().join("cmdline"))
            .map(|c| String::from_utf8_lossy(&c).contains(token))
            .unwrap_or(false)
    })
}

/// Waits until no process has `token` in its command line; false if one is
/// still there after `within` (make the processes live much longer than that,
/// e.g. `sleep 30.<unique>`, so a survivor cannot pass).
pub fn gone_within(token: &str, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if !process_with(token) {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Waits until a process has `token` in its command line; false if none
/// appeared within `within`.
pub fn appears_within(token: &str, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if process_with(token) {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A token unique to this test process and `tag`, as a number `sleep`
/// accepts: `30.<pid><tag>` seconds.
pub fn sleep_token(tag: u32) -> String {
    format!("30.{}{tag}", std::process::id())
}
