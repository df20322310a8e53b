//! The client side of the held-streams scenario: opening streams in paced batches and holding
//! them, one full streamed turn, the mock's latency setting and agentd's stream gauges.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::task::JoinHandle;

use crate::limits;
use crate::load::{self, Target};

/// Streams opened together; the next batch waits until the mock has received this one, so
/// connects never pile up beyond the listen backlogs (1024).
const BATCH: usize = 500;
const BATCH_WAIT: Duration = Duration::from_secs(15);
/// The body the `stream` scenario sends.
const CHAT_BODY: &str = r#"{"messages":[{"role":"user","content":"hi"}],"stream":true}"#;

/// Client-side counts shared by the stream tasks.
#[derive(Default)]
pub(crate) struct Tally {
    pub heads: AtomicUsize,
    pub failed: AtomicUsize,
    pub first_error: Mutex<Option<String>>,
}

impl Tally {
    fn fail(&self, error: String) {
        self.failed.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut first) = self.first_error.lock() {
            first.get_or_insert(error);
        }
    }

    pub(crate) fn failed(&self) -> usize {
        self.failed.load(Ordering::Relaxed)
    }
}

/// Opens and holds streams; every task is aborted (its connection closed) by [`hang_up`].
///
/// [`hang_up`]: Opener::hang_up
pub(crate) struct Opener {
    pub target: Arc<Target>,
    pub tally: Arc<Tally>,
    /// Most descriptors agentd was seen holding while streams opened.
    pub fds_peak: AtomicU64,
    client: reqwest::Client,
    agentd_pid: u32,
    base_requests: u64,
    tasks: Vec<JoinHandle<()>>,
}

impl Opener {
    pub(crate) async fn new(target: Arc<Target>, agentd_pid: u32) -> Result<Self, String> {
        let (_, base_requests) = target.mock_stats().await?;
        Ok(Self {
            target,
            tally: Arc::new(Tally::default()),
            fds_peak: AtomicU64::new(0),
            client: load::http_client(0)?,
            agentd_pid,
            base_requests,
            tasks: Vec::new(),
        })
    }

    /// Model calls the mock received since this opener was made.
    pub(crate) async fn mock_arrivals(&self) -> u64 {
        self.target
            .mock_stats()
            .await
            .map_or(0, |(_, r)| r)
            .saturating_sub(self.base_requests)
    }

    fn note_fds(&self) {
        if let Some(fds) = limits::open_fds(self.agentd_pid) {
            self.fds_peak.fetch_max(fds, Ordering::Relaxed);
        }
    }

    /// Opens one stream per session in batches of [`BATCH`], each batch once the mock has
    /// received the previous one (or [`BATCH_WAIT`] passed).
    pub(crate) async fn open(&mut self, sessions: &[String]) {
        let key: Arc<str> = Arc::from(self.target.api_key.as_str());
        for batch in sessions.chunks(BATCH) {
            for session in batch {
                let url = format!("{}/api/sessions/{session}/chat", self.target.agentd);
                self.tasks.push(tokio::spawn(hold_one(
                    self.client.clone(),
                    url,
                    Arc::clone(&key),
                    Arc::clone(&self.tally),
                )));
            }
            let deadline = Instant::now() + BATCH_WAIT;
            loop {
                self.note_fds();
                let failed = self.tally.failed() as u64;
                if self.mock_arrivals().await + failed >= self.tasks.len() as u64
                    || Instant::now() >= deadline
                {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }

    /// Waits until agentd counts every opened stream that has not failed as open (it sends
    /// the SSE head on the turn's first event or after 10 s), or until `deadline`. Answers the
    /// streams open.
    pub(crate) async fn wait_open(&self, deadline: Instant) -> i64 {
        loop {
            self.note_fds();
            let expected = self.tasks.len().saturating_sub(self.tally.failed());
            let open = gauges(&self.target).await.map_or(0, |(s, _)| s);
            if open >= i64::try_from(expected).unwrap_or(i64::MAX) || Instant::now() >= deadline {
                return open;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Closes every stream's connection at once.
    pub(crate) fn hang_up(&mut self) {
        for task in self.tasks.drain(..) {
            task.abort();
        }
    }
}

/// One held stream: opens it, then reads (keep-alive comments) until aborted.
async fn hold_one(client: reqwest::Client, url: String, key: Arc<str>, tally: Arc<Tally>) {
    let response = client
        .post(url)
        .bearer_auth(&*key)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(CHAT_BODY)
        .send()
        .await;
    let mut response = match response {
        Ok(r) if r.status().is_success() => r,
        Ok(r) => {
            let status = r.status();
            let text = r.text().await.unwrap_or_default();
            return tally.fail(format!("chat: {status}: {text}"));
        }
        Err(e) => return tally.fail(format!("chat: {e:?}")),
    };
    tally.heads.fetch_add(1, Ordering::Relaxed);
    loop {
        match response.chunk().await {
            Ok(Some(_)) => {}
            Ok(None) => return tally.fail("stream ended while held".into()),
            Err(e) => return tally.fail(format!("stream: {e}")),
        }
    }
}

/// A streamed turn on `session`, read to its end; fails unless it finished with `stop`.
pub(crate) async fn one_stream(target: &Target, session: &str) -> Result<(), String> {
    let text = target
        .http
        .post(format!("{}/api/sessions/{session}/chat", target.agentd))
        .bearer_auth(&target.api_key)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(CHAT_BODY)
        .send()
        .await
        .map_err(|e| format!("chat: {e}"))?
        .error_for_status()
        .map_err(|e| format!("chat: {e}"))?
        .text()
        .await
        .map_err(|e| format!("chat: {e}"))?;
    if text.contains(r#""finish_reason":"stop""#) {
        Ok(())
    } else {
        Err(format!("chat: stream did not finish with stop: {text}"))
    }
}

/// `POST /_mock/config`; answers the latency in force afterwards, in ms.
pub(crate) async fn mock_config(target: &Target, change: Value) -> Result<u64, String> {
    let value: Value = target
        .http
        .post(format!("{}/_mock/config", target.mock))
        .json(&change)
        .send()
        .await
        .map_err(|e| format!("mock config: {e}"))?
        .json()
        .await
        .map_err(|e| format!("mock config: {e}"))?;
    value["latency_ms"]
        .as_u64()
        .ok_or_else(|| format!("mock config: no latency_ms in {value}"))
}

/// agentd's `agentd_active_streams` and `agentd_active_turns` gauges.
pub(crate) async fn gauges(target: &Target) -> Result<(i64, i64), String> {
    let text = target
        .http
        .get(format!("{}/metrics", target.agentd))
        .bearer_auth(&target.api_key)
        .send()
        .await
        .map_err(|e| format!("metrics: {e}"))?
        .text()
        .await
        .map_err(|e| format!("metrics: {e}"))?;
    let gauge = |name: &str| {
        text.lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
            .ok_or_else(|| format!("metrics: no {name}"))
    };
    Ok((
        gauge("agentd_active_streams")?,
        gauge("agentd_active_turns")?,
    ))
}
