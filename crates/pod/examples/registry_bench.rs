//! Claim/release throughput of the scope registry under contention.
//!
//! `cargo run --release -p pod --example registry_bench -- [--procs 32] [--cycles 200]
//! [--dir /path]` starts `--procs` copies of itself. Each holds its own pod lock (so the
//! reclaim inside every claim sees it alive), waits for a common start, then runs
//! `--cycles` rounds of claim + release of its own directory, timing how long it waited
//! for the registry lock and how long each operation took. The parent prints throughput
//! and percentiles. `--dir` picks the filesystem (default: a temp dir under `$TMPDIR`).

#![forbid(unsafe_code)]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use manifest::{Permission, ScopeRule};
use pod::runtime::pod_registry::{LockFileGuard, LockOptions, PodEntry, ProcessIdentity};

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = arg(&args, "--worker") {
        worker(
            &i,
            Path::new(&arg(&args, "--registry").unwrap()),
            Path::new(&arg(&args, "--root").unwrap()),
            arg(&args, "--cycles").unwrap().parse().unwrap(),
        );
        return;
    }
    let procs: usize = arg(&args, "--procs").map_or(32, |v| v.parse().unwrap());
    let cycles: usize = arg(&args, "--cycles").map_or(200, |v| v.parse().unwrap());
    let base = arg(&args, "--dir").map_or_else(std::env::temp_dir, PathBuf::from);
    let dir = tempfile::tempdir_in(base).unwrap();
    let root = std::fs::canonicalize(dir.path()).unwrap();
    let runtime = root.join("run");
    std::fs::create_dir(&runtime).unwrap();
    std::fs::set_permissions(&runtime, std::fs::Permissions::from_mode(0o700)).unwrap();
    let registry = runtime.join("pods.json");

    let mut children: Vec<_> = (0..procs)
        .map(|i| {
            Command::new(std::env::current_exe().unwrap())
                .args(["--worker", &i.to_string(), "--cycles", &cycles.to_string()])
                .arg("--registry")
                .arg(&registry)
                .arg("--root")
                .arg(&root)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut readers: Vec<_> = children
        .iter_mut()
        .map(|c| BufReader::new(c.stdout.take().unwrap()))
        .collect();
    for r in &mut readers {
        let mut line = String::new();
        r.read_line(&mut line).unwrap();
        assert_eq!(line.trim(), "READY");
    }
    let start = Instant::now();
    for c in &mut children {
        c.stdin.take().unwrap().write_all(b"g").unwrap();
    }
    let mut waits = Vec::new();
    let mut ops = Vec::new();
    for r in &mut readers {
        let mut text = String::new();
        r.read_to_string(&mut text).unwrap();
        for line in text.lines() {
            let mut fields = line.split_whitespace();
            let target = match fields.next() {
                Some("WAIT") => &mut waits,
                Some("OP") => &mut ops,
                _ => continue,
            };
            target.extend(fields.map(|v| v.parse::<u64>().unwrap()));
        }
    }
    let elapsed = start.elapsed();
    for mut c in children {
        assert!(c.wait().unwrap().success());
    }
    waits.sort_unstable();
    ops.sort_unstable();
    let pct = |v: &[u64], p: f64| {
        let i = ((v.len() as f64 - 1.0) * p).round() as usize;
        Duration::from_micros(v[i])
    };
    let total = procs * cycles * 2;
    println!(
        "{procs} processes x {cycles} cycles (claim + release) on {}",
        root.display()
    );
    println!(
        "{total} operations in {elapsed:.2?}: {:.0} ops/s",
        total as f64 / elapsed.as_secs_f64()
    );
    println!(
        "registry lock wait: p50 {:.2?}, p99 {:.2?}, max {:.2?}",
        pct(&waits, 0.5),
        pct(&waits, 0.99),
        pct(&waits, 1.0)
    );
    println!(
        "operation (wait + load + reclaim + check + save): p50 {:.2?}, p99 {:.2?}",
        pct(&ops, 0.5),
        pct(&ops, 0.99)
    );
}

fn worker(i: &str, registry: &Path, root: &Path, cycles: usize) {
    let name = format!("w{i}");
    let runtime = registry.parent().unwrap();
    std::fs::create_dir_all(runtime.join(&name)).unwrap();
    let pod_lock = std::fs::File::create(runtime.join(&name).join("lock")).unwrap();
    // Held for the bench's life: the entry's pod counts as alive.
    pod_lock.try_lock().unwrap();
    let scope = root.join("work").join(&name);
    std::fs::create_dir_all(&scope).unwrap();
    let identity = ProcessIdentity::current().unwrap();
    let options = LockOptions::for_pod(&name).with_timeout(Duration::from_secs(60));
    println!("READY");
    std::io::stdout().flush().unwrap();
    let mut go = [0u8; 1];
    std::io::stdin().read_exact(&mut go).unwrap();

    let mut waits = Vec::with_capacity(cycles * 2);
    let mut ops = Vec::with_capacity(cycles * 2);
    let micros = |d: Duration| u64::try_from(d.as_micros()).unwrap();
    for _ in 0..cycles {
        let entry = PodEntry::new(&name, runtime.join(&name).join("sock"), identity.clone())
            .unwrap()
            .with_write_rules([ScopeRule::recursive(&scope, Permission::Write)]);
        let id = entry.instance_id.clone();

        let t0 = Instant::now();
        let mut guard = LockFileGuard::open_with(registry, &options).unwrap();
        waits.push(micros(t0.elapsed()));
        guard.claim(entry).unwrap();
        drop(guard);
        ops.push(micros(t0.elapsed()));

        let t0 = Instant::now();
        let mut guard = LockFileGuard::open_with(registry, &options).unwrap();
        waits.push(micros(t0.elapsed()));
        guard.release(&id).unwrap();
        drop(guard);
        ops.push(micros(t0.elapsed()));
    }
    let join = |v: &[u64]| v.iter().map(u64::to_string).collect::<Vec<_>>().join(" ");
    println!("WAIT {}", join(&waits));
    println!("OP {}", join(&ops));
}
