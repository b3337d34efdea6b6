//! openai_chat: being written (issue 3).
