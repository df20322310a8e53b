//! An OpenAI-compatible mock model server for tests, the offline demo and benchmarks.
