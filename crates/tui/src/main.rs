//! `pod-ui [NAME]`: the interactive UI (what `pod` with no arguments and
//! `pod ui` open).

#![forbid(unsafe_code)]

use std::io::IsTerminal;
use std::process::ExitCode;

const USAGE: &str = "Usage: pod-ui [NAME]\n\n\
The interactive UI over your pods: the tree of every pod on the left, the selected\n\
pod's conversation on the right, a composer below. NAME selects that pod first.\n\
Press F1 in the UI for every key. `pod ui` and `pod` with no arguments open it.";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "-h" || a == "--help") {
        println!("{USAGE}");
        return ExitCode::SUCCESS;
    }
    if args.len() > 1 || args.first().is_some_and(|a| a.starts_with('-')) {
        eprintln!(
            "pod-ui: unexpected arguments: {}\n\n{USAGE}",
            args.join(" ")
        );
        return ExitCode::from(2);
    }
    if !std::io::stdin().is_terminal() || !std::io::stdout().is_terminal() {
        eprintln!(
            "pod-ui: the UI needs a terminal (standard input and output); use `pod send`, `pod attach` or `pod logs` from scripts"
        );
        return ExitCode::from(2);
    }
    let pod = match args.first() {
        Some(asked) => match pod_client::names::resolve_cli(asked, pod_client::names::Want::Any) {
            Ok(name) => Some(name),
            Err(e) => {
                eprintln!("pod-ui: {e:#}");
                return ExitCode::from(1);
            }
        },
        None => None,
    };
    match pod_tui::run(pod_tui::Options { pod }) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("pod-ui: {e:#}");
            ExitCode::from(1)
        }
    }
}
