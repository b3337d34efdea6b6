//! Writes that hold only part of a file, merged into it (small-model profile).
//!
//! Asked to add a function or change a setting, a 1.5B model often `Write`s
//! only the new part (`def clamp(...)`, `version = 1.4.0`) over a file it has
//! just been shown, which would replace the file whole and lose the rest; told
//! so, it replaced the old code with Edit or sent the same Write again (the
//! corpus of issue 17). When what such a write means is unambiguous it is
//! merged instead, and the tool result says what was done:
//! - only top-level definitions (functions, classes), each new to the file or
//!   a changed version of one it has: changed ones replace their namesakes,
//!   new ones go after the file's last definition, imports to the top;
//! - only `key = value` / `key: value` lines, each changing the one line of the
//!   file with that key: those lines are replaced.
//!
//! Anything else (a line kept from elsewhere in the file, a definition copied
//! unchanged beside changed ones, other top-level code) is a whole-file write,
//! as for every other model. `Write` with `whole: true` always is.

/// A partial write merged into the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Merged {
    /// The file's new content.
    pub content: String,
    /// What the merge did, for the tool result.
    pub note: String,
}

/// `new` merged into `old` when it holds only part of it (see the module
/// docs); `None` when it is a whole-file write.
pub(crate) fn merge(old: &str, new: &str) -> Option<Merged> {
    if old.trim().is_empty() || new.trim().is_empty() {
        return None;
    }
    let old_lines: Vec<&str> = old.lines().collect();
    let new_lines: Vec<&str> = new.lines().collect();
    let ending = ending_of(old);
    let merged = merge_definitions(&old_lines, &new_lines, ending)
        .or_else(|| merge_settings(&old_lines, &new_lines, ending))?;
    // Nothing to change: the file stays byte for byte as it is.
    if merged.content.replace("\r\n", "\n").trim_end() == old.replace("\r\n", "\n").trim_end() {
        return Some(Merged {
            content: old.to_string(),
            note: merged.note,
        });
    }
    Some(merged)
}

/// Words a definition line may start with before its keyword.
const MODIFIERS: [&str; 7] = [
    "export ",
    "default ",
    "pub ",
    "pub(crate) ",
    "async ",
    "static ",
    "unsafe ",
];

/// Keywords that start a named top-level definition.
const KEYWORDS: [&str; 9] = [
    "def ",
    "class ",
    "function ",
    "fn ",
    "func ",
    "struct ",
    "enum ",
    "trait ",
    "interface ",
];

/// The name a top-level line defines (`def clamp(`, `pub fn clamp<`,
/// `export function clamp(`, `const clamp = (x) =>`), if it is one.
fn defined_name(line: &str) -> Option<&str> {
    if line.starts_with(char::is_whitespace) {
        return None;
    }
    let mut rest = line;
    while let Some(r) = MODIFIERS.iter().find_map(|m| rest.strip_prefix(m)) {
        rest = r;
    }
    let after = KEYWORDS
        .iter()
        .find_map(|k| rest.strip_prefix(k))
        .or_else(|| {
            // Arrow functions and function expressions bound to a name.
            let r = ["const ", "let ", "var "]
                .iter()
                .find_map(|k| rest.strip_prefix(k))?;
            (line.contains("=>") || line.contains("function")).then_some(r)
        })?;
    let end = after
        .find(|c: char| !(c.is_alphanumeric() || c == '_'))
        .unwrap_or(after.len());
    let name = &after[..end];
    (!name.is_empty() && !name.starts_with(|c: char| c.is_ascii_digit())).then_some(name)
}

/// Whether a top-level line belongs to the definition that follows it
/// (a decorator or a comment).
fn leads_definition(line: &str) -> bool {
    // A shebang belongs to the file, not to its first function.
    !line.starts_with(char::is_whitespace)
        && !line.starts_with("#!")
        && (line.starts_with('@') || line.starts_with('#') || line.starts_with("//"))
}

/// Whether a top-level line is an import.
fn is_import(line: &str) -> bool {
    ["import ", "from ", "use ", "#include ", "require "]
        .iter()
        .any(|k| line.starts_with(k))
        || (line.starts_with("const ") && line.contains("require("))
}

/// One top-level definition: its name and the range of its lines.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Block {
    name: String,
    /// The first line: its decorators or leading comments, else `def_line`.
    start: usize,
    /// The line that names it.
    def_line: usize,
    end: usize,
}

