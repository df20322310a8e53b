//! `agentd-bench crash-campaign`: chat turns that each make the model ask for one send_email
//! through a real SMTP relay (aiosmtpd, holding each message's answer back to widen the send),
//! the real `agentd` SIGKILLed at a seeded random moment of every turn and restarted on the
//! same data directory. After each kill it checks what `crash_phases` lists (at most one email
//! per turn, history well-formed, an acknowledged turn kept, a cut-off call answered
//! `outcome_unknown`, the next chat on the session answered) and prints a table per phase.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::crash_phases::{self, KilledTurn, RelayCounts, Tally, TurnInHistory, history_problems};
use crate::procs::{self, Running};
use crate::smtp_relay::SmtpRelay;

/// Settings of one campaign.
pub(crate) struct Settings {
    pub turns: u32,
    pub seed: Option<u64>,
    pub model_latency_ms: u64,
    pub data_delay_ms: u64,
    pub turns_per_session: u32,
    pub smtp_server: Option<PathBuf>,
}

/// What the daemon runs against; `agentd` is replaced at every restart.
struct Rig {
    relay: SmtpRelay,
    mock: Running,
    agentd: Option<Running>,
    data_dir: PathBuf,
    tools: PathBuf,
    api_key: String,
    http: reqwest::Client,
}

impl Rig {
    fn api(&self) -> Result<String, String> {
        let agentd = self.agentd.as_ref().ok_or("agentd is not running")?;
        Ok(format!("{}/api", agentd.origin))
    }

    fn restart(&mut self) -> Result<(), String> {
        if let Some(agentd) = self.agentd.take() {
            agentd.stop();
        }
        self.agentd = Some(procs::start_agentd_on(
            &self.data_dir,
            &self.tools,
            &self.mock.origin,
            &self.api_key,
        )?);
        Ok(())
    }

    async fn post(&self, path: &str, body: &Value) -> Result<(u16, Value), String> {
        let url = format!("{}{path}", self.api()?);
        post(&self.http, url, &self.api_key, body).await
    }

    async fn history(&self, session: &str) -> Result<Vec<Value>, String> {
        let url = format!("{}/sessions/{session}/history?limit=1000", self.api()?);
        let response = self
            .http
            .get(url)
            .bearer_auth(&self.api_key)
            .send()
            .await
            .map_err(|e| format!("history: {e}"))?;
        let body: Value = response.json().await.map_err(|e| format!("history: {e}"))?;
        Ok(body["entries"].as_array().cloned().unwrap_or_default())
    }

    async fn new_session(&self, agent: &str) -> Result<String, String> {
        let (status, session) = self.post("/sessions", &json!({"agent_id": agent})).await?;
        match session["id"].as_str() {
            Some(id) if status == 201 => Ok(id.to_owned()),
            _ => Err(format!("creating a session: {status} {session}")),
        }
    }
}

async fn post(
    http: &reqwest::Client,
    url: String,
    key: &str,
    body: &Value,
) -> Result<(u16, Value), String> {
    let response = http
        .post(url)
        .bearer_auth(key)
        .json(body)
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let status = response.status().as_u16();
    let body = response.json().await.map_err(|e| e.to_string())?;
    Ok((status, body))
}

/// The chat body of one turn: the mock's `!call` line makes it ask for exactly this email.
fn turn_body(marker: &str, recipient: &str) -> Value {
    let email = json!({
        "to": recipient,
        "subject": format!("campaign {marker}"),
        "body": format!("The report for {marker}."),
    });
    json!({
        "messages": [{"role": "user", "content": format!("Send the report for {marker}.\n!call send_email {email}")}],
        "tools": [{"type": "function", "function": {"name": "send_email"}}],
    })
}

/// splitmix64: a small seeded generator, so a seed replays the same kill delays.
pub(crate) struct Rng(pub u64);

impl Rng {
    pub(crate) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, bound: u64) -> u64 {
        if bound == 0 { 0 } else { self.next() % bound }
    }
}

