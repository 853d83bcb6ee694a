//! Conversation history in SQLite (WAL, synchronous=FULL): a reply is on disk when its
//! turn ends, so `kill -9` afterwards loses nothing.
//!
//! rusqlite is blocking, so every call runs on tokio's blocking pool, never on a worker.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use rusqlite::{Connection, OptionalExtension, params};
use vtuber_shared::{ConversationSummary, ErrorBody, ErrorCode, Role, StoredMessage};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("history database {path}: {source}")]
    Open {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error("history database: {0}")]
    Sql(#[from] rusqlite::Error),
    #[error("conversation {0} does not exist")]
    NoSuchConversation(i64),
    #[error("history database task failed: {0}")]
    Task(String),
}

impl StoreError {
    pub fn to_body(&self) -> ErrorBody {
        match self {
            Self::NoSuchConversation(_) => ErrorBody::new(ErrorCode::NotFound, self.to_string())
                .with_hint("list conversations with `vtuber history list`"),
            Self::Open { path, .. } => ErrorBody::new(ErrorCode::Storage, self.to_string())
                .with_hint(format!(
                    "check that {} is writable, or set history.database in conf.yaml",
                    path.display()
                )),
            _ => ErrorBody::new(ErrorCode::Storage, self.to_string())
                .with_hint("see the daemon log; the disk may be full or the file damaged"),
        }
    }
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS conversations (
    id          INTEGER PRIMARY KEY,
    character   TEXT NOT NULL,
    title       TEXT NOT NULL DEFAULT '',
    created_ms  INTEGER NOT NULL,
    updated_ms  INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS conversations_by_character ON conversations(character, updated_ms);
CREATE TABLE IF NOT EXISTS messages (
    id              INTEGER PRIMARY KEY,
    conversation_id INTEGER NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
    role            TEXT NOT NULL,
    text            TEXT NOT NULL,
    created_ms      INTEGER NOT NULL,
    interrupted     INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS messages_by_conversation ON messages(conversation_id, id);
PRAGMA user_version = 1;
";

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn role_str(role: Role) -> &'static str {
    match role {
        Role::System => "system",
        Role::User => "user",
        Role::Assistant => "assistant",
        Role::Tool => "tool",
    }
}

fn parse_role(s: &str) -> Role {
    match s {
        "system" => Role::System,
        "user" => Role::User,
        "tool" => Role::Tool,
        _ => Role::Assistant,
    }
}

/// Handle to the history database; cheap to clone.
#[derive(Clone)]
pub struct Store {
    conn: Arc<Mutex<Connection>>,
}

impl Store {
    /// Opens (creating if needed) the database at `path`, with its parent folder. The
    /// database and its -wal/-shm files are private (0600); a folder we create is 0700,
    /// and the daemon's own data folder is tightened to 0700 if it is wider.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let open_err = |source| StoreError::Open {
            path: path.to_path_buf(),
            source,
        };
        let io_err = |e: std::io::Error| open_err(rusqlite::Error::ToSqlConversionFailure(Box::new(e)));
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            if !dir.exists() || dir == vtuber_shared::paths::data_dir() {
                crate::private::ensure_dir(dir).map_err(io_err)?;
            }
        }
        crate::private::tighten_database(path).map_err(io_err)?;
        let conn = Connection::open(path).map_err(open_err)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(open_err)?;
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(open_err)?;
        conn.pragma_update(None, "foreign_keys", "ON")
            .map_err(open_err)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(open_err)?;
        conn.execute_batch(SCHEMA).map_err(open_err)?;
        // WAL mode has created -wal/-shm by now; SQLite gives them the database's mode,
        // but one left by an older version may be wider.
        crate::private::tighten_database(path).map_err(io_err)?;
        Ok(Self {
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    /// Runs `f` with the connection on the blocking pool.
    pub(crate) async fn with<R, F>(&self, f: F) -> Result<R, StoreError>
    where
        R: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<R, StoreError> + Send + 'static,
    {
        let conn = self.conn.clone();
        tokio::task::spawn_blocking(move || {
            let mut guard = conn
                .lock()
                .map_err(|_| StoreError::Task("connection lock poisoned".into()))?;
            f(&mut guard)
        })
        .await
        .map_err(|e| StoreError::Task(e.to_string()))?
    }

    pub async fn create_conversation(
        &self,
        character: &str,
    ) -> Result<ConversationSummary, StoreError> {
        let character = character.to_owned();
        self.with(move |c| {
            let now = now_ms();
            c.execute(
                "INSERT INTO conversations (character, title, created_ms, updated_ms) VALUES (?1, '', ?2, ?2)",
                params![character, now],
            )?;
            Ok(ConversationSummary {
                id: c.last_insert_rowid(),
                character,
                title: String::new(),
                created_ms: now,
                updated_ms: now,
                message_count: 0,
            })
        })
        .await
    }

    /// Appends a message; the first user message also titles the conversation.
    pub async fn add_message(
        &self,
        conversation: i64,
        role: Role,
        text: &str,
        interrupted: bool,
    ) -> Result<StoredMessage, StoreError> {
        let text = text.to_owned();
        self.with(move |c| {
            let tx = c.transaction()?;
            let now = now_ms();
            let updated = tx.execute(
                "UPDATE conversations SET updated_ms = ?2,
                     title = CASE WHEN title = '' AND ?3 = 'user' THEN substr(?4, 1, 80) ELSE title END
                 WHERE id = ?1",
                params![conversation, now, role_str(role), text.lines().next().unwrap_or("")],
            )?;
            if updated == 0 {
                return Err(StoreError::NoSuchConversation(conversation));
            }
            tx.execute(
                "INSERT INTO messages (conversation_id, role, text, created_ms, interrupted) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![conversation, role_str(role), text, now, interrupted],
            )?;
            let id = tx.last_insert_rowid();
            tx.commit()?;
            Ok(StoredMessage {
                id,
                role,
                text,
                created_ms: now,
                interrupted,
            })
        })
        .await
    }

    /// The newest `limit` messages of a conversation, oldest first.
    pub async fn recent_messages(
        &self,
        conversation: i64,
        limit: usize,
    ) -> Result<Vec<StoredMessage>, StoreError> {
        self.with(move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT id, role, text, created_ms, interrupted FROM messages
                 WHERE conversation_id = ?1 ORDER BY id DESC LIMIT ?2",
            )?;
            let mut rows: Vec<StoredMessage> = stmt
                .query_map(params![conversation, limit as i64], row_to_message)?
                .collect::<Result<_, _>>()?;
            rows.reverse();
            Ok(rows)
        })
        .await
    }