/// The top-level definitions of `lines`: each from its decorators or leading
/// comments to the last line before the next top-level line (a closing `}`,
/// `)`, `]` or `end` at the top level included).
fn blocks(lines: &[&str]) -> Vec<Block> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let Some(name) = defined_name(lines[i]) else {
            i += 1;
            continue;
        };
        let mut start = i;
        while start > 0 && leads_definition(lines[start - 1]) {
            start -= 1;
        }
        let mut end = i + 1;
        while end < lines.len() {
            let line = lines[end];
            if line.trim().is_empty() || line.starts_with(char::is_whitespace) {
                end += 1;
                continue;
            }
            if line.starts_with(['}', ')', ']']) || line.trim_end() == "end" {
                end += 1;
                // `) -> u32 {` or `):` closes a signature split over lines: the
                // body follows.
                if line.trim_end().ends_with(['{', ':', '(']) {
                    continue;
                }
            }
            break;
        }
        // Trailing blank lines separate definitions; they are not part of one.
        while end > i + 1 && lines[end - 1].trim().is_empty() {
            end -= 1;
        }
        out.push(Block {
            name: name.to_string(),
            start,
            def_line: i,
            end,
        });
        i = end;
    }
    out
}

/// The lines of a block, trailing white space ignored (for comparing).
fn block_text(lines: &[&str], b: &Block) -> Vec<String> {
    lines[b.start..b.end]
        .iter()
        .map(|l| l.trim_end().to_string())
        .collect()
}

/// Joins lines with the file's line ending, ending with one.
fn joined(lines: &[String], ending: &str) -> String {
    let mut s = lines.join(ending);
    s.push_str(ending);
    s
}

/// The line ending a file uses (`\r\n` if any line has one).
fn ending_of(text: &str) -> &'static str {
    if text.contains("\r\n") { "\r\n" } else { "\n" }
}

/// Whether `name` is defined somewhere below the top level of `lines` (a
/// method): a top-level definition of that name would not be the same thing.
fn defined_nested(lines: &[&str], name: &str) -> bool {
    lines
        .iter()
        .filter(|l| l.starts_with(char::is_whitespace))
        .any(|l| defined_name(l.trim_start()) == Some(name))
}

