//! The small-model profile (a context window under 32k tokens, as the local
//! model has): a malformed tool call is asked again, changed, instead of
//! failing the run; a reply going round in circles is cut and asked again;
//! advice instead of an edit gets one reminder. Hosted models (big windows)
//! get none of it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use common::{Home, TestPod, events_until, run};
use protocol::{Event, TurnResult};
use test_support::Family;
use test_support::fake_provider::{FakeProvider, Scripted};
use test_support::script::Turn;

fn sse(turn: Turn) -> Scripted {
    Scripted::sse(turn.sse(Family::OpenaiChat))
}

/// A small model's window: the pod takes its small-model profile.
const SMALL: &str = "[model]\ncontext_window = 8192\nmax_tokens = 1024";

/// What llama.cpp answers when the model's output is not a well-formed call.
const LLAMA_FORMAT_ERROR: &str = r#"{"error":{"code":500,"message":"The model produced output that does not match the expected peg-native format","type":"server_error"}}"#;

/// Runs `task` on a new pod with `overlay` against `server`; the run's events.
async fn run_task(home: &Home, server: &FakeProvider, overlay: &str, task: &str) -> Vec<Event> {
    let pod = TestPod::start(home, server, "small", &["--overlay", overlay]);
    let mut client = pod.connect().await;
    client.request(&run(task)).await.unwrap();
    events_until(&mut client, |e| matches!(e, Event::RunEnd { .. })).await
}

fn bodies(server: &FakeProvider) -> Vec<serde_json::Value> {
    server.requests().into_iter().map(|r| r.body).collect()
}

fn finished(events: &[Event]) -> bool {
    events.contains(&Event::RunEnd {
        result: TurnResult::Finished,
    })
}

#[tokio::test]
async fn a_malformed_tool_call_is_asked_again_changed_instead_of_failing() {
    let home = Home::new();
    let server = FakeProvider::start().await;
    server.push(Scripted::status(500, LLAMA_FORMAT_ERROR));
    server.push(sse(Turn::new().text("There are 3 files.")));
    let events = run_task(&home, &server, SMALL, "how many files are there?").await;
    assert!(finished(&events), "{events:#?}");
    let b = bodies(&server);
    assert_eq!(b.len(), 2, "asked once more, not retried as it was");
    // The first as configured; the second with a note and some sampling
    // (greedy decoding would give the same output again).
    assert!(!b[0].to_string().contains("could not be read"));
    let second = b[1].to_string();
    assert!(second.contains("could not be read"), "{second}");
    assert!(b[1]["temperature"].as_f64().unwrap() > 0.0, "{second}");
    // The note is for that request only: the log has no trace of it in the
    // history, only the answer.
    let log = std::fs::read_to_string(home.path("state/sessions/small/000001.jsonl")).unwrap();
    assert!(!log.contains("could not be read"));
    assert!(log.contains("There are 3 files."));
}

#[tokio::test]
async fn a_format_error_three_times_in_a_row_fails_and_says_so() {
    let home = Home::new();
    let server = FakeProvider::start().await;
    for _ in 0..3 {
        server.push(Scripted::status(500, LLAMA_FORMAT_ERROR));
    }
    let pod = TestPod::start(&home, &server, "small", &["--overlay", SMALL]);
    let mut client = pod.connect().await;
    client
        .request(&run("how many files are there?"))
        .await
        .unwrap();
    let events = events_until(&mut client, |e| matches!(e, Event::Error { .. })).await;
    assert_eq!(bodies(&server).len(), 3, "the first try and two more");
    assert!(
        events.iter().any(|e| matches!(
            e,
            Event::TurnEnd {
                result: TurnResult::Failed,
                ..
            }
        )),
        "{events:#?}"
    );
    let error = events
        .iter()
        .find_map(|e| match e {
            Event::Error { message, .. } => Some(message.clone()),
            _ => None,
        })
        .unwrap_or_else(|| panic!("{events:#?}"));
    assert!(
        error.contains("not a valid tool call 3 times in a row")
            && error.contains("does not match the expected"),
        "{error}"
    );
}

#[tokio::test]
async fn a_reply_that_repeats_itself_is_cut_and_asked_again() {
    let home = Home::new();
    let server = FakeProvider::start().await;
    let advice = "You should check whether the age is at least eighteen and return True then.\n";
    server.push(sse(Turn::new().text(advice.repeat(40)).in_pieces(80)));
    server.push(sse(Turn::new().text("The check is inverted.")));
    let events = run_task(&home, &server, SMALL, "why is is_adult wrong?").await;
    assert!(finished(&events), "{events:#?}");
    let b = bodies(&server);
    assert_eq!(b.len(), 2);
    assert!(b[1].to_string().contains("kept repeating"), "{}", b[1]);
    // The loop never became part of the conversation.
    let log = std::fs::read_to_string(home.path("state/sessions/small/000001.jsonl")).unwrap();
    assert!(!log.contains("eighteen"), "{log}");
    assert!(log.contains("The check is inverted."));
}