    pub async fn list_conversations(
        &self,
        character: Option<String>,
    ) -> Result<Vec<ConversationSummary>, StoreError> {
        self.with(move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT c.id, c.character, c.title, c.created_ms, c.updated_ms,
                        (SELECT count(*) FROM messages m WHERE m.conversation_id = c.id)
                 FROM conversations c
                 WHERE ?1 IS NULL OR c.character = ?1
                 ORDER BY c.updated_ms DESC, c.id DESC",
            )?;
            let rows = stmt
                .query_map(params![character], row_to_summary)?
                .collect::<Result<_, _>>()?;
            Ok(rows)
        })
        .await
    }

    pub async fn conversation(
        &self,
        id: i64,
    ) -> Result<(ConversationSummary, Vec<StoredMessage>), StoreError> {
        self.with(move |c| {
            let summary = c
                .query_row(
                    "SELECT c.id, c.character, c.title, c.created_ms, c.updated_ms,
                            (SELECT count(*) FROM messages m WHERE m.conversation_id = c.id)
                     FROM conversations c WHERE c.id = ?1",
                    params![id],
                    row_to_summary,
                )
                .optional()?
                .ok_or(StoreError::NoSuchConversation(id))?;
            let mut stmt = c.prepare_cached(
                "SELECT id, role, text, created_ms, interrupted FROM messages
                 WHERE conversation_id = ?1 ORDER BY id",
            )?;
            let messages = stmt
                .query_map(params![id], row_to_message)?
                .collect::<Result<_, _>>()?;
            Ok((summary, messages))
        })
        .await
    }

    /// The most recently updated conversation of `character`, to resume after a restart.
    pub async fn latest_conversation(&self, character: &str) -> Result<Option<i64>, StoreError> {
        let character = character.to_owned();
        self.with(move |c| {
            Ok(c.query_row(
                "SELECT id FROM conversations WHERE character = ?1 ORDER BY updated_ms DESC, id DESC LIMIT 1",
                params![character],
                |r| r.get(0),
            )
            .optional()?)
        })
        .await
    }

    pub async fn delete_conversation(&self, id: i64) -> Result<(), StoreError> {
        self.with(move |c| {
            let n = c.execute("DELETE FROM conversations WHERE id = ?1", params![id])?;
            if n == 0 {
                Err(StoreError::NoSuchConversation(id))
            } else {
                Ok(())
            }
        })
        .await
    }
}

