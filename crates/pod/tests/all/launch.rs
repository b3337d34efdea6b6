//! `pod::launch` as `pod start` and `pod doctor` use it: which provider the environment
//! picks, the default scope, `--scope` and `--cwd` checks, and pod names.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use manifest::{Permission, Scheme};
use pod::launch::{
    LaunchOptions, ProviderSource, client_for, load_manifest, load_manifest_sourced, pod_name,
};

fn vars(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let map: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    move |k| map.get(k).cloned()
}

fn opts(cwd: &Path) -> LaunchOptions {
    LaunchOptions {
        cwd: cwd.to_path_buf(),
        ..LaunchOptions::default()
    }
}

fn env(home: &Path) -> manifest::Env {
    manifest::Env {
        home: Some(home.to_path_buf()),
        pod_config_dir: Some(home.join("config")),
        xdg_config_home: None,
    }
}

#[test]
fn the_provider_follows_the_keys_in_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    type Case<'a> = (&'a [(&'a str, &'a str)], Scheme, &'a str);
    let cases: [Case<'_>; 4] = [
        (
            &[("ANTHROPIC_API_KEY", "k"), ("OPENAI_API_KEY", "k")],
            Scheme::Anthropic,
            "https://api.anthropic.com/v1",
        ),
        (
            &[("OPENAI_API_KEY", "k"), ("GEMINI_API_KEY", "k")],
            Scheme::OpenaiResponses,
            "https://api.openai.com/v1",
        ),
        (
            &[("GEMINI_API_KEY", "k")],
            Scheme::Gemini,
            "https://generativelanguage.googleapis.com/v1beta",
        ),
        (
            &[
                ("POD_BASE_URL", "http://127.0.0.1:8080/v1"),
                ("POD_MODEL", "qwen"),
            ],
            Scheme::OpenaiChat,
            "http://127.0.0.1:8080/v1",
        ),
    ];
    for (pairs, scheme, url) in cases {
        let v = vars(pairs);
        let m = load_manifest(&opts(dir.path()), env(dir.path()), &v).unwrap();
        assert_eq!(m.model.scheme, scheme, "{pairs:?}");
        assert_eq!(m.model.base_url, url, "{pairs:?}");
        assert!(client_for(&m.model, &v).is_ok(), "{pairs:?}");
    }
    let v = vars(&[
        ("POD_BASE_URL", "http://127.0.0.1:8080/v1"),
        ("POD_MODEL", "qwen"),
    ]);
    let m = load_manifest(&opts(dir.path()), env(dir.path()), &v).unwrap();
    assert_eq!(m.model.model, "qwen");
}

#[test]
fn no_provider_says_what_to_set() {
    let dir = tempfile::tempdir().unwrap();
    let err = load_manifest(&opts(dir.path()), env(dir.path()), &vars(&[])).unwrap_err();
    let text = err.to_string();
    for var in [
        "ANTHROPIC_API_KEY",
        "OPENAI_API_KEY",
        "GEMINI_API_KEY",
        "POD_BASE_URL",
        "POD_MODEL",
    ] {
        assert!(text.contains(var), "{text}");
    }
}

#[test]
fn half_of_pod_base_url_and_pod_model_names_the_other() {
    let dir = tempfile::tempdir().unwrap();
    let load = |pairs: &[(&str, &str)]| {
        load_manifest_sourced(&opts(dir.path()), env(dir.path()), &vars(pairs))
    };
    let err = load(&[("POD_BASE_URL", "http://127.0.0.1:8080/v1")]).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("POD_BASE_URL is set but POD_MODEL is not"),
        "{err}"
    );
    let err = load(&[("POD_MODEL", "qwen")]).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("POD_MODEL is set but POD_BASE_URL is not"),
        "{err}"
    );
    // A key comes first: the stray variable does not matter then.
    let (_, source) = load(&[
        ("POD_BASE_URL", "http://127.0.0.1:8080/v1"),
        ("OPENAI_API_KEY", "k"),
    ])
    .unwrap();
    assert_eq!(source, ProviderSource::KeyVar("OPENAI_API_KEY"));
}

