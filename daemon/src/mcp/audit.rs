//! The tool-call audit log (`tool_calls` in the history database) and the redaction that
//! keeps secrets out of it and out of events.

use std::sync::Arc;

use rusqlite::params;
use serde_json::Value;
use vtuber_shared::{AuditEntry, ErrorBody, ToolOutcome};

use super::secrets::is_secret_key;
use crate::store::{Store, StoreError};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS tool_calls (
    id          INTEGER PRIMARY KEY,
    time_ms     INTEGER NOT NULL,
    character   TEXT NOT NULL,
    server      TEXT NOT NULL,
    tool        TEXT NOT NULL,
    arguments   TEXT NOT NULL,
    decision    TEXT NOT NULL,
    duration_ms INTEGER NOT NULL,
    outcome     TEXT NOT NULL,
    detail      TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS tool_calls_by_time ON tool_calls(time_ms);
";

const REDACTED: &str = "[redacted]";

/// Replaces secrets in tool arguments: values under secret-looking keys, and any
/// occurrence of a configured secret value inside a string.
#[derive(Debug, Clone, Default)]
pub struct Redactor {
    /// Longest first, so a secret containing another is replaced whole.
    secrets: Arc<Vec<String>>,
}

impl Redactor {
    /// Values shorter than 4 characters are ignored: redacting "1" or "on" everywhere
    /// would garble arguments without protecting anything.
    pub fn new(values: impl IntoIterator<Item = String>) -> Self {
        let mut secrets: Vec<String> = values.into_iter().filter(|v| v.len() >= 4).collect();
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        secrets.dedup();
        Self {
            secrets: Arc::new(secrets),
        }
    }

    pub fn redact(&self, value: &Value) -> Value {
        match value {
            Value::Object(map) => Value::Object(
                map.iter()
                    .map(|(k, v)| {
                        let v = if is_secret_key(k) {
                            Value::String(REDACTED.into())
                        } else {
                            self.redact(v)
                        };
                        (k.clone(), v)
                    })
                    .collect(),
            ),
            Value::Array(items) => Value::Array(items.iter().map(|v| self.redact(v)).collect()),
            Value::String(s) => Value::String(self.redact_text(s)),
            other => other.clone(),
        }
    }

    /// `text` with every configured secret value replaced.
    pub fn redact_text(&self, text: &str) -> String {
        let mut out = text.to_owned();
        for s in self.secrets.iter() {
            if out.contains(s.as_str()) {
                out = out.replace(s.as_str(), REDACTED);
            }
        }
        out
    }
}

/// One row to write.
#[derive(Debug, Clone)]
pub struct AuditRecord {
    pub time_ms: i64,
    pub character: String,
    pub server: String,
    pub tool: String,
    /// Redacted JSON text.
    pub arguments: String,
    pub decision: &'static str,
    pub duration_ms: u64,
    pub outcome: ToolOutcome,
    pub detail: String,
}

fn outcome_str(o: ToolOutcome) -> &'static str {
    match o {
        ToolOutcome::Ok => "ok",
        ToolOutcome::Error => "error",
        ToolOutcome::Denied => "denied",
        ToolOutcome::TimedOut => "timed_out",
        ToolOutcome::Cancelled => "cancelled",
    }
}

fn parse_outcome(s: &str) -> ToolOutcome {
    match s {
        "ok" => ToolOutcome::Ok,
        "denied" => ToolOutcome::Denied,
        "timed_out" => ToolOutcome::TimedOut,
        "cancelled" => ToolOutcome::Cancelled,
        _ => ToolOutcome::Error,
    }
}

/// Creates the table if needed (idempotent).
pub async fn ensure_table(store: &Store) -> Result<(), StoreError> {
    store
        .with(|c| c.execute_batch(SCHEMA).map_err(StoreError::from))
        .await
}

pub async fn insert(store: &Store, r: AuditRecord) -> Result<i64, StoreError> {
    store
        .with(move |c| {
            c.execute_batch(SCHEMA)?;
            c.execute(
                "INSERT INTO tool_calls (time_ms, character, server, tool, arguments, decision, duration_ms, outcome, detail)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                params![
                    r.time_ms,
                    r.character,
                    r.server,
                    r.tool,
                    r.arguments,
                    r.decision,
                    r.duration_ms as i64,
                    outcome_str(r.outcome),
                    r.detail
                ],
            )?;
            Ok(c.last_insert_rowid())
        })
        .await
}

/// Newest first; `since_ms` keeps rows at or after that time.
pub async fn query(
    store: &Store,
    since_ms: Option<i64>,
    limit: u32,
) -> Result<Vec<AuditEntry>, ErrorBody> {
    let limit = limit.clamp(1, 10_000);
    store
        .with(move |c| {
            c.execute_batch(SCHEMA)?;
            let mut stmt = c.prepare(
                "SELECT id, time_ms, character, server, tool, arguments, decision, duration_ms, outcome, detail
                 FROM tool_calls WHERE time_ms >= ?1 ORDER BY time_ms DESC, id DESC LIMIT ?2",
            )?;
            let rows = stmt
                .query_map(params![since_ms.unwrap_or(i64::MIN), limit], |r| {
                    Ok(AuditEntry {
                        id: r.get(0)?,
                        time_ms: r.get(1)?,
                        character: r.get(2)?,
                        server: r.get(3)?,
                        tool: r.get(4)?,
                        arguments: r.get(5)?,
                        decision: r.get(6)?,
                        duration_ms: r.get::<_, i64>(7)?.max(0) as u64,
                        outcome: parse_outcome(&r.get::<_, String>(8)?),
                        detail: r.get(9)?,
                    })
                })?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })
        .await
        .map_err(|e| e.to_body())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn redaction_by_key_and_value() {
        let r = Redactor::new(["sk-live-abcdef".to_owned(), "1".to_owned()]);
        let args = json!({
            "path": "/tmp/x",
            "api_key": "anything",
            "nested": {"Authorization": "Bearer zzz", "list": ["use sk-live-abcdef now", 1]},
            "count": 1,
            "note": "1 apple"
        });
        let out = r.redact(&args);
        assert_eq!(
            out,
            json!({
                "path": "/tmp/x",
                "api_key": "[redacted]",
                "nested": {"Authorization": "[redacted]", "list": ["use [redacted] now", 1]},
                "count": 1,
                "note": "1 apple"
            })
        );
    }

    #[tokio::test]
    async fn rows_round_trip_newest_first() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("h.sqlite3")).unwrap();
        ensure_table(&store).await.unwrap();
        for (i, outcome) in [ToolOutcome::Ok, ToolOutcome::Denied, ToolOutcome::TimedOut]
            .into_iter()
            .enumerate()
        {
            insert(
                &store,
                AuditRecord {
                    time_ms: 1000 + i as i64,
                    character: "mao".into(),
                    server: "s".into(),
                    tool: format!("t{i}"),
                    arguments: "{}".into(),
                    decision: "auto",
                    duration_ms: 5,
                    outcome,
                    detail: String::new(),
                },
            )
            .await
            .unwrap();
        }
        let all = query(&store, None, 10).await.unwrap();
        assert_eq!(all.len(), 3);
        assert_eq!(all[0].tool, "t2");
        assert_eq!(all[0].outcome, ToolOutcome::TimedOut);
        assert_eq!(all[1].outcome, ToolOutcome::Denied);
        let recent = query(&store, Some(1001), 1).await.unwrap();
        assert_eq!(recent.len(), 1);
        assert_eq!(recent[0].tool, "t2");
    }
}
