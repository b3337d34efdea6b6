//! `pod doctor`: what a person needs to know when pods does not behave — where
//! its files live, whether those places are usable, and which providers it can
//! reach. Each check reports a verdict instead of failing on the first problem.

use serde::Serialize;
use tools::sandbox::{Level, SandboxReport};

use crate::runtime::dir::{DirEnv, Places, ensure_private_dir};

/// Provider key variables pods looks for, in the order it prefers them.
pub const PROVIDER_KEY_VARS: [&str; 3] = ["ANTHROPIC_API_KEY", "OPENAI_API_KEY", "GEMINI_API_KEY"];

/// One line of the report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    /// What was checked.
    pub name: String,
    /// Whether it is usable.
    pub ok: bool,
    /// What was found, or what is wrong and what to do.
    pub detail: String,
}

/// The whole report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    /// Every check, in the order it ran.
    pub checks: Vec<Check>,
}

impl Report {
    /// True when every check passed.
    pub fn ok(&self) -> bool {
        self.checks.iter().all(|c| c.ok)
    }
}

/// Runs every check against `env`; `key_present` says whether a variable is set
/// (injected so that tests do not depend on the caller's environment).
pub fn run(env: &DirEnv, uid: u32, key_present: &dyn Fn(&str) -> bool) -> Report {
    let mut checks = Vec::new();
    match Places::resolve(env) {
        Err(e) => checks.push(Check {
            name: "places".into(),
            ok: false,
            detail: e.to_string(),
        }),
        Ok(places) => {
            checks.push(match ensure_private_dir(&places.runtime, uid) {
                Ok(()) => Check {
                    name: "runtime dir".into(),
                    ok: true,
                    detail: format!("{} (private, 0700)", places.runtime.display()),
                },
                Err(e) => Check {
                    name: "runtime dir".into(),
                    ok: false,
                    detail: e.to_string(),
                },
            });
            for (name, path) in [
                ("state dir", &places.state),
                ("config dir", &places.config),
                ("model dir", &places.models),
            ] {
                let exists = path.is_dir();
                checks.push(Check {
                    name: name.into(),
                    ok: true,
                    detail: format!(
                        "{}{}",
                        path.display(),
                        if exists { "" } else { " (not created yet)" }
                    ),
                });
            }
            checks.push(model_check(&places.models));
        }
    }
    let found: Vec<&str> = PROVIDER_KEY_VARS
        .iter()
        .copied()
        .filter(|k| key_present(k))
        .collect();
    checks.push(Check {
        name: "provider keys".into(),
        // Not having a key is a valid setup (local model, POD_BASE_URL).
        ok: true,
        detail: if found.is_empty() {
            format!("none of {} is set", PROVIDER_KEY_VARS.join(", "))
        } else {
            format!("found {}", found.join(", "))
        },
    });
    Report { checks }
}

/// The `local model` line: not downloaded, downloaded, or running (URL, pid, RSS).
/// Always ok: a machine without the local model is a valid setup.
pub fn model_check(models: &std::path::Path) -> Check {
    let detail = match crate::model::ModelSpec::pinned() {
        Ok(spec) => crate::model::status(&spec, &crate::model::ModelDir::new(models)).summary(),
        Err(e) => e.to_string(),
    };
    Check {
        name: "local model".into(),
        ok: true,
        detail,
    }
}

/// The `sandbox` line: the enforcement level commands get, what it leaves open, and how
/// it was found. Fails only at level `none` (commands then need `[sandbox] mode = "off"`).
pub fn sandbox_check(report: &SandboxReport) -> Check {
    let mut detail = match report.level {
        Level::None => format!(
            "none: {}; commands refuse to run unless the manifest sets [sandbox] mode = \"off\" or the pod starts with --no-sandbox",
            report.detail
        ),
        level => format!("{level} ({})", report.detail),
    };
    if !report.gaps.is_empty() {
        detail.push_str("; gaps: ");
        detail.push_str(&report.gaps.join("; "));
    }
    Check {
        name: "sandbox".into(),
        ok: report.level != Level::None,
        detail,
    }
}

/// The `sandbox` line when the level could not even be probed (no path to this binary).
pub fn sandbox_unknown(reason: &str) -> Check {
    Check {
        name: "sandbox".into(),
        ok: false,
        detail: format!("unknown: {reason}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sandbox_line_names_level_gaps_and_the_way_out() {
        let full = sandbox_check(&SandboxReport {
            level: Level::Full,
            landlock_abi: Some(7),
            gaps: vec![],
            detail: "namespaces work; Landlock ABI 7".into(),
        });
        assert!(full.ok);
        assert_eq!(full.name, "sandbox");
        assert_eq!(full.detail, "full (namespaces work; Landlock ABI 7)");

        let ll = sandbox_check(&SandboxReport {
            level: Level::Landlock,
            landlock_abi: Some(3),
            gaps: vec!["a".into(), "b".into()],
            detail: "d".into(),
        });
        assert!(ll.ok);
        assert_eq!(ll.detail, "landlock (d); gaps: a; b");

        let none = sandbox_check(&SandboxReport {
            level: Level::None,
            landlock_abi: None,
            gaps: vec![],
            detail: "unshare: EPERM".into(),
        });
        assert!(!none.ok);
        assert!(
            none.detail.starts_with("none: unshare: EPERM;"),
            "{}",
            none.detail
        );
        assert!(none.detail.contains("mode = \"off\""), "{}", none.detail);
        assert!(!sandbox_unknown("x").ok);
    }

    #[test]
    fn reports_places_and_keys() {
        let tmp = tempfile::tempdir().unwrap();
        let runtime = tmp.path().join("rt");
        let env = DirEnv::from_pairs(
            crate::runtime::dir::current_uid(),
            [
                ("POD_RUNTIME_DIR", runtime.to_str().unwrap()),
                ("HOME", tmp.path().to_str().unwrap()),
            ],
        );
        let report = run(&env, crate::runtime::dir::current_uid(), &|k| {
            k == "OPENAI_API_KEY"
        });
        assert!(report.ok(), "{report:?}");
        assert!(runtime.is_dir());
        let keys = report
            .checks
            .iter()
            .find(|c| c.name == "provider keys")
            .unwrap();
        assert_eq!(keys.detail, "found OPENAI_API_KEY");
        let model = report
            .checks
            .iter()
            .find(|c| c.name == "local model")
            .unwrap();
        assert!(model.detail.contains("not downloaded"), "{}", model.detail);
        let state = report
            .checks
            .iter()
            .find(|c| c.name == "state dir")
            .unwrap();
        assert!(
            state.detail.ends_with("(not created yet)"),
            "{}",
            state.detail
        );
    }

    #[test]
    fn a_bad_runtime_dir_fails_the_report_with_the_reason() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("not-a-dir");
        std::fs::write(&file, "").unwrap();
        let env = DirEnv::from_pairs(
            crate::runtime::dir::current_uid(),
            [
                ("POD_RUNTIME_DIR", file.to_str().unwrap()),
                ("HOME", tmp.path().to_str().unwrap()),
            ],
        );
        let report = run(&env, crate::runtime::dir::current_uid(), &|_| false);
        assert!(!report.ok());
        let rt = report
            .checks
            .iter()
            .find(|c| c.name == "runtime dir")
            .unwrap();
        assert!(!rt.ok);
        assert!(
            rt.detail.contains("refusing to use runtime dir") || rt.detail.contains("File exists"),
            "{}",
            rt.detail
        );
    }
}