#[test]
fn the_provider_source_names_the_variables_or_the_layer() {
    let dir = tempfile::tempdir().unwrap();
    let pairs = [
        ("POD_BASE_URL", "http://127.0.0.1:8080/v1"),
        ("POD_MODEL", "qwen"),
    ];
    let (_, source) =
        load_manifest_sourced(&opts(dir.path()), env(dir.path()), &vars(&pairs)).unwrap();
    assert_eq!(source.to_string(), "POD_BASE_URL and POD_MODEL");
    let mut o = opts(dir.path());
    o.overlay = Some("[model]\nscheme = \"gemini\"\n".into());
    let (_, source) = load_manifest_sourced(&o, env(dir.path()), &vars(&pairs)).unwrap();
    assert_eq!(source.to_string(), "[model] scheme in the overlay");
    o.overlay = Some("[model]\nbase_url = \"http://127.0.0.1:9/v1\"\n".into());
    let (_, source) = load_manifest_sourced(&o, env(dir.path()), &vars(&[])).unwrap();
    assert_eq!(source.to_string(), "[model] base_url in the overlay");
}

#[test]
fn a_manifest_scheme_wins_and_a_remote_one_needs_its_key() {
    let dir = tempfile::tempdir().unwrap();
    let mut o = opts(dir.path());
    o.overlay = Some("[model]\nscheme = \"gemini\"\n".into());
    let v = vars(&[("ANTHROPIC_API_KEY", "k")]);
    let m = load_manifest(&o, env(dir.path()), &v).unwrap();
    assert_eq!(m.model.scheme, Scheme::Gemini);
    let err = client_for(&m.model, &v).err().unwrap().to_string();
    assert!(err.contains("GEMINI_API_KEY"), "{err}");
    // A loopback server needs no key.
    o.overlay =
        Some("[model]\nscheme = \"openai_chat\"\nbase_url = \"http://127.0.0.1:9/v1\"\n".into());
    let m = load_manifest(&o, env(dir.path()), &vars(&[])).unwrap();
    assert!(client_for(&m.model, &vars(&[])).is_ok());
}

#[test]
fn the_default_scope_writes_the_cwd_unless_scope_is_given() {
    let dir = tempfile::tempdir().unwrap();
    let v = vars(&[("ANTHROPIC_API_KEY", "k")]);
    let m = load_manifest(&opts(dir.path()), env(dir.path()), &v).unwrap();
    assert!(
        m.scope
            .allow_rules()
            .any(|r| r.target == dir.path() && r.permission == Permission::Write)
    );
    std::fs::create_dir(dir.path().join("src")).unwrap();
    let mut o = opts(dir.path());
    o.scope = vec![PathBuf::from("src")];
    let m = load_manifest(&o, env(dir.path()), &v).unwrap();
    let writes: Vec<_> = m
        .scope
        .allow_rules()
        .filter(|r| r.permission == Permission::Write)
        .collect();
    assert_eq!(writes.len(), 1);
    assert_eq!(writes[0].target, dir.path().join("src"));
}

#[test]
fn a_missing_scope_path_is_refused_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let v = vars(&[("ANTHROPIC_API_KEY", "k")]);
    let mut o = opts(dir.path());
    o.scope = vec![PathBuf::from("sr")];
    let err = load_manifest(&o, env(dir.path()), &v)
        .unwrap_err()
        .to_string();
    let path = dir.path().join("sr");
    assert_eq!(
        err,
        format!(
            "--scope sr: {} does not exist; create it first (mkdir -p {}) or fix the path",
            path.display(),
            path.display()
        )
    );
}