#[tokio::test]
async fn advice_instead_of_an_edit_gets_one_reminder() {
    let home = Home::new();
    let server = FakeProvider::start().await;
    server.push(sse(
        Turn::new().text("Change `+` to `*`:\n```py\nreturn w * h\n```")
    ));
    server.push(sse(Turn::new().text("I cannot edit files.")));
    let events = run_task(&home, &server, SMALL, "fix area() in rect.py").await;
    assert!(finished(&events), "{events:#?}");
    let b = bodies(&server);
    assert_eq!(b.len(), 2, "one reminder, not two");
    assert!(
        b[1].to_string()
            .contains("You have not changed any file yet"),
        "{}",
        b[1]
    );
    // The reminder is in the log (a restore replays it).
    let log = std::fs::read_to_string(home.path("state/sessions/small/000001.jsonl")).unwrap();
    assert!(log.contains("You have not changed any file yet"));
}

#[tokio::test]
async fn hosted_models_get_none_of_the_small_model_measures() {
    // The same scripts with a hosted model's window: advice ends the run,
    // and a repetitive reply is left alone.
    let home = Home::new();
    let server = FakeProvider::start().await;
    let advice = "You should check whether the age is at least eighteen and return True then.\n";
    server.push(sse(Turn::new().text(advice.repeat(40)).in_pieces(80)));
    std::fs::write(
        home.path("work").join("people.py"),
        "def is_adult(age):\n    return age < 18\n",
    )
    .unwrap();
    let big = "[model]\ncontext_window = 200000";
    let events = run_task(&home, &server, big, "fix is_adult in people.py").await;
    assert!(finished(&events), "{events:#?}");
    let b = bodies(&server);
    assert_eq!(b.len(), 1);
    // Nor are the files it names attached (only `file_ref` segments are).
    assert!(!b[0].to_string().contains("return age < 18"), "{}", b[0]);
    let log = std::fs::read_to_string(home.path("state/sessions/small/000001.jsonl")).unwrap();
    assert!(!log.contains("You have not changed any file yet"));
    assert_eq!(log.matches("eighteen").count(), 40);
}

#[tokio::test]
async fn the_files_a_message_names_go_with_it_and_into_the_log() {
    let home = Home::new();
    let server = FakeProvider::start().await;
    std::fs::write(
        home.path("work").join("rect.py"),
        "def area(width, height):\n    return width + height\n",
    )
    .unwrap();
    server.push(sse(Turn::new().call(
        "e1",
        "Edit",
        r#"{"path":"rect.py","old_string":"width + height","new_string":"width * height"}"#,
    )));
    server.push(sse(Turn::new().text("Fixed.")));
    let events = run_task(&home, &server, SMALL, "fix area() in rect.py").await;
    assert!(finished(&events), "{events:#?}");
    // The model saw the file with the request (and a listing: the first turn),
    // and could Edit it without a Read first.
    let first = bodies(&server)[0].to_string();
    assert!(
        first.contains("return width + height") && first.contains("Files in the working directory"),
        "{first}"
    );
    assert_eq!(
        std::fs::read_to_string(home.path("work").join("rect.py")).unwrap(),
        "def area(width, height):\n    return width * height\n"
    );
    // The log says what was attached: a file_ref segment of the user's input.
    let log = std::fs::read_to_string(home.path("state/sessions/small/000001.jsonl")).unwrap();
    let input = log.lines().find(|l| l.contains("\"user_input\"")).unwrap();
    assert!(
        input.contains(r#"{"kind":"file_ref","path":"rect.py"}"#),
        "{input}"
    );
}

#[tokio::test]
async fn the_same_failing_call_three_steps_in_a_row_stops_the_run() {
    let home = Home::new();
    let server = FakeProvider::start().await;
    for i in 0..5 {
        server.push(sse(Turn::new().call(
            format!("s{i}"),
            "StopPod",
            r#"{"name":"nobody"}"#,
        )));
    }
    let pod = TestPod::start(&home, &server, "small", &["--overlay", SMALL]);
    let mut client = pod.connect().await;
    client.request(&run("rename it")).await.unwrap();
    let events = events_until(&mut client, |e| matches!(e, Event::Error { .. })).await;
    // Three identical steps, then it stops instead of spending the budget.
    assert_eq!(bodies(&server).len(), 3, "{events:#?}");
    let error = events
        .iter()
        .find_map(|e| match e {
            Event::Error { message, .. } => Some(message.clone()),
            _ => None,
        })
        .unwrap();
    assert!(
        error.contains("same call (StopPod) three steps in a row"),
        "{error}"
    );
}
