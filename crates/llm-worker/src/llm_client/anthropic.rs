//! anthropic: being written (issue 3).
