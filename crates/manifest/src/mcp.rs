//! `[[mcp]]`: MCP servers whose tools a pod offers its model, as written in a
//! layer and as resolved. Starting them (in the pod's command sandbox) is the
//! `mcp` crate's job.

use std::collections::BTreeMap;
use std::path::Path;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::manifest::Origin;
use crate::path::resolve_target;

/// The longest server name (tool names are `mcp__<server>__<tool>`, at most
/// 64 characters in all).
pub const MAX_MCP_NAME: usize = 24;

/// `[[mcp]]` as written: a local MCP server started over stdio (`command`),
/// or a server reached over Streamable HTTP (`url`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct McpLayer {
    /// The server's name: its tools are offered as `mcp__<name>__<tool>`
    /// (letters, digits, `_` and `-`; at most 24).
    pub name: String,
    /// The program: a bare name is looked up on `PATH`; a path with a `/` is
    /// resolved against the layer's base directory. Either this or `url`
    /// (unless `enabled = false`).
    #[serde(default)]
    pub command: Option<String>,
    /// A Streamable HTTP server's endpoint (`http://` or `https://`), instead
    /// of `command`; it runs elsewhere, outside the pod's sandbox.
    #[serde(default)]
    pub url: Option<String>,
    /// Headers sent to a `url` server; a value's `${VAR}` is taken from the
    /// pod's environment, and a credential header (`Authorization`, or a name
    /// with `token`, `key`, `secret` or `auth` in it) must take its value from
    /// one: secrets stay out of files.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Its arguments.
    #[serde(default)]
    pub args: Vec<String>,
    /// Variables set for the server on top of what commands get (`env_remove`
    /// still applies to the rest); a value's `${VAR}` is taken from the pod's
    /// environment when the server starts, so secrets stay out of files.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// `false` removes a server of that name a lower layer added (default true).
    #[serde(default)]
    pub enabled: Option<bool>,
    /// Start the server on the first call of one of its tools instead of with
    /// the pod (its tools are known from an earlier start; default false).
    #[serde(default)]
    pub lazy: Option<bool>,
}

/// An MCP server as the pod starts it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct McpServer {
    /// Its name.
    pub name: String,
    /// The program (absolute when the layer gave a path); empty for a `url` server.
    pub command: String,
    /// A Streamable HTTP server's endpoint.
    pub url: Option<String>,
    /// Headers for a `url` server, `${VAR}` not yet expanded.
    pub headers: Vec<(String, String)>,
    /// Its arguments.
    pub args: Vec<String>,
    /// Its extra variables, `${VAR}` not yet expanded.
    pub env: Vec<(String, String)>,
    /// Started on first use, not with the pod.
    pub lazy: bool,
}

/// A server together with the layer that contributed it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct SourcedMcp {
    /// The server.
    #[serde(flatten)]
    pub server: McpServer,
    /// Where it came from.
    pub origin: Origin,
}

/// An `[[mcp]]` entry resolved against `base` and `home` (`None`: the entry
/// removes the server of its name); the reason when it is not valid.
pub(crate) fn resolve_mcp(
    layer: McpLayer,
    base: &Path,
    home: Option<&Path>,
) -> Result<Option<McpServer>, String> {
    let name = &layer.name;
    if name.is_empty()
        || name.len() > MAX_MCP_NAME
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        return Err(format!(
            "name {name:?}: use 1 to {MAX_MCP_NAME} letters, digits, `_` or `-` (tools are named mcp__<name>__<tool>)"
        ));
    }
    if layer.enabled == Some(false) {
        return Ok(None);
    }
    if let Some(url) = layer.url.clone() {
        return resolve_url(layer, url);
    }
    if !layer.headers.is_empty() {
        return Err("headers are for a `url` server; a `command` server takes `env`".into());
    }
    let command = layer.command.unwrap_or_default();
    if command.trim().is_empty() {
        return Err(
            "give the server's program (`command`, e.g. \"node\") or its endpoint (`url`)".into(),
        );
    }
    let command = if command.contains('/') {
        resolve_target(Path::new(&command), base, home)
            .map_err(|e| format!("command {command:?}: {}", crate::hooks::tilde_reason(&e)))?
            .display()
            .to_string()
    } else {
        command
    };
    for key in layer.env.keys() {
        let valid = !key.is_empty()
            && !key.starts_with(|c: char| c.is_ascii_digit())
            && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid {
            return Err(format!("env {key:?} is not a variable name"));
        }
    }
    Ok(Some(McpServer {
        name: layer.name,
        command,
        url: None,
        headers: Vec::new(),
        args: layer.args,
        env: layer.env.into_iter().collect(),
        lazy: layer.lazy.unwrap_or(false),
    }))
}

