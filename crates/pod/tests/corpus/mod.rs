//! The corpus of ordinary requests (`benches/corpus/tasks.toml`): tiny
//! projects with a task each, and the checks that say whether the task was
//! done (on disk or in the answer, never on the wording). The real-model
//! suite runs a few of them; `benches/corpus.sh` runs them all.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use serde::Deserialize;

/// The corpus file, built into the test so that it runs from any directory.
const TASKS: &str = include_str!("../../../../benches/corpus/tasks.toml");

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Corpus {
    task: Vec<Task>,
}

/// One task: a project and a request about it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Task {
    /// Unique, also the pod's name (with a `c-` prefix).
    pub(crate) id: String,
    /// What sort of request it is (rename, fix, add, …), for the report.
    pub(crate) kind: String,
    /// The request, as a user would type it.
    pub(crate) prompt: String,
    /// The project: path (relative to the working directory) → content.
    #[serde(default)]
    files: BTreeMap<String, String>,
    /// All must hold for the task to count as done.
    check: Vec<Check>,
}

/// One condition on the outcome.
#[derive(Debug, Deserialize)]
#[serde(untagged, deny_unknown_fields)]
enum Check {
    Contains { file: String, contains: String },
    Lacks { file: String, lacks: String },
    Absent { absent: String },
    Run { run: String },
    Answer { answer: Vec<String> },
    AnswerLacks { answer_lacks: String },
}

/// Every task of the corpus, in file order.
pub(crate) fn tasks() -> Vec<Task> {
    let corpus: Corpus = toml::from_str(TASKS).expect("benches/corpus/tasks.toml");
    corpus.task
}

impl Task {
    /// Writes the project into `work`.
    pub(crate) fn prepare(&self, work: &Path) {
        for (path, content) in &self.files {
            let path = work.join(path);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent).unwrap();
            }
            std::fs::write(&path, content.trim_start_matches('\n')).unwrap();
        }
    }

    /// `Ok` when every check holds on `work` and the final `answer`; else
    /// what did not.
    pub(crate) fn verify(&self, work: &Path, answer: &str) -> Result<(), String> {
        let answer_lower = answer.to_lowercase();
        for check in &self.check {
            match check {
                Check::Contains { file, contains } => {
                    let text = std::fs::read_to_string(work.join(file))
                        .map_err(|e| format!("{file}: {e}"))?;
                    if !text.contains(contains.as_str()) {
                        return Err(format!("{file} does not contain {contains:?}"));
                    }
                }
                Check::Lacks { file, lacks } => {
                    let text = std::fs::read_to_string(work.join(file))
                        .map_err(|e| format!("{file}: {e}"))?;
                    if text.contains(lacks.as_str()) {
                        return Err(format!("{file} still contains {lacks:?}"));
                    }
                }
                Check::Absent { absent } => {
                    if work.join(absent).exists() {
                        return Err(format!("{absent} exists"));
                    }
                }
                Check::Run { run } => {
                    let out = Command::new("sh")
                        .args(["-c", run])
                        .current_dir(work)
                        .output()
                        .map_err(|e| format!("{run}: {e}"))?;
                    if !out.status.success() {
                        // The last line of a Python traceback says what failed.
                        let stderr = String::from_utf8_lossy(&out.stderr);
                        let last = stderr.lines().rev().find(|l| !l.trim().is_empty());
                        return Err(format!(
                            "`{run}` failed: {}",
                            last.unwrap_or("(no output)").trim()
                        ));
                    }
                }
                Check::Answer { answer: any } => {
                    if !any.iter().any(|a| answer_lower.contains(&a.to_lowercase())) {
                        return Err(format!("the answer names none of {any:?}"));
                    }
                }
                Check::AnswerLacks { answer_lacks } => {
                    if answer_lower.contains(&answer_lacks.to_lowercase()) {
                        return Err(format!("the answer says {answer_lacks:?}"));
                    }
                }
            }
        }
        Ok(())
    }
}

#[test]
fn the_corpus_parses_and_its_ids_make_pod_names() {
    let tasks = tasks();
    assert!(tasks.len() >= 30, "{} tasks", tasks.len());
    let mut ids = std::collections::HashSet::new();
    for t in &tasks {
        assert!(ids.insert(t.id.as_str()), "duplicate id {}", t.id);
        let name = format!("c-{}", t.id);
        assert!(
            name.len() <= 32
                && name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'),
            "{name}"
        );
        assert!(!t.check.is_empty(), "{} has no check", t.id);
    }
}

#[test]
fn checks_fail_on_an_untouched_project() {
    // Every task asks for a change or an answer: before it, its checks fail
    // (a check that cannot fail would count a task done that was not).
    for t in tasks() {
        let dir = tempfile::tempdir().unwrap();
        t.prepare(dir.path());
        assert!(
            t.verify(dir.path(), "").is_err(),
            "{}: the checks pass with nothing done",
            t.id
        );
    }
}
