//! `pod approvals`, `pod approve`, `pod deny`, and the `/approve` and `/deny`
//! lines of `pod attach`: a person answering the tool calls an `ask` rule
//! paused, anywhere in the tree.

use std::collections::BTreeMap;
use std::io::Write;

use anyhow::{Context, bail};
use protocol::{ApprovalRequest, Event, Method};

use crate::cli::{current_thread, places};
use crate::client::{PodClient, PodLocation};
use crate::pods::list_pods;
use crate::transcript::{approval_request_line, approval_resolved_line};

/// The pod a request id belongs to (`main.worker/3` → `main.worker`).
pub use protocol::approval_owner as owner_of;

/// What a line typed in `pod attach` means: `None` for a message,
/// `Some(Err)` for a malformed `/approve` or `/deny`.
pub fn typed_answer(line: &str) -> Option<Result<Method, String>> {
    let line = line.trim();
    let (word, rest) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
    let mut words = rest.split_whitespace();
    match word {
        "/approve" => Some(match (words.next(), words.next(), words.next()) {
            (Some(id), None, None) => Ok(Method::Approve {
                id: id.into(),
                remember: false,
            }),
            (Some(id), Some("--remember"), None) => Ok(Method::Approve {
                id: id.into(),
                remember: true,
            }),
            _ => Err("usage: /approve ID [--remember]".into()),
        }),
        "/deny" => Some(match words.next() {
            Some(id) => {
                let reason = rest.trim_start()[id.len()..].trim();
                Ok(Method::Deny {
                    id: id.into(),
                    reason: (!reason.is_empty()).then(|| reason.to_owned()),
                })
            }
            None => Err("usage: /deny ID [REASON]".into()),
        }),
        _ => None,
    }
}

/// The pending requests pod `client` lists.
async fn listed(client: &mut PodClient) -> anyhow::Result<Vec<ApprovalRequest>> {
    client.send(&Method::Approvals).await?;
    loop {
        match client.next_timed().await? {
            Event::Approvals { requests } => return Ok(requests),
            Event::Error { message, .. } => bail!("{message}"),
            _ => {}
        }
    }
}

/// `pod approvals [NAME]`: the pending requests of NAME's subtree, or of
/// every running pod; `wait` keeps watching NAME and prints them as they come.
pub fn approvals(name: Option<&str>, wait: bool, json: bool) -> anyhow::Result<u8> {
    let places = places()?;
    let pods: Vec<String> = match name {
        Some(name) => vec![name.to_owned()],
        None => list_pods(&places)
            .into_iter()
            .filter(|p| p.alive)
            .map(|p| p.name)
            .collect(),
    };
    let runtime = current_thread()?;
    runtime.block_on(async {
        if wait {
            let [name] = pods.as_slice() else {
                bail!("`pod approvals --wait` watches one pod: name it (the root of the tree you want to answer for)");
            };
            return watch(&PodLocation::of(&places, name), json).await;
        }
        let mut all = BTreeMap::new();
        for pod in &pods {
            let loc = PodLocation::of(&places, pod);
            let mut client = PodClient::connect_to(&loc).await?;
            for request in listed(&mut client).await? {
                all.insert(request.id.clone(), request);
            }
        }
        let mut out = std::io::stdout();
        for request in all.values() {
            if json {
                writeln!(out, "{}", serde_json::to_string(request)?)?;
            } else {
                writeln!(out, "{}", approval_request_line(request))?;
            }
        }
        if all.is_empty() && !json {
            eprintln!("no pending approval requests");
        }
        Ok(0)
    })
}

/// Prints the requests of `loc`'s subtree as they come, until Ctrl-C or the
/// pod exits.
async fn watch(loc: &PodLocation, json: bool) -> anyhow::Result<u8> {
    let mut ctrl_c = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())?;
    let mut client = PodClient::connect_to(loc).await?;
    client.request(&Method::WatchApprovals).await?;
    eprintln!(
        "watching approvals of `{}` and the pods below it; answer with `pod approve ID` or `pod deny ID REASON`; Ctrl-C stops",
        loc.name
    );
    let mut out = std::io::stdout();
    loop {
        let event = tokio::select! {
            _ = ctrl_c.recv() => return Ok(0),
            event = client.next_event() => event?,
        };
        match event {
            Some(e @ (Event::ApprovalRequest(_) | Event::ApprovalResolved(_))) if json => {
                writeln!(out, "{}", serde_json::to_string(&e)?)?;
            }
            Some(Event::ApprovalRequest(r)) => writeln!(out, "{}", approval_request_line(&r))?,
            Some(Event::ApprovalResolved(r)) => writeln!(out, "{}", approval_resolved_line(&r))?,
            Some(Event::Shutdown) | None => bail!("`{}` shut down", loc.name),
            Some(_) => continue,
        }
        out.flush()?;
    }
}

/// `pod approve ID` / `pod deny ID [REASON]`: sent to the pod that asked.
pub fn answer(method: &Method, json: bool) -> anyhow::Result<u8> {
    let (Method::Approve { id, .. } | Method::Deny { id, .. }) = method else {
        bail!("not an answer: {method:?}");
    };
    let pod = owner_of(id);
    let loc = PodLocation::of(&places()?, pod);
    let runtime = current_thread()?;
    runtime.block_on(async {
        let mut client = PodClient::connect_to(&loc)
            .await
            .with_context(|| format!("request `{id}` is of pod `{pod}`"))?;
        let (seq, _) = client.request(method).await?;
        let verb = if matches!(method, Method::Approve { .. }) {
            "approved"
        } else {
            "denied"
        };
        if json {
            println!(
                "{}",
                serde_json::json!({"id": id, "answer": verb, "seq": seq})
            );
        } else {
            println!("{verb} {id}");
        }
        Ok(0)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typed_answers_parse_and_bad_ones_say_how() {
        assert_eq!(typed_answer("fix the tests"), None);
        assert_eq!(
            typed_answer("/approve main.c/2"),
            Some(Ok(Method::Approve {
                id: "main.c/2".into(),
                remember: false
            }))
        );
        assert_eq!(
            typed_answer(" /approve main.c/2 --remember "),
            Some(Ok(Method::Approve {
                id: "main.c/2".into(),
                remember: true
            }))
        );
        assert_eq!(
            typed_answer("/deny main/1 not on  a Friday"),
            Some(Ok(Method::Deny {
                id: "main/1".into(),
                reason: Some("not on  a Friday".into())
            }))
        );
        assert_eq!(
            typed_answer("/deny main/1"),
            Some(Ok(Method::Deny {
                id: "main/1".into(),
                reason: None
            }))
        );
        assert!(matches!(typed_answer("/approve"), Some(Err(_))));
        assert!(matches!(typed_answer("/approve a b"), Some(Err(_))));
        assert!(matches!(typed_answer("/deny"), Some(Err(_))));
        assert_eq!(owner_of("main.c.g/12"), "main.c.g");
    }
}