/// Header names whose value is a credential: it must come from `${VAR}`.
fn is_credential(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    name == "authorization"
        || ["token", "key", "secret", "auth", "cookie"]
            .iter()
            .any(|w| name.contains(w))
}

/// Whether a credential header's value comes from variables: with its
/// `${VAR}` parts taken out, at most a scheme word (`Bearer`, `Basic`, ...) is
/// left, never a secret written in the file.
fn from_variables(value: &str) -> bool {
    if !value.contains("${") {
        return false;
    }
    let mut left = String::new();
    let mut rest = value;
    while let Some(start) = rest.find("${") {
        left.push_str(&rest[..start]);
        match rest[start..].find('}') {
            Some(end) => rest = &rest[start + end + 1..],
            None => return false,
        }
    }
    left.push_str(rest);
    let words: Vec<&str> = left.split_whitespace().collect();
    words.len() <= 1
        && words
            .iter()
            .all(|w| w.chars().all(|c| c.is_ascii_alphabetic()) && w.len() <= 12)
}

/// Headers the transport sets itself.
const RESERVED_HEADERS: [&str; 7] = [
    "accept",
    "content-type",
    "content-length",
    "host",
    "mcp-session-id",
    "mcp-protocol-version",
    "last-event-id",
];

/// A `url` entry resolved; the reason when it is not valid.
fn resolve_url(layer: McpLayer, url: String) -> Result<Option<McpServer>, String> {
    if layer.command.is_some() || !layer.args.is_empty() || !layer.env.is_empty() {
        return Err(
            "give either `command` (with `args`, `env`) or `url` (with `headers`), not both".into(),
        );
    }
    let plain = url.strip_prefix("http://");
    let rest = url.strip_prefix("https://").or(plain);
    let Some(rest) = rest.filter(|r| !r.is_empty() && !r.starts_with('/')) else {
        return Err(format!(
            "url {url:?}: give an http:// or https:// endpoint (e.g. \"https://mcp.example.com/mcp\")"
        ));
    };
    if url.contains(char::is_whitespace) {
        return Err(format!("url {url:?} holds a space"));
    }
    if url.contains("${") {
        return Err(format!(
            "url {url:?}: a url takes no ${{VAR}}; send a secret in `headers` (e.g. Authorization = \"Bearer ${{TOKEN}}\")"
        ));
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    if authority.contains('@') {
        return Err(format!(
            "url {url:?}: a user or password in the url would be kept in files and logs; send it in `headers` from a variable"
        ));
    }
    let host = authority.rsplit_once(':').map_or(authority, |(h, _)| h);
    let loopback = matches!(host, "localhost" | "127.0.0.1" | "[::1]");
    if plain.is_some() && !loopback && layer.headers.keys().any(|k| is_credential(k)) {
        return Err(format!(
            "url {url:?}: a credential header would cross the network unencrypted; use https://"
        ));
    }
    for (key, value) in &layer.headers {
        let valid = !key.is_empty()
            && key
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
        if !valid {
            return Err(format!("headers {key:?} is not a header name"));
        }
        if RESERVED_HEADERS.contains(&key.to_ascii_lowercase().as_str()) {
            return Err(format!(
                "headers {key:?}: the transport sets this header itself"
            ));
        }
        if is_credential(key) && !from_variables(value) {
            return Err(format!(
                "headers {key:?} holds a credential written in the file; take it from the environment instead, e.g. \"Bearer ${{MY_TOKEN}}\""
            ));
        }
    }
    Ok(Some(McpServer {
        name: layer.name,
        command: String::new(),
        url: Some(url),
        headers: layer.headers.into_iter().collect(),
        args: Vec::new(),
        env: Vec::new(),
        lazy: layer.lazy.unwrap_or(false),
    }))
}

/// `value` with each `${VAR}` replaced by `lookup(VAR)`; the name of a
/// variable that is not set.
pub fn expand_env(value: &str, lookup: impl Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(value.len());
    let mut rest = value;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else {
            return Err(format!("an unclosed `${{` in {value:?}"));
        };
        let name = &after[..end];
        out.push_str(
            &lookup(name)
                .ok_or_else(|| format!("${{{name}}} is not set in the pod's environment"))?,
        );
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// The `[[mcp]]` entries of a child pod's overlay, given its parent's
/// servers and the names it gets (`None`: all): each one it gets that is not
/// from the user manifest (which the child reads itself), and `enabled =
/// false` for each one it does not get.
pub fn inherited_servers(servers: &[SourcedMcp], only: Option<&[String]>) -> Vec<toml::Value> {
    let gets = |s: &SourcedMcp| only.is_none_or(|names| names.contains(&s.server.name));
    let removed = servers.iter().filter(|s| !gets(s)).map(|s| {
        let mut t = toml::Table::new();
        t.insert("name".into(), s.server.name.clone().into());
        t.insert("enabled".into(), false.into());
        toml::Value::Table(t)
    });
    servers
        .iter()
        .filter(|s| gets(s) && !matches!(s.origin, Origin::User { .. } | Origin::BuiltIn))
        .map(|s| {
            let s = &s.server;
            let mut t = toml::Table::new();
            t.insert("name".into(), s.name.clone().into());
            t.insert("lazy".into(), s.lazy.into());
            if let Some(url) = &s.url {
                t.insert("url".into(), url.clone().into());
                let headers: toml::Table = s
                    .headers
                    .iter()
                    .map(|(k, v)| (k.clone(), toml::Value::from(v.clone())))
                    .collect();
                t.insert("headers".into(), toml::Value::Table(headers));
                return toml::Value::Table(t);
            }
            t.insert("command".into(), s.command.clone().into());
            let args = s.args.iter().cloned().map(toml::Value::from).collect();
            t.insert("args".into(), toml::Value::Array(args));
            let env: toml::Table = s
                .env
                .iter()
                .map(|(k, v)| (k.clone(), toml::Value::from(v.clone())))
                .collect();
            t.insert("env".into(), toml::Value::Table(env));
            toml::Value::Table(t)
        })
        .chain(removed)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layer(name: &str, command: &str) -> McpLayer {
        McpLayer {
            name: name.into(),
            command: Some(command.into()),
            url: None,
            headers: BTreeMap::new(),
            enabled: None,
            lazy: None,
            args: vec!["serve".into()],
            env: BTreeMap::from([("TOKEN".into(), "${GH_TOKEN}".into())]),
        }
    }

    #[test]
    fn url_servers_take_credentials_from_the_environment_only() {
        let base = Path::new("/repo");
        let url = |url: &str, headers: &[(&str, &str)]| McpLayer {
            command: None,
            args: Vec::new(),
            env: BTreeMap::new(),
            url: Some(url.into()),
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..layer("remote", "x")
        };
        let s = resolve_mcp(
            url(
                "https://mcp.example.com/mcp",
                &[("Authorization", "Bearer ${TOKEN}"), ("X-Team", "core")],
            ),
            base,
            None,
        )
        .unwrap()
        .unwrap();
        assert_eq!(s.url.as_deref(), Some("https://mcp.example.com/mcp"));
        assert_eq!(s.headers.len(), 2);
        // Plain HTTP with a token is for this machine only.
        let local = url(
            "http://127.0.0.1:8765/mcp",
            &[("Authorization", "Bearer ${T}")],
        );
        assert!(resolve_mcp(local, base, None).is_ok());
        let raw = url("https://x/mcp", &[("X-Api-Key", "${K}")]);
        assert!(resolve_mcp(raw, base, None).is_ok());
        for (entry, want) in [
            (
                url("https://x/mcp", &[("Authorization", "Bearer abc")]),
                "credential",
            ),
            (url("https://x/mcp", &[("X-Api-Key", "abc")]), "credential"),
            (
                url(
                    "https://x/mcp",
                    &[("Authorization", "Bearer sk-live-1 ${X}")],
                ),
                "credential",
            ),
            (url("https://u:p@x/mcp", &[]), "a user or password"),
            (url("https://x/mcp?key=${K}", &[]), "takes no ${VAR}"),
            (
                url(
                    "http://mcp.example.com/mcp",
                    &[("Authorization", "Bearer ${T}")],
                ),
                "use https://",
            ),
            (
                url("https://x/mcp", &[("Accept", "x")]),
                "sets this header itself",
            ),
            (
                url("https://x/mcp", &[("Bad Name", "x")]),
                "not a header name",
            ),
            (url("ftp://x/mcp", &[]), "http:// or https://"),
            (url("https://", &[]), "http:// or https://"),
            (
                McpLayer {
                    command: Some("node".into()),
                    ..url("https://x/mcp", &[])
                },
                "not both",
            ),
        ] {
            let e = resolve_mcp(entry, base, None).unwrap_err();
            assert!(e.contains(want), "{e} should say {want}");
        }
        let headers_without_url = McpLayer {
            headers: BTreeMap::from([("X-Team".into(), "core".into())]),
            ..layer("local", "node")
        };
        let e = resolve_mcp(headers_without_url, base, None).unwrap_err();
        assert!(e.contains("headers are for a `url` server"), "{e}");
    }

    #[test]
    fn servers_resolve_and_bad_ones_say_why() {
        let base = Path::new("/repo");
        let s = resolve_mcp(layer("github", "node"), base, None)
            .unwrap()
            .unwrap();
        assert_eq!(s.command, "node");
        assert_eq!(s.env, [("TOKEN".to_string(), "${GH_TOKEN}".to_string())]);
        let s = resolve_mcp(layer("fs", "./tools/server.js"), base, None)
            .unwrap()
            .unwrap();
        let off = McpLayer {
            enabled: Some(false),
            command: None,
            ..layer("fs", "x")
        };
        assert_eq!(resolve_mcp(off, base, None).unwrap(), None);
        assert_eq!(s.command, "/repo/tools/server.js");
        for (name, command, want) in [
            ("", "node", "name \"\""),
            ("has space", "node", "letters, digits"),
            ("a-very-long-server-name-indeed", "node", "1 to 24"),
            ("ok", " ", "give the server's program"),
        ] {
            let err = resolve_mcp(layer(name, command), base, None).unwrap_err();
            assert!(err.contains(want), "{err}");
        }
        let mut bad_env = layer("ok", "node");
        bad_env.env.insert("1BAD".into(), "x".into());
        assert!(
            resolve_mcp(bad_env, base, None)
                .unwrap_err()
                .contains("\"1BAD\"")
        );
    }

    #[test]
    fn env_values_take_variables_from_the_pods_environment() {
        let lookup = |k: &str| (k == "GH_TOKEN").then(|| "s3cret".to_string());
        assert_eq!(
            expand_env("Bearer ${GH_TOKEN}!", lookup).unwrap(),
            "Bearer s3cret!"
        );
        assert_eq!(expand_env("plain", lookup).unwrap(), "plain");
        assert_eq!(
            expand_env("${NOPE}", lookup).unwrap_err(),
            "${NOPE} is not set in the pod's environment"
        );
        assert!(
            expand_env("${open", lookup)
                .unwrap_err()
                .contains("unclosed")
        );
    }
}
