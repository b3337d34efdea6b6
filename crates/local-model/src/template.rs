//! The chat template the local server uses, derived from the one inside the GGUF.
//!
//! The model (Qwen2.5-Coder-1.5B) answers a function call with a bare JSON object
//! `{"name": ..., "arguments": ...}` rather than the `<tool_call>` tags its stock
//! template asks for, so with the stock template llama.cpp hands the calls back as
//! text. The derived template asks for exactly that bare object (and plain text
//! otherwise), and renders earlier calls without the tags; llama.cpp infers its
//! tool-call parser from how the template renders calls, so it then parses the
//! bare JSON into standard `tool_calls`.

use super::ModelError;

/// What the derived template tells the model after the tool list. Chosen by
/// measurement (docs/benchmarks.md): of the phrasings tried, this one made the
/// 1.5B model answer 8 of 8 first steps of varied tasks with a parsable call and
/// sensible paths; without "never by describing them" it often explains the call
/// in prose (which llama.cpp cannot parse), a JSON example in the instruction makes
/// it echo the `<tools>` list, and without the sentence on paths it searches a
/// made-up `src/main.rs`.
pub(crate) const TOOL_INSTRUCTION: &str = "Use the functions to act: read, write and search files and run \
     commands through them, never by describing them. To call a function, your whole reply is a \
     single JSON object {\"name\": <function-name>, \"arguments\": <args-json-object>}, with \
     nothing before or after it. Call one function per reply. When the task is done, reply in \
     plain text. Paths are relative to the working directory (\".\" is all of it); do not guess \
     file names, search for them.";

/// The end of the tool list in the stock template (`\n` as written in Jinja source).
const TOOLS_END: &str = "</tools>\\n\\n";
/// The end of the system turn that holds the instruction.
const TURN_END: &str = "<|im_end|>";
/// The tags around a rendered call, as Jinja source.
const CALL_OPEN: &str = "<tool_call>\\n";
const CALL_CLOSE: &str = "\\n</tool_call>";

