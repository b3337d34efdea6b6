//! The command sandbox against escapes, with the real `pod` binary as its helper.
//!
//! Every case checks ON DISK (or at the socket) that nothing happened outside the scope,
//! and most pair the escape with a write that must work, so a command that failed to run
//! at all cannot pass. The tests fail when the host offers less than level `full`, unless
//! `POD_ALLOW_NO_SANDBOX=1` is set (CI never sets it).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::os::linux::net::SocketAddrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::{SocketAddr, UnixListener};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use manifest::SandboxMode;
use sandbox::{
    self, CommandOutput, CommandStatus, HelperCommand, Level, RunOptions, SandboxError,
    SandboxPolicy, Unreadable, WriteRoot,
};
use test_support::procs::{gone_within, process_with, sleep_token};
use tools::bash::{Bash, BashConfig, PolicySource, SPILL_DIR_NAME};

fn helper() -> HelperCommand {
    HelperCommand::new(env!("CARGO_BIN_EXE_pod"), [sandbox::HELPER_SUBCOMMAND])
}

/// Whether the sandboxed cases can run: panics below level `full` unless
/// `POD_ALLOW_NO_SANDBOX=1`.
fn sandbox_ready() -> bool {
    let report = sandbox::detect(&helper());
    if report.level == Level::Full {
        return true;
    }
    if std::env::var("POD_ALLOW_NO_SANDBOX").as_deref() == Ok("1") {
        test_support::loud(&format!(
            "!!! SKIPPED a sandbox escape case: the sandbox level here is {} ({}), and POD_ALLOW_NO_SANDBOX=1",
            report.level, report.detail
        ));
        return false;
    }
    panic!(
        "the sandbox level here is {} ({}), these tests need full; set POD_ALLOW_NO_SANDBOX=1 to skip them on such a host",
        report.level, report.detail
    );
}

/// A canonical temp dir (not under /tmp, which the sandbox replaces) holding the scope,
/// a sibling `outside/` with a file in it, a runtime dir with the pod's tmp dir, and a
/// shared cache dir.
struct Fx {
    _dir: tempfile::TempDir,
    scope: PathBuf,
    outside: PathBuf,
    runtime: PathBuf,
    tmp: PathBuf,
    cache: PathBuf,
}

impl Fx {
    fn new() -> Self {
        Fx::new_in(Path::new(env!("CARGO_TARGET_TMPDIR")))
    }

    fn new_in(base: &Path) -> Self {
        std::fs::create_dir_all(base).unwrap();
        let dir = tempfile::tempdir_in(base).unwrap();
        let root = std::fs::canonicalize(dir.path()).unwrap();
        let fx = Fx {
            scope: root.join("scope"),
            outside: root.join("outside"),
            runtime: root.join("runtime"),
            tmp: root.join("runtime/pod/tmp"),
            cache: root.join("cache"),
            _dir: dir,
        };
        for d in [&fx.scope, &fx.outside, &fx.tmp, &fx.cache] {
            std::fs::create_dir_all(d).unwrap();
        }
        std::fs::write(fx.outside.join("f0"), "orig").unwrap();
        fx
    }

    fn policy(&self) -> SandboxPolicy {
        SandboxPolicy {
            cwd: self.scope.clone(),
            write_roots: vec![WriteRoot {
                path: self.scope.clone(),
                recursive: true,
            }],
            shared: vec![self.cache.clone()],
            hidden: vec![self.runtime.clone()],
            tmp_dir: self.tmp.clone(),
            ..SandboxPolicy::default()
        }
    }

    fn out(&self, name: &str) -> PathBuf {
        self.outside.join(name)
    }

    fn o(&self) -> String {
        self.outside.display().to_string()
    }

    /// Nothing but `f0` (unchanged) is in `outside/`.
    fn assert_outside_untouched(&self) {
        let names: Vec<String> = std::fs::read_dir(&self.outside)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, vec!["f0"], "something was created outside the scope");
        assert_eq!(std::fs::read_to_string(self.out("f0")).unwrap(), "orig");
    }
}

fn options(timeout: Duration) -> RunOptions {
    RunOptions {
        timeout,
        ..RunOptions::default()
    }
}

async fn run_with(helper: &HelperCommand, policy: &SandboxPolicy, command: &str) -> CommandOutput {
    sandbox::run(helper, policy, command, &options(Duration::from_secs(60)))
        .await
        .unwrap()
}

async fn run(fx: &Fx, command: &str) -> CommandOutput {
    let out = run_with(&helper(), &fx.policy(), command).await;
    assert_eq!(out.level, Some(Level::Full));
    out
}

