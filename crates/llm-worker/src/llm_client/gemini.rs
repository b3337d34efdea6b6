//! gemini: being written (issue 3).
