//! openai_responses: being written (issue 3).
