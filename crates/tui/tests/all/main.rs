//! The UI's integration tests: the real `pod-ui` binary in a real terminal
//! (tmux), against real pods on the scripted fake provider.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod terminal;