#[test]
fn level_is_detected_as_full_with_landlock() {
    if !sandbox_ready() {
        return;
    }
    let report = sandbox::detect(&helper());
    assert_eq!(report.level, Level::Full);
    assert!(report.landlock_abi.unwrap() >= 1);
    // The dedicated helper binary next to `pod`, which pods use, works the same.
    let dedicated = HelperCommand::for_exe(Path::new(env!("CARGO_BIN_EXE_pod")));
    assert_eq!(
        dedicated.program(),
        Path::new(env!("CARGO_BIN_EXE_pod-sandbox"))
    );
    assert_eq!(sandbox::detect(&dedicated), report);
    assert!(
        report.detail.contains("namespaces work"),
        "{}",
        report.detail
    );
    // `pod doctor` shows the same level.
    let fx = Fx::new();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_pod"))
        .args(["doctor", "--json"])
        .env("POD_RUNTIME_DIR", fx.runtime.join("doctor"))
        .output()
        .unwrap();
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let check = json["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "sandbox")
        .unwrap();
    assert_eq!(check["ok"], true);
    assert!(
        check["detail"].as_str().unwrap().starts_with("full ("),
        "{check}"
    );
}

/// One write out of the scope that must fail, at level `full`: what it needs in place, the
/// command (it pairs the escape with a write that must work, so that a command that failed
/// to run at all cannot pass) and what must hold afterwards. After every case nothing but
/// `f0`, unchanged, is in `outside/`.
struct Escape {
    name: &'static str,
    setup: fn(&Fx),
    command: fn(&Fx) -> String,
    check: fn(&Fx, &CommandOutput),
}

/// The cases of [`writes_out_of_the_scope_fail`].
const ESCAPES: &[Escape] = &[
    Escape {
        name: "redirects_out_of_the_scope_fail",
        setup: |_| {},
        command: |fx| {
            format!(
                "echo in > inside; echo x > {o}/f; echo x > ../outside/g; echo x >> {o}/f0",
                o = fx.o()
            )
        },
        check: |fx, out| {
            assert!(fx.scope.join("inside").exists(), "{out:?}");
            assert!(
                out.output.text().contains("Read-only file system"),
                "{out:?}"
            );
        },
    },
    Escape {
        name: "cd_to_root_then_touch_fails",
        setup: |_| {},
        command: |fx| {
            format!(
                "cd / && touch {o}/t; cd / && touch .{r}; echo ok > {s}/ok",
                o = fx.o(),
                r = at_root(fx).display(),
                s = fx.scope.display()
            )
        },
        check: |fx, _| {
            let at_root = at_root(fx);
            let escaped = at_root.exists();
            let _ = std::fs::remove_file(&at_root);
            assert!(!escaped, "created {}", at_root.display());
            assert!(fx.scope.join("ok").exists());
        },
    },
    Escape {
        name: "mv_cp_and_links_out_of_the_scope_fail",
        setup: |fx| std::fs::write(fx.scope.join("inside.txt"), "data").unwrap(),
        command: |fx| {
            format!(
                "mv inside.txt {o}/moved; cp inside.txt {o}/copied; ln -s /etc/passwd {o}/sym; ln inside.txt {o}/hard; cp inside.txt copy-in",
                o = fx.o()
            )
        },
        check: |fx, _| {
            assert_eq!(
                std::fs::read_to_string(fx.scope.join("inside.txt")).unwrap(),
                "data"
            );
            assert!(fx.scope.join("copy-in").exists());
        },
    },
    Escape {
        name: "writing_through_a_symlink_that_points_outside_fails",
        setup: |fx| {
            std::os::unix::fs::symlink(&fx.outside, fx.scope.join("to-dir")).unwrap();
            std::os::unix::fs::symlink(fx.out("f0"), fx.scope.join("to-file")).unwrap();
            std::os::unix::fs::symlink(fx.out("dangling"), fx.scope.join("to-new")).unwrap();
        },
        command: |_| {
            "echo x > to-dir/new; echo pwned > to-file; echo x > to-new; echo ok > ok".into()
        },
        check: |fx, _| assert!(fx.scope.join("ok").exists()),
    },
    Escape {
        name: "python_cannot_write_outside",
        setup: |_| {},
        command: |fx| {
            format!(
                "python3 -c \"open('py_in','w').write('ok')\"; python3 -c \"open('{o}/py_out','w').write('x')\"",
                o = fx.o()
            )
        },
        check: |fx, out| {
            assert_eq!(
                std::fs::read_to_string(fx.scope.join("py_in")).unwrap(),
                "ok",
                "{out:?}"
            );
            assert!(!out.status.success());
        },
    },
    Escape {
        name: "the_command_cannot_rearrange_mounts",
        setup: |fx| std::fs::create_dir(fx.scope.join("in")).unwrap(),
        command: |fx| {
            format!(
                "mount --bind {o} in; mount -o remount,rw /; umount -l {o}; echo x > in/via-bind; echo x > {o}/f; \
                 unshare -rm sh -c 'echo x > {o}/nested'; echo ok > ok",
                o = fx.o()
            )
        },
        check: |fx, _| assert!(fx.scope.join("ok").exists()),
    },
];

/// A path at the root named after `fx`'s temp dir: a name no earlier run can have left
/// behind.
fn at_root(fx: &Fx) -> PathBuf {
    let unique = fx
        .outside
        .parent()
        .unwrap()
        .file_name()
        .unwrap()
        .to_string_lossy();
    PathBuf::from(format!("/pods-escape-{unique}"))
}

/// Every case of [`ESCAPES`] in a fresh [`Fx`], all at once; a failure names its case and
/// what escaped.
#[tokio::test]
async fn writes_out_of_the_scope_fail() {
    if !sandbox_ready() {
        return;
    }
    let runs: Vec<_> = ESCAPES
        .iter()
        .map(|case| {
            let run = tokio::spawn(async move {
                let fx = Fx::new();
                (case.setup)(&fx);
                let out = run(&fx, &(case.command)(&fx)).await;
                (case.check)(&fx, &out);
                fx.assert_outside_untouched();
            });
            (case.name, run)
        })
        .collect();
    let mut failures = Vec::new();
    for (name, run) in runs {
        if let Err(e) = run.await {
            let why = match e.try_into_panic() {
                Ok(panic) => panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                    .unwrap_or_default(),
                Err(e) => e.to_string(),
            };
            failures.push(format!("case {name}: {why}"));
        }
    }
    assert!(
        failures.is_empty(),
        "escape cases failed:\n{}",
        failures.join("\n")
    );
}

#[tokio::test]
async fn chmod_and_touch_outside_change_nothing() {
    if !sandbox_ready() {
        return;
    }
    let fx = Fx::new();
    let target = fx.out("f0");
    std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o644)).unwrap();
    let before = std::fs::metadata(&target).unwrap();
    std::fs::write(fx.scope.join("mine"), "").unwrap();
    run(
        &fx,
        &format!(
            "chmod 777 {t}; touch -d @978307200 {t}; chmod 600 mine; touch -d @978307200 mine",
            t = target.display()
        ),
    )
    .await;
    let after = std::fs::metadata(&target).unwrap();
    assert_eq!(after.mode(), before.mode());
    assert_eq!(after.mtime(), before.mtime());
    assert_eq!(after.mtime_nsec(), before.mtime_nsec());
    // The same commands work inside the scope.
    let mine = std::fs::metadata(fx.scope.join("mine")).unwrap();
    assert_eq!(mine.mode() & 0o777, 0o600);
    assert_eq!(mine.mtime(), 978_307_200);
}

