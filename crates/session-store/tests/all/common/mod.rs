//! A deterministic generator of realistic session traffic, shared by the
//! integration tests and the benchmark (`#[path]`-included there).
#![allow(dead_code)]

use llm_types::{Item, ProviderFamily, Role, Usage};
use protocol::{InvokeKind, Segment, TurnResult};
use session_store::EntryBody;

/// xorshift64*: small, deterministic, good enough for test data.
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub(crate) fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `lo..=hi`.
    pub(crate) fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + (self.next() % (hi - lo + 1) as u64) as usize
    }

    pub(crate) fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
}

const WORDS: &[&str] = &[
    "the",
    "session",
    "log",
    "is",
    "append-only",
    "and",
    "every",
    "line",
    "hashes",
    "previous",
    "file",
    "function",
    "returns",
    "error",
    "because",
    "pod",
    "writer",
    "reader",
    "chain",
    "we",
    "should",
    "check",
    "tests",
    "compile",
    "cargo",
    "build",
    "fixed",
    "résumé",
    "→",
    "naïve",
    "\"quoted\"",
    "path/to/src/lib.rs",
    "42",
    "2024",
    "async",
    "tokio",
    "serde",
    "value",
    "Ok(())",
];

/// Prose of about `len` bytes, with occasional line breaks.
pub(crate) fn prose(rng: &mut Rng, len: usize) -> String {
    let mut out = String::with_capacity(len + 16);
    while out.len() < len {
        if !out.is_empty() {
            out.push(if rng.chance(4) { '\n' } else { ' ' });
        }
        out.push_str(WORDS[rng.range(0, WORDS.len() - 1)]);
    }
    out
}

/// Source-like multi-line text of about `len` bytes (tabs, quotes, backslashes).
pub(crate) fn code(rng: &mut Rng, len: usize) -> String {
    let mut out = String::with_capacity(len + 64);
    let mut n = 1;
    while out.len() < len {
        let indent = "\t".repeat(rng.range(0, 3));
        let line = match rng.range(0, 4) {
            0 => format!("{n:>5}\t{indent}let value = map.get(\"key_{n}\").unwrap_or(&0);"),
            1 => format!("{n:>5}\t{indent}// {}", prose(rng, 30)),
            2 => format!("{n:>5}\t{indent}println!(\"{{}}\\n\", path.display());"),
            3 => format!("{n:>5}\t{indent}}}"),
            _ => format!("{n:>5}\t{indent}if x > {n} {{ return Err(Error::Io(e)); }}"),
        };
        out.push_str(&line);
        out.push('\n');
        n += 1;
    }
    out
}

/// Endless realistic session traffic: invocations with user input, tool calls with
/// JSON arguments, multi-line tool results, reasoning, answers, usage, turn ends,
/// and the occasional notification or error.
pub(crate) struct Traffic {
    rng: Rng,
    turn: u64,
    llm_call: u64,
    call_id: u64,
    pending: std::collections::VecDeque<EntryBody>,
}

impl Traffic {
    pub(crate) fn new(seed: u64) -> Self {
        Traffic {
            rng: Rng::new(seed),
            turn: 0,
            llm_call: 0,
            call_id: 0,
            pending: Default::default(),
        }
    }

    fn usage(&mut self) -> EntryBody {
        self.llm_call += 1;
        EntryBody::Usage {
            llm_call: self.llm_call,
            usage: Usage {
                input_tokens: self.rng.range(100, 200_000) as u64,
                output_tokens: self.rng.range(1, 4000) as u64,
                cache_read_tokens: self.rng.range(0, 150_000) as u64,
                cache_write_tokens: self.rng.range(0, 5000) as u64,
            },
        }
    }

