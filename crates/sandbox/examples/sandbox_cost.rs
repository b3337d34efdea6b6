//! What the sandbox costs per command: spawn → exit of `true`, with the sandbox (level
//! `full`, and `landlock` alone) and without it, median of N runs each; and level `full`
//! searching a busy `/run`-like tree for sockets to cover (3,000 files, 30 sockets).
//!
//! Usage: `sandbox_cost <path to the pod binary> [runs]` (see `benches/sandbox_cost.sh`).

use std::error::Error;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use sandbox::{
    self, HELPER_SUBCOMMAND, HelperCommand, Level, RunOptions, SandboxPolicy, WriteRoot,
};

/// Median, 10th and 90th percentile of `samples` (sorted in place).
fn stats(samples: &mut [Duration]) -> (Duration, Duration, Duration) {
    samples.sort();
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
    (at(0.5), at(0.1), at(0.9))
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let mut args = std::env::args().skip(1);
    let pod = PathBuf::from(
        args.next()
            .ok_or("usage: sandbox_cost <pod binary> [runs]")?,
    );
    let runs: usize = args.next().map_or(Ok(200), |n| n.parse())?;
    let pod = std::fs::canonicalize(&pod)?;
    // What pods use: the dedicated `pod-sandbox` next to `pod` (else `pod` itself).
    let helper = HelperCommand::for_exe(&pod);
    let whole = HelperCommand::new(&pod, [HELPER_SUBCOMMAND]);
    println!("helper: {}", helper.program().display());
    let report = sandbox::detect_async(&helper).await;
    println!("level: {} ({})", report.level, report.detail);

    let dir = tempfile::tempdir()?;
    let root = std::fs::canonicalize(dir.path())?;
    let scope = root.join("scope");
    let tmp = root.join("runtime/pod/tmp");
    std::fs::create_dir_all(&scope)?;
    std::fs::create_dir_all(&tmp)?;
    let policy = SandboxPolicy {
        cwd: scope.clone(),
        write_roots: vec![WriteRoot {
            path: scope,
            recursive: true,
        }],
        hidden: vec![root.join("runtime")],
        tmp_dir: tmp,
        socket_dirs: vec!["/run".into()],
        ..SandboxPolicy::default()
    };
    // What a desktop's /run looks like to the socket search: many small files, a few
    // dozen sockets (sockets stay on disk once their listener is dropped).
    let busy = root.join("busy-run");
    for d in 0..60 {
        let sub = busy.join(format!("d{d}"));
        std::fs::create_dir_all(&sub)?;
        for f in 0..50 {
            std::fs::write(sub.join(format!("f{f}")), "")?;
        }
        if d % 2 == 0 {
            drop(std::os::unix::net::UnixListener::bind(sub.join("s.sock"))?);
        }
    }
    let mut busy_policy = policy.clone();
    busy_policy.socket_dirs.push(busy);
    let options = RunOptions {
        timeout: Duration::from_secs(30),
        ..RunOptions::default()
    };

    let mut modes = vec![
        ("full", Some(Level::Full), &policy, &helper),
        (
            "full, helper = pod __sandbox-exec",
            Some(Level::Full),
            &policy,
            &whole,
        ),
        ("full+busy", Some(Level::Full), &busy_policy, &helper),
        ("landlock", Some(Level::Landlock), &policy, &helper),
        ("unconfined", None, &policy, &helper),
    ];
    if report.level < Level::Full {
        modes.retain(|(_, l, _, _)| l.is_none_or(|l| l <= report.level));
    }
    println!("{runs} runs of `true` each (after 10 warm-up runs):");
    for (label, level, policy, helper) in modes {
        let mut samples = Vec::with_capacity(runs);
        for i in 0..runs + 10 {
            let start = Instant::now();
            let out = match level {
                Some(level) => sandbox::run_at(helper, level, policy, "true", &options).await?,
                None => sandbox::run_unconfined(policy, "true", &options).await?,
            };
            let took = start.elapsed();
            if !out.status.success() {
                return Err(format!("`true` failed: {out:?}").into());
            }
            if i >= 10 {
                samples.push(took);
            }
        }
        let (median, p10, p90) = stats(&mut samples);
        println!(
            "  {:<36} median {}  (p10 {}, p90 {})",
            label,
            ms(median),
            ms(p10),
            ms(p90)
        );
    }
    Ok(())
}