#[tokio::test]
async fn background_processes_die_when_the_command_returns() {
    if !sandbox_ready() {
        return;
    }
    let fx = Fx::new();
    let token = sleep_token(10);
    let out = run(
        &fx,
        &format!(
            "echo early > early; \
             setsid sh -c 'sleep {token}; echo late > late' & \
             nohup sh -c 'sleep {token}; echo late2 > late2' > /dev/null 2>&1 & \
             (sleep {token}; echo late3 > late3) & disown; \
             echo started"
        ),
    )
    .await;
    assert_eq!(out.output.text(), "started\n");
    assert!(fx.scope.join("early").exists());
    // They would sleep 30 s: any still there after 10 s outlived the command.
    assert!(
        gone_within(&token, Duration::from_secs(10)),
        "a background process outlived the command"
    );
}

#[tokio::test]
async fn delegated_subtrees_are_read_only_and_cannot_be_unmounted() {
    if !sandbox_ready() {
        return;
    }
    let fx = Fx::new();
    let child = fx.scope.join("child");
    std::fs::create_dir(&child).unwrap();
    std::fs::write(child.join("existing"), "orig").unwrap();
    let fresh = fx.scope.join("not-yet");
    let mut policy = fx.policy();
    policy.delegated = vec![child.clone(), fresh.clone()];
    let out = run_with(
        &helper(),
        &policy,
        "echo x > child/f; echo x > child/existing; rm -f child/existing; \
         mkdir -p not-yet/deep; echo x > not-yet/f; \
         umount child; mount -o remount,rw child; echo y > child/f2; \
         echo ok > other",
    )
    .await;
    assert!(fx.scope.join("other").exists(), "{out:?}");
    assert_eq!(
        std::fs::read_to_string(child.join("existing")).unwrap(),
        "orig"
    );
    assert!(!child.join("f").exists());
    assert!(!child.join("f2").exists());
    // The missing delegated dir was created empty so that it could be covered.
    assert!(fresh.is_dir());
    assert_eq!(std::fs::read_dir(&fresh).unwrap().count(), 0);
}

#[tokio::test]
async fn unix_sockets_in_the_runtime_dir_and_abstract_ones_are_unreachable() {
    if !sandbox_ready() {
        return;
    }
    let fx = Fx::new();
    let hidden_path = fx.runtime.join("pod/sock");
    let hidden = UnixListener::bind(&hidden_path).unwrap();
    hidden.set_nonblocking(true).unwrap();
    let control_path = fx.scope.join("ctl.sock");
    let control = UnixListener::bind(&control_path).unwrap();
    control.set_nonblocking(true).unwrap();
    let abstract_name = format!("pods-sandbox-test-{}", std::process::id());
    let abstract_sock =
        UnixListener::bind_addr(&SocketAddr::from_abstract_name(&abstract_name).unwrap()).unwrap();
    abstract_sock.set_nonblocking(true).unwrap();

    let script = connect_script(&[
        ("control", py_path(&control_path)),
        ("hidden", py_path(&hidden_path)),
        ("abstract", format!("'\\0' + {abstract_name:?}")),
    ]);
    std::fs::write(fx.scope.join("connect.py"), script).unwrap();
    let out = run(
        &fx,
        &format!("python3 connect.py; ls -A {}", fx.runtime.display()),
    )
    .await;
    let text = out.output.text();
    assert!(text.contains("control connected"), "{text}");
    assert!(text.contains("hidden refused"), "{text}");
    assert!(
        control.accept().is_ok(),
        "the control connection never arrived"
    );
    assert_eq!(
        hidden.accept().unwrap_err().kind(),
        std::io::ErrorKind::WouldBlock,
        "a command reached a socket in the runtime dir"
    );
    let abi = sandbox::detect(&helper()).landlock_abi.unwrap_or(0);
    if abi >= 6 {
        assert!(text.contains("abstract refused"), "{text}");
        assert_eq!(
            abstract_sock.accept().unwrap_err().kind(),
            std::io::ErrorKind::WouldBlock
        );
    } else {
        test_support::loud(&format!(
            "!!! SKIPPED the abstract-socket half of a sandbox case: Landlock ABI {abi} < 6 cannot scope abstract sockets"
        ));
    }
    // The runtime dir looks empty inside: `ls -A` added no line.
    assert_eq!(
        text.lines().count(),
        3,
        "runtime dir not empty inside: {text}"
    );
}

/// `path` as a Python string literal.
fn py_path(path: &Path) -> String {
    format!("{:?}", path.display().to_string())
}

/// A Python script that tries to connect to each `(name, address)` (a Python
/// expression, see [`py_path`]) and prints `<name> connected` or `<name> refused`.
fn connect_script(targets: &[(&str, String)]) -> String {
    let list: Vec<String> = targets
        .iter()
        .map(|(name, addr)| format!("({name:?}, {addr})"))
        .collect();
    format!(
        "import socket\n\
         for name, addr in [{}]:\n\
         \x20   s = socket.socket(socket.AF_UNIX)\n\
         \x20   try:\n\
         \x20       s.connect(addr); print(name, 'connected')\n\
         \x20   except OSError as e:\n\
         \x20       print(name, 'refused', e.errno)\n",
        list.join(", ")
    )
}

#[tokio::test]
async fn unix_sockets_under_the_socket_dirs_are_covered() {
    if !sandbox_ready() {
        return;
    }
    let fx = Fx::new();
    let run_dir = fx.outside.parent().unwrap().join("run");
    std::fs::create_dir_all(run_dir.join("user/1000")).unwrap();
    let listen = |path: PathBuf| {
        let l = UnixListener::bind(&path).unwrap();
        l.set_nonblocking(true).unwrap();
        (l, path)
    };
    let (bus, bus_path) = listen(run_dir.join("user/1000/bus"));
    let (engine, engine_path) = listen(run_dir.join("docker.sock"));
    let (control, control_path) = listen(fx.scope.join("ctl.sock"));
    let mut policy = fx.policy();
    // The scope is searched too: its own sockets must stay reachable.
    policy.socket_dirs = vec![run_dir.clone(), fx.scope.clone()];
    std::fs::write(
        fx.scope.join("connect.py"),
        connect_script(&[
            ("bus", py_path(&bus_path)),
            ("engine", py_path(&engine_path)),
            ("control", py_path(&control_path)),
        ]),
    )
    .unwrap();
    let out = run_with(&helper(), &policy, "python3 connect.py").await;
    let text = out.output.text();
    assert!(text.contains("control connected"), "{text}");
    assert!(text.contains("bus refused"), "{text}");
    assert!(text.contains("engine refused"), "{text}");
    assert!(
        control.accept().is_ok(),
        "the control connection never arrived"
    );
    for (name, l) in [("bus", &bus), ("engine", &engine)] {
        assert_eq!(
            l.accept().unwrap_err().kind(),
            std::io::ErrorKind::WouldBlock,
            "a command reached the {name} socket"
        );
    }
    // Covering changed nothing on disk.
    use std::os::unix::fs::FileTypeExt;
    assert!(bus_path.symlink_metadata().unwrap().file_type().is_socket());
}