/// Escapes `text` for use inside a quoted Jinja string literal.
fn jinja_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\'' => out.push_str("\\'"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// Derives the bare-JSON tool-call template from a stock Qwen2.5 (ChatML) template:
/// the instruction between the tool list and the end of the system turn becomes
/// [`TOOL_INSTRUCTION`], and the `<tool_call>` tags around earlier calls go.
/// Fails, saying what it could not find, for a template of another shape.
pub(crate) fn derive(stock: &str) -> Result<String, ModelError> {
    let unknown = |what: &str| ModelError::Template {
        reason: format!("the model's chat template has {what}; pods knows how to adapt Qwen2.5's"),
    };
    let tools_end = match stock.match_indices(TOOLS_END).collect::<Vec<_>>()[..] {
        [(at, _)] => at + TOOLS_END.len(),
        [] => return Err(unknown("no `</tools>` list")),
        _ => return Err(unknown("more than one `</tools>` list")),
    };
    let instruction_end = stock[tools_end..]
        .find(TURN_END)
        .map(|i| tools_end + i)
        .ok_or_else(|| unknown("no `<|im_end|>` after the tool list"))?;
    let old_instruction = &stock[tools_end..instruction_end];
    if !old_instruction.contains("tool_call") {
        return Err(unknown(
            "a tool instruction that does not mention <tool_call>",
        ));
    }
    let mut out = String::with_capacity(stock.len());
    out.push_str(&stock[..tools_end]);
    out.push_str(&jinja_escape(TOOL_INSTRUCTION));
    out.push_str(&stock[instruction_end..]);
    if !out.contains(CALL_OPEN) || !out.contains(CALL_CLOSE) {
        return Err(unknown("no `<tool_call>` tags around earlier calls"));
    }
    let out = out.replace(CALL_OPEN, "").replace(CALL_CLOSE, "");
    if out.contains("tool_call>") {
        return Err(unknown("`<tool_call>` tags in a form pods does not know"));
    }
    Ok(tools_first(&out).unwrap_or(out))
}

/// The system message's part of the system turn, as Qwen2.5's template writes it.
const SYSTEM_BLOCK_START: &str = "{%- if messages[0]['role'] == 'system' %}";
/// The end of that part.
const BLOCK_END: &str = "{%- endif %}";
/// The start of the tool list's heading after the system message.
const TOOLS_HEADING: &str = "\"\\n\\n# Tools";
/// The end of the system turn after the tool instruction.
const INSTRUCTION_END: &str = "<|im_end|>\\n\" }}";

/// Moves the system message after the tool list and the instruction, so the
/// system turn starts with what every pod shares (the tools, the instruction)
/// and llama.cpp's prompt cache serves that prefix to every pod; the
/// pod-specific text (name, directory, scope) comes last. `None` when the
/// template is not shaped as expected (the order then stays as it was).
fn tools_first(template: &str) -> Option<String> {
    let tools_branch = template.find("{%- if tools %}")?;
    let block_start = tools_branch + template[tools_branch..].find(SYSTEM_BLOCK_START)?;
    let heading = block_start + template[block_start..].find(TOOLS_HEADING)?;
    let block_end = block_start + template[block_start..heading].find(BLOCK_END)? + BLOCK_END.len();
    let block = &template[block_start..block_end];
    let tools_end = heading + template[heading..].find("</tools>")?;
    let turn_end = tools_end + template[tools_end..].find(INSTRUCTION_END)?;
    let mut out = String::with_capacity(template.len() + 32);
    out.push_str(&template[..block_start]);
    // The block and what stood between it and the heading go; the heading
    // loses the blank lines that separated it from the system message.
    out.push_str("{{- \"# Tools");
    out.push_str(&template[heading + TOOLS_HEADING.len()..turn_end]);
    out.push_str("\" }}\n    {{- \"\\n\\n\" }}\n    ");
    out.push_str(block);
    out.push_str("\n    {{- \"<|im_end|>\\n\" }}");
    out.push_str(&template[turn_end + INSTRUCTION_END.len()..]);
    Some(out)
}

/// A ChatML template of the same shape as Qwen2.5's (written for the tests).
#[cfg(test)]
pub(crate) const SAMPLE_TEMPLATE: &str = r#"{%- if tools %}{{- '<|im_start|>system\n' + messages[0]['content'] }}{{- "\n\n# Tools\n\n<tools>" }}{%- for tool in tools %}{{- "\n" + (tool | tojson) }}{%- endfor %}{{- "\n</tools>\n\nWrap each call in <tool_call></tool_call> tags:\n<tool_call>\n{{\"name\": <name>, \"arguments\": <args>}}\n</tool_call><|im_end|>\n" }}{%- endif %}
{%- for message in messages %}{%- if message.role == "assistant" and message.tool_calls %}{{- '<|im_start|>assistant' }}{%- for tool_call in message.tool_calls %}{{- '\n<tool_call>\n{"name": "' + tool_call.function.name + '", "arguments": ' + (tool_call.function.arguments | tojson) + '}\n</tool_call>' }}{%- endfor %}{{- '<|im_end|>\n' }}{%- else %}{{- '<|im_start|>' + message.role + '\n' + message.content + '<|im_end|>\n' }}{%- endif %}{%- endfor %}"#;

/// The head of Qwen2.5's stock template as it is laid out in the GGUF (for the
/// tools-first test).
#[cfg(test)]
const QWEN_HEAD: &str = r#"{%- if tools %}
    {{- '<|im_start|>system\n' }}
    {%- if messages[0]['role'] == 'system' %}
        {{- messages[0]['content'] }}
    {%- else %}
        {{- 'You are Qwen, created by Alibaba Cloud. You are a helpful assistant.' }}
    {%- endif %}
    {{- "\n\n# Tools\n\nYou may call one or more functions to assist with the user query.\n\nYou are provided with function signatures within <tools></tools> XML tags:\n<tools>" }}
    {%- for tool in tools %}
        {{- "\n" }}
        {{- tool | tojson }}
    {%- endfor %}
    {{- "\n</tools>\n\nFor each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:\n<tool_call>\n{\"name\": <function-name>, \"arguments\": <args-json-object>}\n</tool_call><|im_end|>\n" }}
{%- else %}
    {{- '<|im_start|>system\nYou are Qwen.<|im_end|>\n' }}
{%- endif %}
{%- for message in messages %}{%- if message.role == "assistant" and message.tool_calls %}{%- for tool_call in message.tool_calls %}{{- '\n<tool_call>\n{"name": "' + tool_call.function.name + '"}\n</tool_call>' }}{%- endfor %}{%- endif %}{%- endfor %}"#;

#[cfg(test)]
mod tests {
    use super::*;
    const SAMPLE: &str = SAMPLE_TEMPLATE;

    #[test]
    fn the_system_message_goes_after_the_tools_so_pods_share_a_prefix() {
        let derived = derive(QWEN_HEAD).unwrap();
        let tools = derived.find("# Tools").unwrap();
        let instruction = derived.find("Use the functions to act").unwrap();
        let system = derived.find("{{- messages[0]['content'] }}").unwrap();
        let end = derived.find("{{- \"<|im_end|>\\n\" }}").unwrap();
        assert!(
            tools < instruction && instruction < system && system < end,
            "{derived}"
        );
        // The turn still starts the same way, and nothing else moved.
        assert!(
            derived.starts_with(
                "{%- if tools %}\n    {{- '<|im_start|>system\\n' }}\n    {{- \"# Tools"
            ),
            "{derived}"
        );
        assert!(
            derived.contains(
                "{%- else %}\n    {{- '<|im_start|>system\\nYou are Qwen.<|im_end|>\\n' }}"
            )
        );
        assert_eq!(derived.matches("messages[0]['content']").count(), 1);
        // A template of another layout keeps its order.
        assert!(tools_first("{{ messages }}").is_none());
    }

    #[test]
    fn derived_template_asks_for_bare_json_and_renders_calls_bare() {
        let derived = derive(SAMPLE).unwrap();
        assert!(!derived.contains("tool_call>"), "{derived}");
        // The new instruction sits where the old one was, escaped for a Jinja string.
        assert!(
            derived.contains(
                "\\n</tools>\\n\\nUse the functions to act: read, write and search files and run \
                 commands through them, never by describing them. To call a function, your whole \
                 reply is a single JSON object {\\\"name\\\": <function-name>, \\\"arguments\\\": \
                 <args-json-object>}, with nothing before or after it."
            ),
            "{derived}"
        );
        assert!(
            derived.contains("search for them.<|im_end|>\\n\" }}"),
            "{derived}"
        );
        // Earlier calls are rendered as the bare object.
        assert!(
            derived.contains(r#"'\n{"name": "' + tool_call.function.name"#),
            "{derived}"
        );
        assert!(
            derived.contains(r#"(tool_call.function.arguments | tojson) + '}' }}"#),
            "{derived}"
        );
        // Everything else is untouched.
        assert!(derived.starts_with("{%- if tools %}"));
        assert!(derived.ends_with("{%- endfor %}"));
        assert!(
            derive(&derived)
                .unwrap_err()
                .to_string()
                .contains("<tool_call>")
        );
    }

    #[test]
    fn templates_of_another_shape_are_refused_with_what_is_missing() {
        for (template, want) in [
            ("{{ messages }}", "no `</tools>` list"),
            (
                "\\n</tools>\\n\\n call <tool_call>",
                "no `<|im_end|>` after the tool list",
            ),
            (
                "\\n</tools>\\n\\nuse JSON<|im_end|> <tool_call>\\n x \\n</tool_call>",
                "does not mention <tool_call>",
            ),
            (
                "\\n</tools>\\n\\n<tool_call><|im_end|>",
                "no `<tool_call>` tags around earlier calls",
            ),
            (
                "\\n</tools>\\n\\n<tool_call><|im_end|> <tool_call>\\n\\n</tool_call> </tool_call>",
                "in a form pods does not know",
            ),
            (
                "</tools>\\n\\n<tool_call><|im_end|></tools>\\n\\n",
                "more than one",
            ),
        ] {
            let err = derive(template).unwrap_err().to_string();
            assert!(err.contains(want), "{template}: {err}");
            assert!(err.contains("Qwen2.5"), "{err}");
        }
    }

    #[test]
    fn jinja_escaping_covers_quotes_backslashes_and_newlines() {
        assert_eq!(jinja_escape("a\"b'c\\d\ne"), "a\\\"b\\'c\\\\d\\ne");
    }
}
