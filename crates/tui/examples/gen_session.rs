//! Appends `N` log entries of ordinary work (a question, a Bash call and its
//! output, a markdown answer, usage) to the session of a stopped pod, so the
//! UI benchmark can restore a pod with a long transcript without an LLM.
//!
//! `cargo run --release -p pod-tui --example gen_session -- SESSION_DIR N [LABEL]`
//! (LABEL ends every answer, so a benchmark can tell two such pods apart).

#![forbid(unsafe_code)]

use std::process::ExitCode;

use llm_types::{Item, Role, Usage};
use protocol::{InvokeKind, Segment, TurnResult};
use session_store::{EntryBody, SessionWriter};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(dir), Some(Ok(n))) = (args.first(), args.get(1).map(|n| n.parse::<u64>())) else {
        eprintln!("usage: gen_session SESSION_DIR N [LABEL]");
        return ExitCode::from(2);
    };
    let (mut log, _report) = match SessionWriter::open(dir) {
        Ok(opened) => opened,
        Err(e) => {
            eprintln!("gen_session: cannot open {dir}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let label = args.get(2).cloned().unwrap_or_default();
    let mut written = 0;
    let mut turn = 1_000;
    while written < n {
        turn += 1;
        let question = format!(
            "Step {turn}: run the tests of module {} and fix what fails.",
            turn % 97
        );
        let call_id = format!("call-{turn}");
        let output: String = (0..12)
            .map(|i| format!("test m{}::case_{i} ... ok\n", turn % 97))
            .collect();
        let bodies = [
            EntryBody::InvokeStart {
                invoke_kind: InvokeKind::UserSend,
                turn,
            },
            EntryBody::UserInput {
                segments: vec![Segment::text(question.clone())],
                item: Item::text(Role::User, question).into(),
            },
            EntryBody::AssistantItem {
                item: Item::tool_call(
                    call_id.clone(),
                    "Bash",
                    format!("{{\"command\":\"cargo test m{}\"}}", turn % 97),
                )
                .into(),
            },
            EntryBody::ToolResult {
                item: Item::tool_result(call_id, "exit code 0", Some(output), false).into(),
            },
            EntryBody::AssistantItem {
                item: Item::text(
                    Role::Assistant,
                    format!("All **12 tests** of `m{}` pass:\n\n```rust\nassert_eq!(parse(\"{turn}\"), Ok({turn}));\n```\n\n- nothing to fix\n- next module {label}", turn % 97),
                )
                .into(),
            },
            EntryBody::Usage {
                llm_call: turn,
                usage: Usage {
                    input_tokens: 1200,
                    output_tokens: 60,
                    ..Usage::default()
                },
            },
            EntryBody::TurnEnd {
                turn,
                result: TurnResult::Finished,
            },
        ];
        for body in bodies {
            if let Err(e) = log.append(body) {
                eprintln!("gen_session: cannot append: {e}");
                return ExitCode::FAILURE;
            }
            written += 1;
        }
    }
    if let Err(e) = log.sync() {
        eprintln!("gen_session: cannot sync: {e}");
        return ExitCode::FAILURE;
    }
    println!("appended {written} entries to {dir}");
    ExitCode::SUCCESS
}