#[tokio::test]
async fn paths_denied_for_reading_are_covered_for_commands() {
    if !sandbox_ready() {
        return;
    }
    let fx = Fx::new();
    let s = &fx.scope;
    for dir in ["secrets/deeper", "keys/sub"] {
        std::fs::create_dir_all(s.join(dir)).unwrap();
    }
    let files = [
        ("secrets/deeper/key", "TOKEN-A"),
        (".env", "TOKEN-B"),
        ("keys/k", "TOKEN-C"),
        ("keys/sub/ok", "VISIBLE-D"),
        ("plain", "VISIBLE-E"),
    ];
    for (name, text) in files {
        std::fs::write(s.join(name), text).unwrap();
    }
    std::fs::write(fx.out("private"), "TOKEN-F").unwrap();
    let mut policy = fx.policy();
    let unreadable = [
        (s.join("secrets"), true),
        (s.join(".env"), true),
        (s.join("keys"), false),
        (fx.out("private"), true),
    ];
    for (path, recursive) in &unreadable {
        policy.denied.push(path.clone());
        policy.unreadable.push(Unreadable {
            path: path.clone(),
            recursive: *recursive,
        });
    }
    let out = run_with(
        &helper(),
        &policy,
        &format!(
            "cat secrets/deeper/key .env keys/k keys/sub/ok plain {o}/private; echo; \
             ls -A secrets; cp keys/k copied; grep -rh TOKEN . {o}; \
             echo x >> .env; echo x > keys/k; echo done",
            o = fx.o()
        ),
    )
    .await;
    let text = out.output.text();
    assert!(
        text.contains("VISIBLE-D") && text.contains("VISIBLE-E"),
        "{text}"
    );
    assert!(text.trim_end().ends_with("done"), "{text}");
    assert!(!text.contains("TOKEN"), "a denied file was read: {text}");
    // Writing a covered file is refused, not silently discarded.
    let refusals =
        text.matches("Read-only file system").count() + text.matches("Permission denied").count();
    assert!(refusals >= 2, "{text}");
    assert!(
        !text.lines().any(|l| l.trim() == "deeper"),
        "a denied dir was listed: {text}"
    );
    // Nothing changed on disk, and the copy holds nothing.
    for (name, content) in files {
        assert_eq!(std::fs::read_to_string(s.join(name)).unwrap(), content);
    }
    assert_eq!(
        std::fs::read_to_string(fx.out("private")).unwrap(),
        "TOKEN-F"
    );
    assert_eq!(
        std::fs::read_to_string(s.join("copied")).unwrap_or_default(),
        ""
    );
}

#[tokio::test]
async fn system_v_ipc_of_the_host_is_out_of_reach() {
    if !sandbox_ready() {
        return;
    }
    let fx = Fx::new();
    // A message queue of "another program" of the same user.
    let made = std::process::Command::new("ipcmk")
        .arg("-Q")
        .output()
        .unwrap();
    assert!(made.status.success(), "ipcmk: {made:?}");
    let text = String::from_utf8_lossy(&made.stdout).into_owned();
    let id: String = text.chars().filter(char::is_ascii_digit).collect();
    assert!(!id.is_empty(), "no queue id in {text:?}");
    let host_has_it = || {
        std::process::Command::new("ipcs")
            .args(["-q", "-i", &id])
            .output()
            .unwrap()
            .status
            .success()
    };
    let out = run(
        &fx,
        &format!("ipcs -q | grep -cw {id}; ipcrm -q {id}; echo ok > ok"),
    )
    .await;
    let still_there = host_has_it();
    let _ = std::process::Command::new("ipcrm")
        .args(["-q", &id])
        .status();
    assert!(fx.scope.join("ok").exists(), "{out:?}");
    assert!(
        out.output.text().starts_with("0\n"),
        "the queue was listed: {out:?}"
    );
    assert!(still_there, "the command removed the host's queue: {out:?}");
}

/// `(add_key, keyctl)` syscall numbers for Python's ctypes on this architecture.
const KEY_SYSCALLS: &str =
    "{'x86_64': (248, 250), 'aarch64': (217, 219)}[__import__('os').uname().machine]";