#[test]
fn a_bad_name_is_named_whole_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let v = vars(&[("ANTHROPIC_API_KEY", "k")]);
    let m = load_manifest(&opts(dir.path()), env(dir.path()), &v).unwrap();
    let err = |name: &str| {
        let mut o = opts(dir.path());
        o.name = Some(name.into());
        pod_name(&o, &m).unwrap_err().to_string()
    };
    let text = err("Bad.Name");
    assert!(
        text.starts_with(
            "invalid pod name \"Bad.Name\": `Bad` has the upper-case letter `B` (names are lower-case);"
        ),
        "{text}"
    );
    assert!(err("a..b").contains("an empty part"), "{}", err("a..b"));
    assert!(err("a b").contains("`a b` contains ` `"), "{}", err("a b"));
    assert!(err("-x").contains("`-x` starts with `-`"), "{}", err("-x"));
    let long = "a".repeat(33);
    assert!(
        err(&long).contains("is 33 characters long"),
        "{}",
        err(&long)
    );
    let mut o = opts(dir.path());
    o.name = Some("boss.kid".into());
    assert_eq!(pod_name(&o, &m).unwrap(), "boss.kid");
}

#[test]
fn a_relative_or_missing_cwd_is_refused() {
    let v = vars(&[("ANTHROPIC_API_KEY", "k")]);
    let dir = tempfile::tempdir().unwrap();
    let err = load_manifest(&opts(Path::new("rel")), env(dir.path()), &v).unwrap_err();
    assert!(err.to_string().contains("rel"));
}

#[test]
fn a_running_local_model_is_the_fallback_with_small_model_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let models = dir.path().join("models");
    std::fs::create_dir_all(&models).unwrap();
    let me = std::process::id();
    let mut rec = pod::model::record::ServerRecord {
        base_url: "http://127.0.0.1:45678/v1".into(),
        model: "qwen".into(),
        pid: me,
        start_ticks: pod::model::record::start_ticks(me).unwrap(),
        gguf: models.join("x.gguf"),
        log: models.join("server.log"),
        started_at: 0,
    };
    pod::model::record::write(&models.join("server.json"), &rec).unwrap();
    let models_var = models.to_str().unwrap();
    let home = dir.path().to_str().unwrap();
    let only_dir = [("POD_MODEL_DIR", models_var), ("HOME", home)];
    let v = vars(&only_dir);
    let m = load_manifest(&opts(dir.path()), env(dir.path()), &v).unwrap();
    assert_eq!(m.model.scheme, Scheme::OpenaiChat);
    assert_eq!(m.model.base_url, "http://127.0.0.1:45678/v1");
    assert_eq!(m.model.model, "qwen");
    assert_eq!(m.model.context_window, pod::model::LOCAL_CONTEXT_WINDOW);
    assert_eq!(m.model.max_tokens, pod::model::LOCAL_MAX_TOKENS);
    assert!(m.model.extra.contains_key("logit_bias"));
    assert!(client_for(&m.model, &v).is_ok(), "loopback: no key needed");
    // Keys and POD_BASE_URL come first, without the small-model defaults.
    let with_url = [
        ("POD_MODEL_DIR", models_var),
        ("HOME", home),
        ("POD_BASE_URL", "http://127.0.0.1:8080/v1"),
        ("POD_MODEL", "big"),
    ];
    let v = vars(&with_url);
    let m = load_manifest(&opts(dir.path()), env(dir.path()), &v).unwrap();
    assert_eq!(m.model.base_url, "http://127.0.0.1:8080/v1");
    assert_ne!(m.model.context_window, pod::model::LOCAL_CONTEXT_WINDOW);
    // A record whose process is gone is ignored.
    rec.start_ticks += 1;
    pod::model::record::write(&models.join("server.json"), &rec).unwrap();
    let v = vars(&only_dir);
    let err = load_manifest(&opts(dir.path()), env(dir.path()), &v).unwrap_err();
    assert!(err.to_string().contains("pod model up"), "{err}");
}