fn catalog(relay_port: u16) -> String {
    format!(
        "[[tool]]\nname = \"send_email\"\ndescription = \"Send an email\"\nhandler = \"smtp\"\n\
         offer = false\ntimeout = \"30s\"\n\
         parameters = {{ type = \"object\", required = [\"to\", \"subject\", \"body\"], properties = {{ to = {{ type = \"string\" }}, subject = {{ type = \"string\" }}, body = {{ type = \"string\" }} }} }}\n\
         [tool.options]\nhost = \"127.0.0.1\"\nport = {relay_port}\nsecurity = \"none\"\n\
         from = \"agentd@campaign.example\"\nsend_timeout = \"20s\"\n"
    )
}

pub(crate) fn run(scratch: &Path, settings: &Settings) -> Result<(), String> {
    let script = crate::smtp_relay::locate(settings.smtp_server.as_deref())?;
    let seed = settings.seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64)
    });
    crate::install_crypto_provider();
    let relay = SmtpRelay::start(
        &script,
        &scratch.join("relay-spool.jsonl"),
        Duration::from_millis(settings.data_delay_ms),
    )?;
    let mock = procs::start_recording_mock(settings.model_latency_ms)?;
    let tools = scratch.join("tools.toml");
    std::fs::write(&tools, catalog(relay.port)).map_err(|e| format!("{}: {e}", tools.display()))?;
    let data_dir = scratch.join("data");
    std::fs::create_dir_all(&data_dir).map_err(|e| format!("{}: {e}", data_dir.display()))?;
    let mut rig = Rig {
        relay,
        mock,
        agentd: None,
        data_dir,
        tools,
        api_key: format!("campaign-{:016x}", seed),
        http: reqwest::Client::builder()
            .no_proxy()
            .pool_max_idle_per_host(0)
            .build()
            .map_err(|e| e.to_string())?,
    };
    rig.restart()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    runtime.block_on(campaign(&mut rig, settings, seed))
}

async fn campaign(rig: &mut Rig, settings: &Settings, seed: u64) -> Result<(), String> {
    let (status, agent) = rig.post("/agents", &json!({"name": "Mailer"})).await?;
    let agent = match agent["id"].as_str() {
        Some(id) if status == 201 => id.to_owned(),
        _ => return Err(format!("creating an agent: {status} {agent}")),
    };
    // Two turns without a kill measure how long a turn takes; kills land in 1.3 times that.
    let warm_session = rig.new_session(&agent).await?;
    let mut longest = Duration::ZERO;
    for n in 0..2 {
        let marker = format!("warmup{n}x{seed:016x}");
        let began = Instant::now();
        let body = turn_body(&marker, &format!("{marker}@campaign.example"));
        let (status, answer) = rig
            .post(&format!("/sessions/{warm_session}/chat"), &body)
            .await?;
        if status != 201 || answer["tool_runs"][0]["status"] != "ok" {
            return Err(format!("a turn without a kill failed: {status} {answer}"));
        }
        longest = longest.max(began.elapsed());
    }
    let window = longest.mul_f64(1.3).max(Duration::from_millis(20));
    println!(
        "crash-campaign: seed {seed} (replay with --seed {seed}), {} turns, model latency {} ms, \
         relay answers DATA after {} ms, kills uniform in 0..{} ms after the chat is sent \
         (1.3 x the slowest of 2 turns without a kill, {} ms)",
        settings.turns,
        settings.model_latency_ms,
        settings.data_delay_ms,
        window.as_millis(),
        longest.as_millis()
    );
    let mut rng = Rng(seed);
    let mut tally = Tally::default();
    let mut violations: Vec<String> = Vec::new();
    let mut markers = Vec::new();
    let mut session = String::new();
    for turn in 0..settings.turns {
        if turn % settings.turns_per_session.max(1) == 0 {
            session = rig.new_session(&agent).await?;
        }
        let marker = format!("t{turn:04}x{seed:016x}");
        let recipient = format!("{marker}@campaign.example");
        markers.push(recipient.clone());
        let delay = Duration::from_micros(rng.below(window.as_micros() as u64));
        let found = kill_one_turn(rig, &session, &marker, &recipient, delay, &mut tally).await?;
        for problem in found {
            let line = format!("turn {turn} (kill at {} ms): {problem}", delay.as_millis());
            println!("VIOLATION {line}");
            violations.push(line);
        }
        if (turn + 1) % 50 == 0 {
            println!("  {} turns done, {} violations", turn + 1, violations.len());
        }
    }
    // A later turn must not have sent an earlier turn's email again.
    let events = rig.relay.events()?;
    for recipient in &markers {
        let counts = RelayCounts::of(&events, recipient);
        if counts.data_starts > 1 || counts.accepted > 1 {
            let line = format!(
                "{recipient}: the email went to the relay {} times by the end",
                counts.data_starts
            );
            println!("VIOLATION {line}");
            violations.push(line);
        }
    }
    tally.print();
    if violations.is_empty() {
        println!("\nno violations in {} turns (seed {seed})", settings.turns);
        Ok(())
    } else {
        println!("\n{} violations (seed {seed}):", violations.len());
        for line in &violations {
            println!("- {line}");
        }
        Err(format!("{} violations", violations.len()))
    }
}