#[tokio::test]
async fn keys_of_the_pods_session_keyring_cannot_be_read() {
    if !sandbox_ready() {
        return;
    }
    let fx = Fx::new();
    // The helper is started through a wrapper that puts a key in a fresh session
    // keyring, as a login session's keyring would hold one, then execs the real helper.
    let key_id = fx.scope.join("key-id");
    let wrapper = fx.outside.parent().unwrap().join("with-key.py");
    std::fs::write(
        &wrapper,
        format!(
            "import ctypes, os, sys\n\
             add_key, keyctl = {KEY_SYSCALLS}\n\
             libc = ctypes.CDLL(None, use_errno=True)\n\
             assert libc.syscall(keyctl, 1, b'pods-escape-test') > 0\n\
             kid = libc.syscall(add_key, b'user', b'pods-key', b'TOKEN-K', 7, -3)\n\
             assert kid > 0, os.strerror(ctypes.get_errno())\n\
             open(sys.argv[1], 'w').write(str(kid))\n\
             os.execv(sys.argv[2], sys.argv[2:])\n"
        ),
    )
    .unwrap();
    let helper = HelperCommand::new(
        "python3",
        [
            wrapper.display().to_string(),
            key_id.display().to_string(),
            env!("CARGO_BIN_EXE_pod").to_string(),
            sandbox::HELPER_SUBCOMMAND.to_string(),
        ],
    );
    std::fs::write(
        fx.scope.join("read-key.py"),
        format!(
            "import ctypes, os\n\
             add_key, keyctl = {KEY_SYSCALLS}\n\
             libc = ctypes.CDLL(None, use_errno=True)\n\
             buf = ctypes.create_string_buffer(64)\n\
             n = libc.syscall(keyctl, 11, int(open('key-id').read()), buf, 64)\n\
             print('read', buf.raw[:n].decode() if n > 0 else 'refused', os.strerror(ctypes.get_errno()))\n"
        ),
    )
    .unwrap();
    let out = run_with(&helper, &fx.policy(), "python3 read-key.py").await;
    let text = out.output.text();
    assert!(key_id.exists(), "the wrapper did not run: {out:?}");
    assert!(text.contains("read refused"), "{text}");
    assert!(!text.contains("TOKEN-K"), "the key was read: {text}");
}

/// A host TCP listener on 127.0.0.1 (non-blocking) and, in the scope, `tcp.py`, which
/// tries to reach it.
fn tcp_fixture(fx: &Fx) -> std::net::TcpListener {
    let outside = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    outside.set_nonblocking(true).unwrap();
    let port = outside.local_addr().unwrap().port();
    std::fs::write(fx.scope.join("tcp.py"), tcp_script(port)).unwrap();
    outside
}

/// A Python script that connects to TCP `port` on 127.0.0.1 (`outside ...`), then to a
/// server it starts itself on loopback (`local ...`).
fn tcp_script(port: u16) -> String {
    format!(
        "import socket\n\
         def attempt(name, port):\n\
         \x20   try:\n\
         \x20       socket.create_connection(('127.0.0.1', port), timeout=5).close(); print(name, 'connected')\n\
         \x20   except OSError as e:\n\
         \x20       print(name, 'refused', e.errno)\n\
         attempt('outside', {port})\n\
         try:\n\
         \x20   srv = socket.socket(); srv.bind(('127.0.0.1', 0)); srv.listen()\n\
         \x20   attempt('local', srv.getsockname()[1])\n\
         except OSError as e:\n\
         \x20   print('local refused', e.errno)\n"
    )
}

#[tokio::test]
async fn with_the_network_off_commands_reach_only_their_own_loopback() {
    if !sandbox_ready() {
        return;
    }
    let fx = Fx::new();
    let outside = tcp_fixture(&fx);

    // Network on (the default): the host's loopback is reachable.
    let out = run(&fx, "python3 tcp.py").await;
    let text = out.output.text();
    assert!(text.contains("outside connected"), "{text}");
    assert!(text.contains("local connected"), "{text}");
    assert!(outside.accept().is_ok(), "the connection never arrived");

    let mut policy = fx.policy();
    policy.no_network = true;
    let out = run_with(&helper(), &policy, "python3 tcp.py; echo ok > ok").await;
    let text = out.output.text();
    assert!(fx.scope.join("ok").exists(), "{out:?}");
    assert!(text.contains("outside refused"), "{text}");
    assert!(
        text.contains("local connected"),
        "loopback must work inside: {text}"
    );
    assert_eq!(
        outside.accept().unwrap_err().kind(),
        std::io::ErrorKind::WouldBlock,
        "a command with the network off reached the host"
    );
}

#[tokio::test]
async fn provider_keys_are_scrubbed_from_the_environment() {
    if !sandbox_ready() {
        return;
    }
    let fx = Fx::new();
    let helper = helper()
        .env("OPENAI_API_KEY", "sk-openai")
        .env("ANTHROPIC_API_KEY", "sk-ant")
        .env("SOME_API_KEY", "sk-some")
        .env("MY_SECRET", "s3cret")
        .env("KEEP_ME", "kept");
    let mut policy = fx.policy();
    policy.env_remove = vec!["MY_SECRET".into()];
    let out = run_with(
        &helper,
        &policy,
        "echo \"[$OPENAI_API_KEY][$ANTHROPIC_API_KEY][$SOME_API_KEY][$MY_SECRET][$KEEP_ME]\"; env | grep -c -e sk- -e s3cret",
    )
    .await;
    assert_eq!(out.output.text(), "[][][][][kept]\n0\n");
}

