//! The in-process side of `agentd-bench` (built only with the `bench` feature): hand-rolled
//! timing loops over the daemon's hot pieces (argument validation, catalog compilation,
//! stream chunk assembly and one history write) for `agentd-bench micro`, and the open-file
//! limit raise the benchmark's processes inherit.

use std::hint::black_box;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::provider::openai::stream::{Assembler, StreamChunk};
use crate::session::{ChatMessage, Entry, EntrySource, MessageJson, Role};
use crate::store::Store;
use crate::store::sqlite::SqliteStore;
use crate::tool::{Catalog, Registry, validate};

/// Raises the soft `RLIMIT_NOFILE` to the hard limit, as the daemon does at start; returns the
/// limit now in force.
pub fn raise_open_files() -> Option<u64> {
    crate::daemon::rlimit::raise_open_files()
}

/// Raises the hard `RLIMIT_NOFILE` to `wanted` when it is lower (only a process with
/// CAP_SYS_RESOURCE may); the error says why it stayed. The soft limit is left as it is.
pub fn raise_hard_open_files(wanted: u64) -> rustix::io::Result<()> {
    let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile);
    if limit.maximum.is_none_or(|hard| hard >= wanted) {
        return Ok(());
    }
    rustix::process::setrlimit(
        rustix::process::Resource::Nofile,
        rustix::process::Rlimit {
            current: limit.current,
            maximum: Some(wanted),
        },
    )
}

/// The catalog shipped with the daemon.
const SHIPPED_TOOLS: &str = include_str!("../tools.toml");

/// Arguments the model would send for `send_email`.
const EMAIL_ARGS: &str = r#"{"to":"john@example.com","subject":"Meeting tomorrow","body":"Hi John, see you at 10.","cc":["ann@example.com"]}"#;

/// Chunks per assembled stream.
const STREAM_CHUNKS: usize = 64;

/// One measured loop.
pub struct Measure {
    pub name: &'static str,
    pub ns_per_op: f64,
}

impl Measure {
    pub fn ops_per_sec(&self) -> f64 {
        1e9 / self.ns_per_op
    }
}

/// Runs `op` for about `budget` (after a short warm-up); returns the mean time per call.
fn time_loop(budget: Duration, mut op: impl FnMut()) -> f64 {
    let warm = Instant::now();
    while warm.elapsed() < budget / 10 {
        op();
    }
    let mut batch = 1u64;
    let mut done = 0u64;
    let start = Instant::now();
    loop {
        for _ in 0..batch {
            op();
        }
        done += batch;
        let spent = start.elapsed();
        if spent >= budget {
            return spent.as_nanos() as f64 / done as f64;
        }
        batch = (batch * 2).min(1 << 16);
    }
}

/// Runs every loop for about `budget` each, one thread; the store writes to a file in
/// `scratch`.
pub fn run(budget: Duration, scratch: &Path) -> Result<Vec<Measure>, String> {
    let registry = Registry::builtin();
    let origin = Path::new("tools.toml");
    let catalog = Catalog::parse(SHIPPED_TOOLS, origin, &registry).map_err(|e| e.to_string())?;
    let tool = catalog
        .get("send_email")
        .ok_or("the shipped tools.toml has no send_email")?
        .clone();
    validate::check(&tool, EMAIL_ARGS).map_err(|e| format!("send_email args rejected: {e:?}"))?;

    let mut results = Vec::new();
    results.push(Measure {
        name: "validate send_email args (parse + JSON Schema)",
        ns_per_op: time_loop(budget, || {
            let _ = black_box(validate::check(&tool, black_box(EMAIL_ARGS)));
        }),
    });
    let parsed: Value = serde_json::from_str(EMAIL_ARGS).map_err(|e| e.to_string())?;
    results.push(Measure {
        name: "  of which: JSON Schema check of parsed args",
        ns_per_op: time_loop(budget, || {
            black_box(tool.validator.is_valid(black_box(&parsed)));
        }),
    });
    results.push(Measure {
        name: "  of which: parse args JSON into a Value",
        ns_per_op: time_loop(budget, || {
            let _ = black_box(serde_json::from_str::<Value>(black_box(EMAIL_ARGS)));
        }),
    });
    results.push(Measure {
        name: "compile shipped tools.toml",
        ns_per_op: time_loop(budget, || {
            let _ = black_box(Catalog::parse(black_box(SHIPPED_TOOLS), origin, &registry));
        }),
    });

    let chunks: Vec<String> = (0..STREAM_CHUNKS)
        .map(|i| {
            let finish = (i + 1 == STREAM_CHUNKS).then_some("stop");
            json!({"id": "c1", "object": "chat.completion.chunk", "created": 0, "model": "m",
                   "choices": [{"index": 0, "delta": {"content": format!("word{i} ")},
                   "finish_reason": finish}]})
            .to_string()
        })
        .collect();
    for chunk in &chunks {
        StreamChunk::parse(chunk).map_err(|e| format!("bench chunk rejected: {e}"))?;
    }
    let per_stream = time_loop(budget, || {
        let mut assembler = Assembler::default();
        for chunk in &chunks {
            if let Ok(chunk) = StreamChunk::parse(black_box(chunk)) {
                let _ = black_box(assembler.push(chunk));
            }
        }
        let _ = black_box(assembler.finish(true));
    });
    results.push(Measure {
        name: "SSE chunk parse + assembly (per chunk, 64-chunk stream)",
        ns_per_op: per_stream / STREAM_CHUNKS as f64,
    });

    results.push(Measure {
        name: "store write of one turn (append_entries, 4 entries)",
        ns_per_op: store_write(budget, scratch)?,
    });
    Ok(results)
}

/// Mean time of `append_entries` with four entries (user, assistant call, tool, answer).
fn store_write(budget: Duration, scratch: &Path) -> Result<f64, String> {
    let runtime = tokio::runtime::Runtime::new().map_err(|e| e.to_string())?;
    let store = SqliteStore::open(&scratch.join("micro.sqlite")).map_err(|e| e.to_string())?;
    let session = "00000000-0000-7000-8000-000000000001";
    let entry = |role: Role, text: &str, source: EntrySource| {
        Arc::new(Entry {
            id: crate::ids::Id::new_v7(),
            session_id: session.into(),
            source,
            message: ChatMessage::text(role, text),
            created_at: time::OffsetDateTime::now_utc(),
            json: MessageJson::default(),
        })
    };
    runtime.block_on(async {
        let turn = || {
            vec![
                entry(Role::User, "hi", EntrySource::ApiRequest),
                entry(Role::Assistant, "calling echo", EntrySource::ApiResponse),
                entry(Role::Tool, "{\"text\":\"x\"}", EntrySource::ToolResponse),
                entry(Role::Assistant, "done", EntrySource::ApiResponse),
            ]
        };
        store
            .append_entries(turn())
            .await
            .map_err(|e| e.to_string())?;
        let start = Instant::now();
        let mut done = 0u64;
        let mut failed = None;
        while start.elapsed() < budget {
            if let Err(e) = store.append_entries(turn()).await {
                failed = Some(e.to_string());
                break;
            }
            done += 1;
        }
        match failed {
            Some(e) => Err(e),
            None => Ok(start.elapsed().as_nanos() as f64 / done.max(1) as f64),
        }
    })
}
