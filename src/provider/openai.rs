//! The OpenAI-compatible chat-completions provider.