#[tokio::test]
async fn writes_in_scope_tmp_and_shared_cache_work_and_are_owned_by_us() {
    if !sandbox_ready() {
        return;
    }
    let fx = Fx::new();
    let out = run(
        &fx,
        &format!(
            "echo a > in-scope; mkdir -p d/e && echo b > d/e/f; echo t > \"$TMPDIR/t\"; echo \"$TMPDIR\"; echo c > {}/c; id -u",
            fx.cache.display()
        ),
    )
    .await;
    // SAFETY: getuid cannot fail.
    let uid = unsafe { libc::getuid() };
    assert_eq!(out.output.text(), format!("/tmp\n{uid}\n"));
    assert!(out.status.success());
    for file in [
        fx.scope.join("in-scope"),
        fx.scope.join("d/e/f"),
        fx.tmp.join("t"),
        fx.cache.join("c"),
    ] {
        let meta = std::fs::metadata(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        assert_eq!(meta.uid(), uid, "{}", file.display());
    }
}

#[tokio::test]
async fn the_system_stays_readable() {
    if !sandbox_ready() {
        return;
    }
    let fx = Fx::new();
    let out = run(&fx, "ls /usr/bin > /dev/null && cat /usr/bin/env > /dev/null && head -c 1 /etc/passwd > /dev/null && echo readable").await;
    assert_eq!(out.output.text(), "readable\n");
}

#[tokio::test]
async fn a_non_recursive_write_root_keeps_existing_subdirectories_read_only() {
    if !sandbox_ready() {
        return;
    }
    let fx = Fx::new();
    std::fs::create_dir(fx.scope.join("sub")).unwrap();
    let mut policy = fx.policy();
    policy.write_roots[0].recursive = false;
    run_with(&helper(), &policy, "echo x > top; echo x > sub/deep").await;
    assert!(fx.scope.join("top").exists());
    assert!(!fx.scope.join("sub/deep").exists());
}

#[tokio::test]
async fn protected_dirs_stay_read_only_inside_the_scope() {
    if !sandbox_ready() {
        return;
    }
    let fx = Fx::new();
    let pods = fx.scope.join(".pods");
    std::fs::create_dir(&pods).unwrap();
    std::fs::write(pods.join("manifest.toml"), "orig").unwrap();
    let state = fx.scope.join("state");
    std::fs::create_dir(&state).unwrap();
    let mut policy = fx.policy();
    policy.protected = vec![pods.clone(), state.clone()];
    run_with(
        &helper(),
        &policy,
        "echo x >> .pods/manifest.toml; rm -f .pods/manifest.toml; echo x > .pods/new; echo x > state/s; echo ok > ok",
    )
    .await;
    assert!(fx.scope.join("ok").exists());
    assert_eq!(
        std::fs::read_to_string(pods.join("manifest.toml")).unwrap(),
        "orig"
    );
    assert!(!pods.join("new").exists());
    assert!(!state.join("s").exists());
}

#[tokio::test]
async fn signals_cannot_reach_processes_outside() {
    if !sandbox_ready() {
        return;
    }
    let fx = Fx::new();
    let out = run(
        &fx,
        &format!(
            "kill -0 {} 2>/dev/null && echo reached || echo refused; echo pid=$$",
            std::process::id()
        ),
    )
    .await;
    assert_eq!(out.output.text(), "refused\npid=1\n");
}

#[tokio::test]
async fn a_timeout_kills_the_whole_namespace_promptly() {
    if !sandbox_ready() {
        return;
    }
    let fx = Fx::new();
    let token = sleep_token(2);
    let started = Instant::now();
    let out = sandbox::run(
        &helper(),
        &fx.policy(),
        &format!(
            "echo begun; (sleep {token}; echo late > late) & setsid sleep {token} & sleep {token}"
        ),
        &options(Duration::from_millis(500)),
    )
    .await
    .unwrap();
    assert!(out.timed_out);
    assert_eq!(out.status, CommandStatus::Signaled(libc::SIGKILL));
    assert_eq!(out.output.text(), "begun\n");
    // Generous: the point is "not 30 s".
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    assert!(
        !process_with(&token),
        "a process of the timed-out command survived"
    );
}

#[tokio::test]
async fn a_write_root_under_the_real_tmp_stays_reachable() {
    if !sandbox_ready() {
        return;
    }
    // The scope lives under /tmp, which the sandbox covers with the pod's tmp dir.
    let fx_tmp = Fx::new_in(&std::env::temp_dir());
    let fx = Fx::new();
    let mut policy = fx_tmp.policy();
    policy.tmp_dir = fx.tmp.clone();
    policy.hidden = vec![fx.runtime.clone()];
    let out = run_with(
        &helper(),
        &policy,
        &format!("pwd; echo ok > f; echo x > {}/f", fx_tmp.o()),
    )
    .await;
    assert_eq!(
        out.output.text().lines().next(),
        Some(fx_tmp.scope.display().to_string().as_str())
    );
    assert_eq!(
        std::fs::read_to_string(fx_tmp.scope.join("f")).unwrap(),
        "ok\n"
    );
    fx_tmp.assert_outside_untouched();
}

/// A command that swaps a directory on the way to a mountpoint in the private
/// /tmp for a symlink (or a file) must not break the pod's later commands:
/// preparing the mountpoint follows no symlink and repairs the path.
#[tokio::test]
async fn a_symlink_swapped_into_the_private_tmp_does_not_break_later_commands() {
    if !sandbox_ready() {
        return;
    }
    let fx_tmp = Fx::new_in(&std::env::temp_dir());
    let fx = Fx::new();
    let mut policy = fx_tmp.policy();
    policy.tmp_dir = fx.tmp.clone();
    policy.hidden = vec![fx.runtime.clone()];
    // The top dir of the scope's path under /tmp, as the private tmp holds it.
    let top = fx_tmp
        .scope
        .strip_prefix("/tmp")
        .unwrap()
        .components()
        .next()
        .unwrap();
    let top = Path::new("/tmp").join(top);
    let in_private = fx.tmp.join(top.strip_prefix("/tmp").unwrap());
    for (attack, made) in [
        (
            format!("mv {t} /tmp/old1 && ln -s /var/tmp {t}", t = top.display()),
            "symlink",
        ),
        (
            format!("mv {t} /tmp/old2 && echo x > {t}", t = top.display()),
            "file",
        ),
    ] {
        let out = run_with(&helper(), &policy, &attack).await;
        assert_eq!(
            out.status,
            CommandStatus::Exited(0),
            "{}",
            out.output.text()
        );
        let meta = std::fs::symlink_metadata(&in_private).unwrap();
        let swapped = match made {
            "symlink" => meta.file_type().is_symlink(),
            _ => meta.file_type().is_file(),
        };
        assert!(swapped, "the attack did not take: {meta:?}");
        let out = run_with(&helper(), &policy, "echo ok > f && pwd").await;
        assert_eq!(
            out.status,
            CommandStatus::Exited(0),
            "a later command failed: {}",
            out.output.text()
        );
        assert_eq!(
            std::fs::read_to_string(fx_tmp.scope.join("f")).unwrap(),
            "ok\n"
        );
        std::fs::remove_file(fx_tmp.scope.join("f")).unwrap();
    }
    // Nothing was written through the symlink, and the file was kept aside.
    assert!(
        !Path::new("/var/tmp")
            .join(fx_tmp.scope.file_name().unwrap())
            .exists()
    );
    let kept = std::fs::read_dir(&fx.tmp).unwrap().flatten().any(|e| {
        e.file_name()
            .to_string_lossy()
            .contains(".moved-aside-by-pods-")
    });
    assert!(kept, "the file in the way was moved aside, not deleted");
    fx_tmp.assert_outside_untouched();
}

#[tokio::test]
async fn a_read_deny_inside_a_read_only_cwd_under_the_real_tmp_is_covered() {
    if !sandbox_ready() {
        return;
    }
    // The cwd lives under /tmp and is not writable: the sandbox binds it read-only.
    let fx_tmp = Fx::new_in(&std::env::temp_dir());
    std::fs::write(fx_tmp.out("secret"), "TOKEN-T").unwrap();
    std::fs::write(fx_tmp.out("plain"), "VISIBLE").unwrap();
    let fx = Fx::new();
    let mut policy = fx.policy();
    policy.cwd = fx_tmp.outside.clone();
    policy.unreadable = vec![Unreadable {
        path: fx_tmp.out("secret"),
        recursive: true,
    }];
    let out = run_with(&helper(), &policy, "cat plain secret; echo").await;
    let text = out.output.text();
    assert!(text.contains("VISIBLE"), "{text}");
    assert!(!text.contains("TOKEN-T"), "a denied file was read: {text}");
}

#[tokio::test]
async fn setup_failures_name_the_step_and_errno() {
    if !sandbox_ready() {
        return;
    }
    let fx = Fx::new();
    let mut policy = fx.policy();
    policy.tmp_dir = fx.runtime.join("missing-tmp");
    let err = sandbox::run(
        &helper(),
        &policy,
        "echo ran > ran",
        &options(Duration::from_secs(30)),
    )
    .await
    .unwrap_err();
    assert_eq!(
        err,
        SandboxError::Setup {
            message: format!(
                "sandbox: cannot copy the pod's tmp dir {} (open_tree): ENOENT (No such file or directory)",
                policy.tmp_dir.display()
            )
        }
    );
    let mut policy = fx.policy();
    policy.hidden = vec![PathBuf::from("relative/run")];
    let err = sandbox::run(
        &helper(),
        &policy,
        "echo ran > ran",
        &options(Duration::from_secs(30)),
    )
    .await
    .unwrap_err();
    assert!(
        err.to_string().contains("relative/run is relative"),
        "{err}"
    );
    let mut policy = fx.policy();
    policy.cwd = fx.scope.join("gone");
    let err = sandbox::run(
        &helper(),
        &policy,
        "echo ran > ran",
        &options(Duration::from_secs(30)),
    )
    .await
    .unwrap_err();
    assert!(
        err.to_string().starts_with(&format!(
            "sandbox: cannot enter the working directory {} (chdir): ENOENT",
            policy.cwd.display()
        )),
        "{err}"
    );
    assert!(!fx.scope.join("ran").exists());
}

#[tokio::test]
async fn the_bash_tool_reports_denied_paths_a_command_created() {
    if !sandbox_ready() {
        return;
    }
    let fx = Fx::new();
    let mut policy = fx.policy();
    // Neither exists when the command starts, so no mount can cover them.
    policy.denied = vec![fx.scope.join("vendor")];
    let source: Arc<dyn PolicySource> = Arc::new(move || policy.clone());
    let bash = Bash::new(BashConfig::new(
        helper(),
        source,
        SandboxMode::Auto,
        fx.runtime.join("pod"),
    ));
    use llm_worker::tool::Tool;
    let run = |command: &str| {
        let input = serde_json::json!({ "command": command }).to_string();
        let bash = &bash;
        async move { bash.execute(&input).await.unwrap() }
    };
    let quiet = run("echo fine > fine.txt").await;
    assert_eq!(quiet.summary, "exit code 0, no output");
    let out = run("mkdir -p vendor .pods && echo x > vendor/a && echo done").await;
    assert!(
        out.summary
            .ends_with("; it created paths this pod may not write"),
        "{}",
        out.summary
    );
    let content = out.content.unwrap();
    let expected = format!(
        "[pods: this command created {}, {}, where this pod may not write",
        fx.scope.join(".pods").display(),
        fx.scope.join("vendor").display()
    );
    assert!(content.starts_with(&expected), "{content}");
    assert!(content.ends_with("done\n"), "{content}");
}

#[tokio::test]
async fn the_bash_tool_runs_sandboxed_and_spills_large_output() {
    if !sandbox_ready() {
        return;
    }
    let fx = Fx::new();
    let policy = fx.policy();
    let source: Arc<dyn PolicySource> = Arc::new(move || policy.clone());
    let output_dir = fx.runtime.join("pod");
    let bash = Bash::new(BashConfig::new(
        helper(),
        source,
        SandboxMode::Auto,
        &output_dir,
    ));
    use llm_worker::tool::Tool;
    let out = bash
        .execute(
            &serde_json::json!({"command": format!("seq 1 20000; echo x > {}/f", fx.o())})
                .to_string(),
        )
        .await
        .unwrap();
    assert!(
        out.summary.starts_with("exit code 1; output saved to "),
        "{}",
        out.summary
    );
    let files: Vec<PathBuf> = std::fs::read_dir(output_dir.join(SPILL_DIR_NAME))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), 1);
    let whole = std::fs::read_to_string(&files[0]).unwrap();
    assert!(whole.starts_with("1\n2\n3\n"));
    assert!(whole.contains("20000\n"));
    assert!(
        whole.ends_with("Read-only file system\n"),
        "{}",
        &whole[whole.len() - 100..]
    );
    let content = out.content.unwrap();
    assert!(content.ends_with("Read-only file system\n"));
    fx.assert_outside_untouched();
}