/// Names as a short list: "`a`, `b`".
fn names(list: &[String]) -> String {
    list.iter()
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A write of only definitions (and imports) merged into a file that has
/// definitions.
fn merge_definitions(old: &[&str], new: &[&str], ending: &str) -> Option<Merged> {
    let old_blocks = blocks(old);
    let new_blocks = blocks(new);
    if old_blocks.is_empty() || new_blocks.is_empty() {
        return None;
    }
    // Outside its definitions the new content may hold only imports and blank lines.
    let mut imports = Vec::new();
    let mut covered = vec![false; new.len()];
    for b in &new_blocks {
        covered[b.start..b.end].iter_mut().for_each(|c| *c = true);
    }
    for (i, line) in new.iter().enumerate() {
        if covered[i] || line.trim().is_empty() {
            continue;
        }
        if i < new_blocks[0].start && is_import(line) {
            imports.push(line.trim_end().to_string());
            continue;
        }
        return None;
    }
    let (mut replaced, mut added, mut same) = (Vec::new(), Vec::new(), Vec::new());
    // Every change as (position in `old`, lines removed there, lines put in),
    // applied from the end so that positions stay valid.
    let mut splices: Vec<(usize, usize, Vec<String>)> = Vec::new();
    let mut appended: Vec<String> = Vec::new();
    let gap = if old
        .windows(2)
        .any(|w| w[0].trim().is_empty() && w[1].trim().is_empty())
    {
        2
    } else {
        1
    };
    for b in &new_blocks {
        let text = block_text(new, b);
        let namesakes: Vec<&Block> = old_blocks.iter().filter(|o| o.name == b.name).collect();
        match namesakes.as_slice() {
            // A method written at the top level is not a new function.
            [] if defined_nested(old, &b.name) => return None,
            [] => {
                added.push(b.name.clone());
                appended.extend(std::iter::repeat_n(String::new(), gap));
                appended.extend(text);
            }
            [o] if block_text(old, o) == text => same.push(b.name.clone()),
            [o] => {
                replaced.push(b.name.clone());
                // The old decorators and comments stay unless the new version
                // brings its own.
                let start = if b.start < b.def_line {
                    o.start
                } else {
                    o.def_line
                };
                splices.push((start, o.end - start, text));
            }
            // Two definitions of one name: which one is meant is not clear.
            _ => return None,
        }
    }
    // A definition copied unchanged beside changed or new ones: the model
    // rewrote the file, perhaps leaving something out on purpose.
    if !same.is_empty() && new_blocks.len() > 1 {
        return None;
    }
    // Nothing else of the file repeated outside its namesake: otherwise it is
    // a whole-file write with the definitions rearranged.
    let kept_elsewhere = new_blocks.iter().any(|b| {
        let own: Vec<&Block> = old_blocks.iter().filter(|o| o.name == b.name).collect();
        new[b.start..b.end].iter().any(|line| {
            let line = line.trim_end();
            line.chars().any(char::is_alphanumeric)
                && old.iter().enumerate().any(|(i, o)| {
                    o.trim_end() == line && !own.iter().any(|ob| (ob.start..ob.end).contains(&i))
                })
        })
    });
    if kept_elsewhere {
        return None;
    }
    if !appended.is_empty() {
        let after_last = old_blocks.last().map_or(old.len(), |b| b.end);
        splices.push((after_last, 0, appended));
    }
    let new_imports: Vec<String> = imports
        .into_iter()
        .filter(|i| !old.iter().any(|o| o.trim_end() == i))
        .collect();
    if !new_imports.is_empty() {
        // After the file's first run of imports (or at the top).
        let first = old.iter().position(|l| is_import(l));
        let at = first.map_or(0, |f| {
            f + old[f..].iter().take_while(|l| is_import(l)).count()
        });
        splices.push((at, 0, new_imports.clone()));
    }
    if replaced.is_empty() && added.is_empty() && new_imports.is_empty() {
        return Some(Merged {
            content: joined(
                &old.iter().map(|l| l.to_string()).collect::<Vec<_>>(),
                ending,
            ),
            note: format!(
                "The file already has {} exactly as written: nothing changed. To make your \
                 content the whole file instead, call Write again with \"whole\": true.",
                names(&same)
            ),
        });
    }
    // From the end; at one position, what is removed goes before what is put in.
    splices.sort_by(|a, b| b.0.cmp(&a.0).then(b.1.cmp(&a.1)));
    let mut lines: Vec<String> = old.iter().map(|l| l.to_string()).collect();
    for (at, removed, put) in splices {
        lines.splice(at..at + removed, put);
    }
    let mut did = Vec::new();
    if !added.is_empty() {
        did.push(format!("added {} after its other code", names(&added)));
    }
    if !replaced.is_empty() {
        did.push(format!("replaced its {}", names(&replaced)));
    }
    if !new_imports.is_empty() {
        did.push(format!("added {} import line(s)", new_imports.len()));
    }
    Some(Merged {
        content: joined(&lines, ending),
        note: format!(
            "Your content held only part of the file, so it was merged: {}; the rest of the \
             file is kept.",
            did.join(", ")
        ),
    })
}

/// The key of a `key = value` or `key: value` line (`version`, `MAX_RETRIES`,
/// `pub const PORT`), if it is one.
fn setting_key(line: &str) -> Option<&str> {
    let at = line.find(['=', ':'])?;
    let key = line[..at].trim();
    let ok = !key.is_empty()
        && key.chars().any(char::is_alphabetic)
        && key
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '_' | '-' | '.' | ' ' | '"' | '\''));
    ok.then_some(key)
}