/// One turn: the chat sent, agentd SIGKILLed `delay` later and restarted, the phase derived
/// and the invariants checked; the next chat on the session must succeed. Returns the
/// violations found.
async fn kill_one_turn(
    rig: &mut Rig,
    session: &str,
    marker: &str,
    recipient: &str,
    delay: Duration,
    tally: &mut Tally,
) -> Result<Vec<String>, String> {
    let chat_url = format!("{}/sessions/{session}/chat", rig.api()?);
    let chat = {
        let (http, key, body) = (
            rig.http.clone(),
            rig.api_key.clone(),
            turn_body(marker, recipient),
        );
        tokio::spawn(async move { post(&http, chat_url, &key, &body).await })
    };
    tokio::time::sleep(delay).await;
    if let Some(agentd) = rig.agentd.take() {
        agentd.stop();
    }
    let answered = chat.await.map_err(|e| e.to_string())?;
    let acknowledged = match answered {
        Ok((201, body)) => Some(body),
        _ => None,
    };
    rig.restart()?;

    let entries = rig.history(session).await?;
    let mut violations: Vec<String> = history_problems(&entries, true)
        .into_iter()
        .map(|p| format!("history after the restart: {p}"))
        .collect();
    let found = TurnInHistory::find(&entries, marker, recipient);
    let relay = RelayCounts::of(&rig.relay.events()?, recipient);
    let phase = crash_phases::classify(&found, relay);
    violations.extend(crash_phases::check_after_restart(&KilledTurn {
        relay,
        found: &found,
        acknowledged: acknowledged.as_ref(),
    }));

    let next = json!({"messages": [{"role": "user", "content": format!("Did the report for {marker} go out?")}]});
    match rig.post(&format!("/sessions/{session}/chat"), &next).await {
        Ok((201, answer)) if answer["choices"][0]["finish_reason"] == "stop" => {}
        Ok((status, answer)) => {
            violations.push(format!("the next chat failed: {status} {answer}"));
        }
        Err(e) => violations.push(format!("the next chat failed: {e}")),
    }
    let entries = rig.history(session).await?;
    violations.extend(
        history_problems(&entries, false)
            .into_iter()
            .map(|p| format!("history after the next chat: {p}")),
    );
    let settled = TurnInHistory::find(&entries, marker, recipient);
    violations.extend(crash_phases::check_after_next_chat(
        phase,
        settled.result.as_ref(),
    ));
    let relay_now = RelayCounts::of(&rig.relay.events()?, recipient);
    if relay_now.data_starts > 1 || relay_now.accepted > 1 {
        violations.push(format!(
            "after the next chat the email had gone to the relay {} times",
            relay_now.data_starts
        ));
    }
    let outcome_unknown = settled
        .result
        .as_ref()
        .is_some_and(|r| r["error"]["kind"] == "outcome_unknown");
    tally.add(
        phase,
        acknowledged.is_some(),
        relay_now,
        outcome_unknown,
        violations.len(),
    );
    Ok(violations)
}

#[cfg(test)]
mod tests {
    use super::Rng;

    #[test]
    fn a_seed_replays_the_same_delays() {
        let draw = |seed| {
            let mut rng = Rng(seed);
            (0..5).map(|_| rng.below(1000)).collect::<Vec<_>>()
        };
        assert_eq!(draw(7), draw(7));
        assert_ne!(draw(7), draw(8));
        assert!(draw(9).iter().all(|&d| d < 1000));
    }
}