// Level `landlock` (what hosts without user namespaces get), forced with `run_at`.

async fn run_landlock(fx: &Fx, command: &str, timeout: Duration) -> CommandOutput {
    let out = sandbox::run_at(
        &helper(),
        Level::Landlock,
        &fx.policy(),
        command,
        &options(timeout),
    )
    .await
    .unwrap();
    assert_eq!(out.level, Some(Level::Landlock));
    out
}

#[tokio::test]
async fn landlock_level_refuses_writes_outside_and_uses_the_real_tmp_dir() {
    if !sandbox_ready() {
        return;
    }
    let fx = Fx::new();
    let out = run_landlock(
        &fx,
        &format!(
            "echo in > inside; echo c > {c}/c; echo t > \"$TMPDIR/t\"; echo \"$TMPDIR\"; echo x > {o}/f; python3 -c \"open('{o}/py','w')\"; cd / && touch {o}/t",
            c = fx.cache.display(),
            o = fx.o()
        ),
        Duration::from_secs(60),
    )
    .await;
    assert!(
        out.output
            .text()
            .starts_with(&format!("{}\n", fx.tmp.display())),
        "{out:?}"
    );
    assert!(fx.scope.join("inside").exists());
    assert!(fx.cache.join("c").exists());
    assert!(fx.tmp.join("t").exists());
    fx.assert_outside_untouched();
}

