//! http: being written (issue 3).
