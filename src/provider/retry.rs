//! Retry policy for model calls: jittered exponential backoff honouring Retry-After.