/// A write of only setting lines, each changing the one line of the file with
/// its key.
fn merge_settings(old: &[&str], new: &[&str], ending: &str) -> Option<Merged> {
    let wanted: Vec<&str> = new
        .iter()
        .copied()
        .filter(|l| !l.trim().is_empty())
        .collect();
    let mut lines: Vec<String> = old.iter().map(|l| l.to_string()).collect();
    let mut changed = Vec::new();
    for line in &wanted {
        let key = setting_key(line)?;
        let mut at = old
            .iter()
            .enumerate()
            .filter(|(_, o)| setting_key(o) == Some(key))
            .map(|(i, _)| i);
        let (Some(i), None) = (at.next(), at.next()) else {
            return None;
        };
        let old_line = old[i];
        // Unchanged, or a key given twice: not a change of settings.
        if old_line.trim() == line.trim() || changed.iter().any(|(j, _)| *j == i) {
            return None;
        }
        let indent = &old_line[..old_line.len() - old_line.trim_start().len()];
        // A JSON or JS line keeps the comma (or its absence) that separated it
        // from the next.
        let value = line.trim().trim_end_matches(',');
        let comma = if old_line.trim_end().ends_with(',') {
            ","
        } else {
            ""
        };
        changed.push((i, key.to_string()));
        lines[i] = format!("{indent}{value}{comma}");
    }
    // Every line of the file given: a whole-file write, whatever its form.
    if changed.len() >= old.iter().filter(|l| !l.trim().is_empty()).count() {
        return None;
    }
    let keys: Vec<String> = changed.into_iter().map(|(_, k)| k).collect();
    Some(Merged {
        content: joined(&lines, ending),
        note: format!(
            "Your content held only the line(s) for {}, so only those lines were replaced; \
             the rest of the file is kept.",
            names(&keys)
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn merged(old: &str, new: &str) -> String {
        merge(old, new).expect("a merge").content
    }

    #[test]
    fn a_new_function_is_added_after_the_existing_ones() {
        let old = "def double(x):\n    return 2 * x\n";
        let new = "def clamp(x, lo, hi):\n    return max(lo, min(x, hi))";
        assert_eq!(
            merged(old, new),
            "def double(x):\n    return 2 * x\n\ndef clamp(x, lo, hi):\n    return max(lo, min(x, hi))\n"
        );
        assert!(merge(old, new).unwrap().note.contains("added `clamp`"));
    }

    #[test]
    fn a_new_function_goes_before_trailing_top_level_code_with_the_files_spacing() {
        let old = "import sys\n\n\ndef a():\n    pass\n\n\nif __name__ == \"__main__\":\n    a()\n";
        let new = "import os\n\ndef b():\n    return os.sep\n";
        assert_eq!(
            merged(old, new),
            "import sys\nimport os\n\n\ndef a():\n    pass\n\n\ndef b():\n    return os.sep\n\n\nif __name__ == \"__main__\":\n    a()\n"
        );
    }

    #[test]
    fn a_changed_function_replaces_its_namesake_only() {
        let old = "function isAdult(age) {\n  return age < 18;\n}\n\nfunction other() {\n  return 1;\n}\n";
        let new = "function isAdult(age) {\n  return age >= 18;\n}\n";
        assert_eq!(
            merged(old, new),
            "function isAdult(age) {\n  return age >= 18;\n}\n\nfunction other() {\n  return 1;\n}\n"
        );
    }

    #[test]
    fn the_same_function_again_changes_nothing() {
        let old = "def shout(s):\n    return s.upper()\n\ndef rev(s):\n    return s[::-1]\n";
        let m = merge(old, "def rev(s):\n    return s[::-1]\n").unwrap();
        assert_eq!(m.content, old);
        assert!(m.note.contains("nothing changed"), "{}", m.note);
    }

    #[test]
    fn a_changed_setting_line_replaces_its_key_only() {
        let old = "[metadata]\nname = tinytool\nversion = 1.3.2\n";
        assert_eq!(
            merged(old, "version = 1.4.0\n"),
            "[metadata]\nname = tinytool\nversion = 1.4.0\n"
        );
        let old = "{\n  \"name\": \"x\",\n  \"version\": \"1.0.0\",\n  \"private\": true\n}\n";
        assert_eq!(
            merged(old, "\"version\": \"1.1.0\""),
            "{\n  \"name\": \"x\",\n  \"version\": \"1.1.0\",\n  \"private\": true\n}\n"
        );
        let old = "server:\n  host: localhost\n  port: 8080\n";
        assert_eq!(
            merged(old, "port: 9090"),
            "server:\n  host: localhost\n  port: 9090\n"
        );
    }

    #[test]
    fn whole_file_writes_are_not_merged() {
        let code = "def a():\n    return 1\n\ndef b():\n    return 2\n";
        // A definition copied unchanged beside a new one.
        assert_eq!(
            merge(code, "def a():\n    return 1\n\ndef c():\n    return 3\n"),
            None
        );
        // A rename written whole: the body is another definition's.
        assert_eq!(
            merge(
                "def foo(x):\n    return 2 * x\n",
                "def bar(x):\n    return 2 * x\n"
            ),
            None
        );
        // Other top-level code than definitions and imports.
        assert_eq!(merge(code, "def c():\n    return 3\n\nprint(c())\n"), None);
        // A line of another definition repeated.
        assert_eq!(merge(code, "def c():\n    return 2\n"), None);
        // Text that is neither.
        assert_eq!(merge(code, "hello\n"), None);
        assert_eq!(merge("a = 1\nb = 2\n", "a = 5\nb = 6\n"), None);
        assert_eq!(merge("a = 1\nb = 2\n", "a = 1\n"), None);
        assert_eq!(merge("a = 1\na = 2\nb = 3\n", "a = 5\n"), None);
        assert_eq!(merge("a = 1\nb = 2\n", "c = 5\n"), None);
        // An empty file or empty content.
        assert_eq!(merge("", "def a():\n    pass\n"), None);
        assert_eq!(merge(code, "\n"), None);
    }

    #[test]
    fn a_signature_over_several_lines_is_one_definition() {
        let old =
            "pub fn area(\n    w: u32,\n    h: u32,\n) -> u32 {\n    w * h\n}\n\nfn other() {}\n";
        let new = "pub fn area(w: u32, h: u32) -> u64 {\n    u64::from(w) * u64::from(h)\n}\n";
        assert_eq!(
            merged(old, new),
            "pub fn area(w: u32, h: u32) -> u64 {\n    u64::from(w) * u64::from(h)\n}\n\nfn other() {}\n"
        );
        let old = "def total(\n    items,\n    tax,\n):\n    return sum(items) * tax\n";
        let new = "def total(items, tax):\n    return round(sum(items) * tax, 2)\n";
        assert_eq!(merged(old, new), new);
    }

    #[test]
    fn imports_go_after_the_first_imports_whatever_else_changes() {
        let old = "import os\ndef a():\n    return 1\nimport sys\ndef b():\n    return 2\n";
        let new = "import json\ndef a():\n    x = json.dumps(1)\n    y = 2\n    return x\n";
        assert_eq!(
            merged(old, new),
            "import os\nimport json\ndef a():\n    x = json.dumps(1)\n    y = 2\n    return x\nimport sys\ndef b():\n    return 2\n"
        );
    }

    #[test]
    fn a_shebang_and_old_comments_stay_when_a_function_is_replaced() {
        let old = "#!/usr/bin/env python3\n# Says hello.\ndef main():\n    print(\"hi\")\n";
        assert_eq!(
            merged(old, "def main():\n    print(\"hello\")\n"),
            "#!/usr/bin/env python3\n# Says hello.\ndef main():\n    print(\"hello\")\n"
        );
    }

    #[test]
    fn a_method_written_at_the_top_level_is_not_merged() {
        let old = "class Rect:\n    def area(self):\n        return 0\n";
        assert_eq!(
            merge(old, "def area(self):\n    return self.w * self.h\n"),
            None
        );
    }

    #[test]
    fn line_endings_and_untouched_lines_are_kept() {
        let old = "[a]\r\nname = x  \r\nversion = 1\r\n";
        assert_eq!(
            merged(old, "version = 2"),
            "[a]\r\nname = x  \r\nversion = 2\r\n"
        );
        // The same definition again leaves the bytes alone.
        let old = "def a():\r\n    return 1\r\n\r\ndef b():\r\n    return 2";
        assert_eq!(merged(old, "def b():\n    return 2\n"), old);
    }

    #[test]
    fn a_json_line_keeps_its_own_comma_or_none() {
        let old = "{\n  \"name\": \"x\",\n  \"version\": \"1.0.0\"\n}\n";
        assert_eq!(
            merged(old, "\"version\": \"1.1.0\","),
            "{\n  \"name\": \"x\",\n  \"version\": \"1.1.0\"\n}\n"
        );
    }

    #[test]
    fn definition_names_are_found_in_several_languages() {
        for (line, name) in [
            ("def clamp(x):", "clamp"),
            ("async def fetch(url):", "fetch"),
            ("class Point:", "Point"),
            ("pub fn parse<T>(s: &str) -> T {", "parse"),
            ("export function isAdult(age) {", "isAdult"),
            ("const add = (a, b) => a + b;", "add"),
            ("func Max(a, b int) int {", "Max"),
        ] {
            assert_eq!(defined_name(line), Some(name), "{line}");
        }
        for line in [
            "    def inner():",
            "const PORT = 8080;",
            "x = 1",
            "# def a():",
        ] {
            assert_eq!(defined_name(line), None, "{line}");
        }
    }
}