fn row_to_message(r: &rusqlite::Row<'_>) -> rusqlite::Result<StoredMessage> {
    Ok(StoredMessage {
        id: r.get(0)?,
        role: parse_role(&r.get::<_, String>(1)?),
        text: r.get(2)?,
        created_ms: r.get(3)?,
        interrupted: r.get(4)?,
    })
}

fn row_to_summary(r: &rusqlite::Row<'_>) -> rusqlite::Result<ConversationSummary> {
    Ok(ConversationSummary {
        id: r.get(0)?,
        character: r.get(1)?,
        title: r.get(2)?,
        created_ms: r.get(3)?,
        updated_ms: r.get(4)?,
        message_count: r.get::<_, i64>(5)? as u64,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn conversation_lifecycle() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/history.sqlite3");
        let store = Store::open(&path).unwrap();
        let conv = store.create_conversation("mao").await.unwrap();
        store
            .add_message(conv.id, Role::User, "hello there\nsecond line", false)
            .await
            .unwrap();
        store
            .add_message(conv.id, Role::Assistant, "hi, I was cut", true)
            .await
            .unwrap();
        let other = store.create_conversation("sage").await.unwrap();

        let (summary, msgs) = store.conversation(conv.id).await.unwrap();
        assert_eq!(summary.title, "hello there");
        assert_eq!(summary.message_count, 2);
        assert_eq!(msgs.len(), 2);
        assert!(msgs[1].interrupted);
        assert_eq!(msgs[1].role, Role::Assistant);

        let recent = store.recent_messages(conv.id, 1).await.unwrap();
        assert_eq!(recent.len(), 1);
        assert_eq!(recent[0].text, "hi, I was cut");

        assert_eq!(store.list_conversations(None).await.unwrap().len(), 2);
        assert_eq!(
            store
                .list_conversations(Some("sage".into()))
                .await
                .unwrap()
                .len(),
            1
        );
        assert_eq!(
            store.latest_conversation("mao").await.unwrap(),
            Some(conv.id)
        );

        store.delete_conversation(other.id).await.unwrap();
        assert!(matches!(
            store.delete_conversation(other.id).await,
            Err(StoreError::NoSuchConversation(_))
        ));
        assert!(matches!(
            store.add_message(other.id, Role::User, "x", false).await,
            Err(StoreError::NoSuchConversation(_))
        ));
        drop(store);
        // Reopening sees the same data.
        let store = Store::open(&path).unwrap();
        assert_eq!(store.conversation(conv.id).await.unwrap().1.len(), 2);
    }
}