#[tokio::test]
async fn landlock_level_with_the_network_off_refuses_tcp() {
    if !sandbox_ready() {
        return;
    }
    let fx = Fx::new();
    let outside = tcp_fixture(&fx);
    let mut policy = fx.policy();
    policy.no_network = true;
    let out = sandbox::run_at(
        &helper(),
        Level::Landlock,
        &policy,
        "python3 tcp.py; echo ok > ok",
        &options(Duration::from_secs(60)),
    )
    .await;
    if sandbox::detect(&helper()).landlock_abi.unwrap_or(0) < 4 {
        // Nothing could keep the network away: the command must not run at all.
        let err = out.unwrap_err().to_string();
        assert!(err.contains("network off needs"), "{err}");
        assert!(!fx.scope.join("ok").exists());
        return;
    }
    let out = out.unwrap();
    let text = out.output.text();
    assert!(fx.scope.join("ok").exists(), "{out:?}");
    // EACCES (13): Landlock refuses the connect, and the bind of a local server too.
    assert!(text.contains("outside refused 13"), "{text}");
    assert!(text.contains("local refused 13"), "{text}");
    assert_eq!(
        outside.accept().unwrap_err().kind(),
        std::io::ErrorKind::WouldBlock
    );
}

#[tokio::test]
async fn landlock_level_kills_leftover_descendants_and_times_out() {
    if !sandbox_ready() {
        return;
    }
    let fx = Fx::new();
    let leftover = sleep_token(11);
    let out = run_landlock(
        &fx,
        &format!("setsid sh -c 'sleep {leftover}; echo late > late' & nohup sh -c 'sleep {leftover}; echo late2 > late2' >/dev/null 2>&1 & echo started"),
        Duration::from_secs(60),
    )
    .await;
    assert_eq!(out.output.text(), "started\n");
    assert!(
        gone_within(&leftover, Duration::from_secs(10)),
        "a descendant outlived the command"
    );
    let token = sleep_token(3);
    let started = Instant::now();
    let out = run_landlock(
        &fx,
        &format!("setsid sleep {token} & sleep {token}"),
        Duration::from_millis(500),
    )
    .await;
    assert!(out.timed_out);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    assert!(
        !process_with(&token),
        "a process of the timed-out command survived"
    );
}

/// Reads one line the served program wrote (bounded).
async fn line_from(
    out: &mut tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>,
) -> String {
    tokio::time::timeout(Duration::from_secs(20), out.next_line())
        .await
        .expect("the served program answers")
        .unwrap()
        .expect("a line")
}

#[tokio::test]
async fn a_served_program_talks_on_stdio_and_writes_only_in_its_scope() {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
    if !sandbox_ready() {
        return;
    }
    let fx = Fx::new();
    let script = "echo \"$GREETING\"; while read -r p; do if echo x > \"$p\" 2>/dev/null; then echo ok; else echo refused; fi; done";
    let argv = ["bash".to_owned(), "-c".to_owned(), script.to_owned()];
    let env = [("GREETING".to_owned(), "hello from the sandbox".to_owned())];
    let mut served = sandbox::serve(&helper(), &fx.policy(), &argv, &env)
        .await
        .unwrap();
    assert_eq!(served.level(), Level::Full);
    let (stdout, mut stdin) = served.take_io().unwrap();
    let mut out = tokio::io::BufReader::new(stdout).lines();
    assert_eq!(line_from(&mut out).await, "hello from the sandbox");
    let inside = fx.scope.join("in.txt");
    stdin
        .write_all(format!("{}\n{}\n", inside.display(), fx.out("evil").display()).as_bytes())
        .await
        .unwrap();
    assert_eq!(line_from(&mut out).await, "ok");
    assert_eq!(line_from(&mut out).await, "refused");
    assert_eq!(std::fs::read_to_string(&inside).unwrap(), "x\n");
    fx.assert_outside_untouched();
    drop(stdin);
    served.stop(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn a_served_program_and_what_it_started_die_when_it_is_dropped() {
    if !sandbox_ready() {
        return;
    }
    let fx = Fx::new();
    let token = sleep_token(31);
    let argv = [
        "bash".to_owned(),
        "-c".to_owned(),
        format!("sleep {token} & cat"),
    ];
    let mut served = sandbox::serve(&helper(), &fx.policy(), &argv, &[])
        .await
        .unwrap();
    let started = Instant::now();
    while !process_with(&token) {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "sleep never started"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(!served.has_exited());
    drop(served);
    assert!(
        gone_within(&token, Duration::from_secs(10)),
        "a background process of the served program outlived it"
    );
}

#[tokio::test]
async fn a_program_that_cannot_be_served_is_a_clear_error_and_stop_ends_one_that_can() {
    if !sandbox_ready() {
        return;
    }
    let fx = Fx::new();
    let missing = ["no-such-server-of-pods".to_owned()];
    let err = sandbox::serve(&helper(), &fx.policy(), &missing, &[])
        .await
        .unwrap_err();
    assert!(
        matches!(&err, SandboxError::Setup { message } if message.contains("cannot find `no-such-server-of-pods`")),
        "{err}"
    );
    let cat = ["cat".to_owned()];
    let mut served = sandbox::serve(&helper(), &fx.policy(), &cat, &[])
        .await
        .unwrap();
    let (_out, input) = served.take_io().unwrap();
    drop(input);
    // cat ends on end of file; stop waits for it.
    let started = Instant::now();
    served.stop(Duration::from_secs(10)).await;
    assert!(started.elapsed() < Duration::from_secs(5));
}
