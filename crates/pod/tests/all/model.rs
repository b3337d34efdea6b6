//! The local model's defaults (`pod::model`): filled in only where no layer
//! chose, and the same as the overlay `pod model` writes.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use pod::model::{
    LOCAL_CONTEXT_WINDOW, LOCAL_MAX_LLM_CALLS, LOCAL_MAX_TOKENS, LOCAL_TEMPERATURE,
    LOCAL_TIMEOUT_S, STOP_SEQUENCES, apply_local_defaults, fence_logit_bias, local_overlay,
};

#[test]
fn local_defaults_fill_only_what_no_layer_chose_and_the_overlay_matches() {
    let dir = tempfile::tempdir().unwrap();
    let env = manifest::Env {
        home: Some(dir.path().to_path_buf()),
        pod_config_dir: Some(dir.path().join("config")),
        xdg_config_home: None,
    };
    let load = |overlay: Option<String>| {
        let mut loader = manifest::ManifestLoader::new(dir.path().to_path_buf(), env.clone());
        if let Some(o) = overlay {
            loader = loader.overlay(o);
        }
        loader.load().unwrap()
    };
    let mut m = load(None);
    apply_local_defaults(&mut m);
    assert_eq!(m.model.context_window, LOCAL_CONTEXT_WINDOW);
    assert_eq!(m.model.max_tokens, LOCAL_MAX_TOKENS);
    assert_eq!(m.model.timeout_s, LOCAL_TIMEOUT_S);
    assert_eq!(m.model.temperature, Some(LOCAL_TEMPERATURE));
    assert_eq!(m.worker.max_llm_calls, LOCAL_MAX_LLM_CALLS);
    assert_eq!(m.model.extra["logit_bias"], fence_logit_bias());
    assert_eq!(m.model.extra["stop"], serde_json::json!(STOP_SEQUENCES));
    // A layer's own values win.
    let mut m = load(Some(
        "[model]\nmax_tokens = 100\n[model.extra]\nlogit_bias = {}\n".into(),
    ));
    apply_local_defaults(&mut m);
    assert_eq!(m.model.max_tokens, 100);
    assert_eq!(m.model.context_window, LOCAL_CONTEXT_WINDOW);
    assert_eq!(m.model.extra["logit_bias"], serde_json::json!({}));
    // The overlay sets the same values (plus the caller's lines).
    let m = load(Some(local_overlay("temperature = 0.0\nseed = 42")));
    assert_eq!(m.model.context_window, LOCAL_CONTEXT_WINDOW);
    assert_eq!(m.model.max_tokens, LOCAL_MAX_TOKENS);
    assert_eq!(m.model.timeout_s, LOCAL_TIMEOUT_S);
    assert_eq!(m.model.temperature, Some(0.0));
    assert_eq!(m.model.seed, Some(42));
    assert_eq!(m.worker.max_llm_calls, LOCAL_MAX_LLM_CALLS);
    assert_eq!(m.model.extra["logit_bias"], fence_logit_bias());
    assert_eq!(m.model.extra["stop"], serde_json::json!(STOP_SEQUENCES));
    assert_eq!(fence_logit_bias()[4], serde_json::json!(["``\n", false]));
    let m = load(Some(local_overlay("")));
    assert_eq!(m.model.temperature, Some(LOCAL_TEMPERATURE));
    assert_eq!(m.model.seed, None);
}
