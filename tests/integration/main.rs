//! agentd's integration tests, as one test binary: the daemon in-process against the mock
//! model (`common`), or the real `agentd` binary (`common::binary`, `systemd_support`), with
//! real SQLite files, a real SMTP server process and real sockets. One module per area; the
//! shared harness is compiled once.

mod common;
/// The aiosmtpd server and TLS material the smtp plugin's own tests use.
#[allow(dead_code, unreachable_pub)]
#[path = "../../plugins/smtp/tests/support/mod.rs"]
mod smtp_support;
mod systemd_support;

mod api;
mod approvals;
mod chat;
mod cli;
mod crash;
mod example_plugin;
mod input_limits;
mod julep_sdk;
mod limits;
mod limits_model;
mod mcp;
mod metrics_bounds;
mod migrate_cli;
mod multi_instance;
mod openapi;
mod outbox;
mod persistence;
mod provider_tls;
mod provider_transport;
mod request_checks;
mod secrets;
mod send_email;
mod smtp_faults;
mod streaming;
mod streaming_failures;
mod systemd;