    fn invocation(&mut self) {
        self.turn += 1;
        let rng = &mut self.rng;
        let (invoke_kind, first) = if rng.chance(10) {
            let len = rng.range(60, 300);
            let text = prose(rng, len);
            (
                InvokeKind::Notify,
                EntryBody::SystemItem {
                    origin: "notify".into(),
                    item: Item::text(Role::User, format!("<notification>{text}</notification>"))
                        .into(),
                    queued: None,
                },
            )
        } else {
            let len = rng.range(20, 500);
            let text = prose(rng, len);
            (
                InvokeKind::UserSend,
                EntryBody::UserInput {
                    segments: vec![Segment::text(text.clone())],
                    item: Item::text(Role::User, text).into(),
                },
            )
        };
        self.pending.push_back(EntryBody::InvokeStart {
            invoke_kind,
            turn: self.turn,
        });
        self.pending.push_back(first);
        let calls = self.rng.range(0, 4);
        for _ in 0..calls {
            if self.rng.chance(25) {
                let len = self.rng.range(50, 600);
                let text = prose(&mut self.rng, len);
                self.pending.push_back(EntryBody::AssistantItem {
                    item: Item::Reasoning {
                        provider: ProviderFamily::Anthropic,
                        text,
                        signature: Some("EqQBCkgIARABGAIiQL".repeat(6)),
                        redacted: None,
                        encrypted: None,
                        id: None,
                    }
                    .into(),
                });
            }
            self.call_id += 1;
            let id = format!("toolu_{:016x}", self.call_id);
            let pattern = prose(&mut self.rng, 12);
            let (name, args) = match self.rng.range(0, 2) {
                0 => (
                    "Read",
                    serde_json::json!({"path": format!("src/module_{}.rs", self.call_id), "offset": 1, "limit": 400}),
                ),
                1 => (
                    "Grep",
                    serde_json::json!({"pattern": pattern, "path": "crates/", "glob": "*.rs", "output_mode": "content"}),
                ),
                _ => (
                    "Bash",
                    serde_json::json!({"command": format!("cargo test -p session-store -- --nocapture 2>&1 | tail -n {}", self.call_id % 50), "timeout_ms": 120000}),
                ),
            };
            self.pending.push_back(EntryBody::AssistantItem {
                item: Item::tool_call(id.clone(), name, args.to_string()).into(),
            });
            let usage = self.usage();
            self.pending.push_back(usage);
            let len = self.rng.range(0, 1300);
            let content = (len > 60).then(|| code(&mut self.rng, len));
            let is_error = self.rng.chance(5);
            self.pending.push_back(EntryBody::ToolResult {
                item: Item::tool_result(id, format!("{name}: {len} bytes"), content, is_error)
                    .into(),
            });
        }
        let len = self.rng.range(60, 1300);
        let answer = prose(&mut self.rng, len);
        self.pending.push_back(EntryBody::AssistantItem {
            item: Item::text(Role::Assistant, answer).into(),
        });
        let usage = self.usage();
        self.pending.push_back(usage);
        if self.rng.chance(3) {
            self.pending.push_back(EntryBody::RunError {
                message: "provider error: 529 overloaded_error; retries exhausted".into(),
            });
            self.pending.push_back(EntryBody::TurnEnd {
                turn: self.turn,
                result: TurnResult::Failed,
            });
        } else {
            self.pending.push_back(EntryBody::TurnEnd {
                turn: self.turn,
                result: TurnResult::Finished,
            });
        }
    }
}

impl Iterator for Traffic {
    type Item = EntryBody;

    fn next(&mut self) -> Option<EntryBody> {
        if self.pending.is_empty() {
            self.invocation();
        }
        self.pending.pop_front()
    }
}

/// The items a list of bodies adds to the history (independent of `replay`).
pub(crate) fn items_of(bodies: &[EntryBody]) -> Vec<Item> {
    bodies
        .iter()
        .filter_map(|body| match body {
            EntryBody::UserInput { item, .. }
            | EntryBody::AssistantItem { item }
            | EntryBody::ToolResult { item }
            | EntryBody::SystemItem { item, .. } => Some(item.clone().into()),
            _ => None,
        })
        .collect()
}
