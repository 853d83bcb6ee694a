//! Conversation history in SQLite (WAL, synchronous=FULL): a reply is on disk when its
//! turn ends, so `kill -9` afterwards loses nothing.
//!
//! rusqlite is blocking, so every call runs on tokio's blocking pool, never on a worker.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use rusqlite::{Connection, OptionalExtension, params};
use vtuber_shared::framing::{json_prefix_len, json_str_len};
use vtuber_shared::{
    ConversationSummary, CutReason, ErrorBody, ErrorCode, PageCursor, Role, StoredImage,
    StoredMessage,
};

use crate::images::{PreparedImage, extension};

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
    #[error("stored image {path}: {source}")]
    Image {
        path: PathBuf,
        source: std::io::Error,
    },
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
";

/// Schema version written after [`migrate`]: 2 added `messages.cut`, 3 added
/// `messages.images` (a JSON list of [`StoredImage`], NULL when none).
const SCHEMA_VERSION: i64 = 3;

/// Brings a database made by an older daemon up to date. Only adds columns, so an older
/// daemon can still read (and write) the file afterwards.
fn migrate(conn: &Connection) -> rusqlite::Result<()> {
    let has_cut = conn
        .prepare("SELECT 1 FROM pragma_table_info('messages') WHERE name = 'cut'")?
        .exists([])?;
    if !has_cut {
        conn.execute_batch("ALTER TABLE messages ADD COLUMN cut TEXT")?;
    }
    let has_images = conn
        .prepare("SELECT 1 FROM pragma_table_info('messages') WHERE name = 'images'")?
        .exists([])?;
    if !has_images {
        conn.execute_batch("ALTER TABLE messages ADD COLUMN images TEXT")?;
    }
    conn.pragma_update(None, "user_version", SCHEMA_VERSION)
}

/// Text budget of one `get_conversation` page, in bytes as JSON-escaped: a page frame
/// stays far below the 4 MiB frame limit whatever the messages hold.
pub const PAGE_TEXT_BUDGET: usize = 1024 * 1024;
/// Most messages in one page.
pub const PAGE_MAX_MESSAGES: usize = 500;
/// What a message's other fields add to its frame, counted against the budget.
const MESSAGE_OVERHEAD: usize = 200;

fn cut_str(cut: CutReason) -> &'static str {
    cut.as_str()
}

fn parse_cut(s: Option<String>) -> Option<CutReason> {
    match s.as_deref() {
        Some("length") => Some(CutReason::Length),
        Some("time") => Some(CutReason::Time),
        _ => None,
    }
}

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

/// A message about to be stored.
struct NewRow {
    role: Role,
    text: String,
    interrupted: bool,
    cut: Option<CutReason>,
    images: Vec<StoredImage>,
}

/// Handle to the history database; cheap to clone.
#[derive(Clone)]
pub struct Store {
    conn: Arc<Mutex<Connection>>,
    /// `images/` beside the database: each picture once, as `<sha256>.<ext>` (0600;
    /// the folder 0700, made when the first picture arrives).
    images: Arc<PathBuf>,
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
        let io_err =
            |e: std::io::Error| open_err(rusqlite::Error::ToSqlConversionFailure(Box::new(e)));
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty())
            && (!dir.exists() || dir == vtuber_shared::paths::data_dir())
        {
            crate::private::ensure_dir(dir).map_err(io_err)?;
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
        migrate(&conn).map_err(open_err)?;
        // WAL mode has created -wal/-shm by now; SQLite gives them the database's mode,
        // but one left by an older version may be wider.
        crate::private::tighten_database(path).map_err(io_err)?;
        let images = path
            .parent()
            .map_or_else(|| PathBuf::from("images"), |d| d.join("images"));
        Ok(Self {
            conn: Arc::new(Mutex::new(conn)),
            images: Arc::new(images),
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
        self.add_reply(conversation, role, text, interrupted, None)
            .await
    }

    /// The file a stored picture is kept in.
    pub fn image_path(&self, image: &StoredImage) -> Option<PathBuf> {
        // The name comes from the database; only a hash is accepted as one.
        let is_hash = image.sha256.len() == 64
            && image
                .sha256
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        is_hash.then(|| {
            self.images
                .join(format!("{}.{}", image.sha256, extension(&image.mime_type)))
        })
    }

    /// Reads a stored picture's file.
    pub async fn read_image(&self, image: &StoredImage) -> Result<Vec<u8>, StoreError> {
        let Some(path) = self.image_path(image) else {
            return Err(StoreError::Image {
                path: PathBuf::from(&image.sha256),
                source: std::io::Error::new(std::io::ErrorKind::InvalidData, "not a hash"),
            });
        };
        tokio::task::spawn_blocking(move || {
            std::fs::read(&path).map_err(|source| StoreError::Image { path, source })
        })
        .await
        .map_err(|e| StoreError::Task(e.to_string()))?
    }

    /// Appends the user's message with its pictures; each picture's file is written
    /// once (by hash), before the row that names it.
    pub async fn add_user_message(
        &self,
        conversation: i64,
        text: &str,
        images: Vec<PreparedImage>,
    ) -> Result<StoredMessage, StoreError> {
        let mut stored = Vec::with_capacity(images.len());
        if !images.is_empty() {
            let dir = self.images.clone();
            let this = self.clone();
            stored = tokio::task::spawn_blocking(move || {
                let io = |path: &Path, source| StoreError::Image {
                    path: path.to_path_buf(),
                    source,
                };
                crate::private::ensure_dir(&dir).map_err(|e| io(&dir, e))?;
                let mut out = Vec::with_capacity(images.len());
                for image in images {
                    let s = StoredImage {
                        sha256: image.sha256,
                        mime_type: image.mime_type.to_owned(),
                    };
                    if let Some(path) = this.image_path(&s)
                        && !path.exists()
                    {
                        crate::private::write_atomic(&path, &image.bytes)
                            .map_err(|e| io(&path, e))?;
                    }
                    out.push(s);
                }
                Ok::<_, StoreError>(out)
            })
            .await
            .map_err(|e| StoreError::Task(e.to_string()))??;
        }
        let row = NewRow {
            role: Role::User,
            text: text.to_owned(),
            interrupted: false,
            cut: None,
            images: stored,
        };
        self.insert(conversation, row).await
    }

    /// [`Store::add_message`] for a reply a per-turn limit may have cut.
    pub async fn add_reply(
        &self,
        conversation: i64,
        role: Role,
        text: &str,
        interrupted: bool,
        cut: Option<CutReason>,
    ) -> Result<StoredMessage, StoreError> {
        let row = NewRow {
            role,
            text: text.to_owned(),
            interrupted,
            cut,
            images: Vec::new(),
        };
        self.insert(conversation, row).await
    }

    async fn insert(&self, conversation: i64, row: NewRow) -> Result<StoredMessage, StoreError> {
        let NewRow {
            role,
            text,
            interrupted,
            cut,
            images,
        } = row;
        let images_json = if images.is_empty() {
            None
        } else {
            serde_json::to_string(&images).ok()
        };
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
                "INSERT INTO messages (conversation_id, role, text, created_ms, interrupted, cut, images) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![conversation, role_str(role), text, now, interrupted, cut.map(cut_str), images_json],
            )?;
            let id = tx.last_insert_rowid();
            tx.commit()?;
            Ok(StoredMessage {
                interrupted,
                cut,
                images,
                ..StoredMessage::new(id, role, text, now)
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
                "SELECT id, role, text, created_ms, interrupted, cut, images FROM messages
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
            let summary = summary_of(c, id)?;
            let mut stmt = c.prepare_cached(
                "SELECT id, role, text, created_ms, interrupted, cut, images FROM messages
                 WHERE conversation_id = ?1 ORDER BY id",
            )?;
            let messages = stmt
                .query_map(params![id], row_to_message)?
                .collect::<Result<_, _>>()?;
            Ok((summary, messages))
        })
        .await
    }

    /// One page of a conversation's messages, oldest first, from `from` (the start when
    /// `None`): as many messages as fit `budget` bytes of JSON-escaped text (and at most
    /// `max_messages`), splitting a message that alone exceeds the page. Returns where
    /// the next page starts, if anything is left.
    pub async fn conversation_page(
        &self,
        id: i64,
        from: Option<PageCursor>,
        budget: usize,
        max_messages: usize,
    ) -> Result<(ConversationSummary, Vec<StoredMessage>, Option<PageCursor>), StoreError> {
        self.with(move |c| {
            let summary = summary_of(c, id)?;
            let from_id = from.map_or(i64::MIN, |f| f.message_id);
            let mut stmt = c.prepare_cached(
                "SELECT id, role, text, created_ms, interrupted, cut, images FROM messages
                 WHERE conversation_id = ?1 AND id >= ?2 ORDER BY id",
            )?;
            let mut rows = stmt.query(params![id, from_id])?;
            let mut page = Vec::new();
            let mut used = 0usize;
            let mut next = None;
            while let Some(row) = rows.next()? {
                let mut m = row_to_message(row)?;
                if page.len() >= max_messages.max(1) {
                    next = Some(PageCursor {
                        message_id: m.id,
                        text_offset: 0,
                    });
                    break;
                }
                let start = match from {
                    Some(f) if f.message_id == m.id => floor_char_boundary(&m.text, f.text_offset),
                    _ => 0,
                };
                let rest_len = m.text.len() - start;
                let cost = json_str_len(&m.text[start..]) + MESSAGE_OVERHEAD + m.images.len() * 120;
                if start > 0 {
                    // The pictures came with the message's first part.
                    m.images.clear();
                }
                if used + cost <= budget {
                    used += cost;
                    m.text.replace_range(..start, "");
                    m.text_offset = start as u64;
                    page.push(m);
                    continue;
                }
                // It does not fit what is left. A message that fits a page of its own
                // waits for the next one; a larger one is split, starting here.
                let room = budget.saturating_sub(used + MESSAGE_OVERHEAD);
                let mut take = json_prefix_len(&m.text[start..], room);
                if !page.is_empty() && (cost <= budget || take == 0) {
                    next = Some(PageCursor {
                        message_id: m.id,
                        text_offset: start as u64,
                    });
                    break;
                }
                if take == 0 {
                    // Always make progress, even with a tiny budget.
                    take = m.text[start..].chars().next().map_or(0, char::len_utf8);
                }
                let end = start + take;
                m.text.truncate(end);
                m.text.replace_range(..start, "");
                m.text_offset = start as u64;
                m.text_continues = take < rest_len;
                page.push(m.clone());
                if m.text_continues {
                    next = Some(PageCursor {
                        message_id: m.id,
                        text_offset: end as u64,
                    });
                    break;
                }
                used = budget;
            }
            Ok((summary, page, next))
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
    let images = r
        .get::<_, Option<String>>(6)?
        .and_then(|json| serde_json::from_str(&json).ok())
        .unwrap_or_default();
    Ok(StoredMessage {
        interrupted: r.get(4)?,
        cut: parse_cut(r.get(5)?),
        images,
        ..StoredMessage::new(
            r.get(0)?,
            parse_role(&r.get::<_, String>(1)?),
            r.get::<_, String>(2)?,
            r.get(3)?,
        )
    })
}

/// `offset` moved back to a character boundary of `text` (and to its end at most), so
/// a cursor a client altered cannot split a character.
fn floor_char_boundary(text: &str, offset: u64) -> usize {
    let mut at = usize::try_from(offset)
        .unwrap_or(usize::MAX)
        .min(text.len());
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    at
}

/// One conversation's summary, or `NoSuchConversation`.
fn summary_of(c: &Connection, id: i64) -> Result<ConversationSummary, StoreError> {
    c.query_row(
        "SELECT c.id, c.character, c.title, c.created_ms, c.updated_ms,
                (SELECT count(*) FROM messages m WHERE m.conversation_id = c.id)
         FROM conversations c WHERE c.id = ?1",
        params![id],
        row_to_summary,
    )
    .optional()?
    .ok_or(StoreError::NoSuchConversation(id))
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
    async fn pictures_are_stored_once_by_hash_and_come_back_with_the_message() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("history.sqlite3")).unwrap();
        let conv = store.create_conversation("mao").await.unwrap().id;
        let png = crate::images::tests::encoded(16, 16, image::ImageFormat::Png);
        let image = crate::images::prepare_bytes(0, &png).unwrap();
        let first = store
            .add_user_message(conv, "look", vec![image.clone()])
            .await
            .unwrap();
        store
            .add_user_message(conv, "again", vec![image.clone(), image.clone()])
            .await
            .unwrap();
        assert_eq!(first.images[0].sha256, image.sha256);
        assert_eq!(first.images[0].mime_type, "image/jpeg");
        let folder = dir.path().join("images");
        let files: Vec<_> = std::fs::read_dir(&folder).unwrap().collect();
        assert_eq!(files.len(), 1, "one file per distinct picture");
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&folder), 0o700);
        let file = store.image_path(&first.images[0]).unwrap();
        assert_eq!(mode(&file), 0o600);
        assert_eq!(file.extension().unwrap(), "jpg");

        let (_, msgs) = store.conversation(conv).await.unwrap();
        assert_eq!(msgs[0].images, first.images);
        assert_eq!(msgs[1].images.len(), 2);
        let recent = store.recent_messages(conv, 10).await.unwrap();
        assert_eq!(recent[1].images.len(), 2);
        let (_, page, _) = store.conversation_page(conv, None, 4096, 10).await.unwrap();
        assert_eq!(page[0].images.len(), 1);
        assert_eq!(
            store.read_image(&first.images[0]).await.unwrap(),
            image.bytes
        );
        // Only hashes name files.
        let evil = StoredImage {
            sha256: "../../etc/passwd".into(),
            mime_type: "image/png".into(),
        };
        assert!(store.image_path(&evil).is_none());
        assert!(store.read_image(&evil).await.is_err());
    }

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

    /// Reads every page from the start, checking each against the budget.
    async fn read_paged(store: &Store, id: i64, budget: usize, max: usize) -> Vec<StoredMessage> {
        let mut all = Vec::new();
        let mut from = None;
        for _ in 0..10_000 {
            let (_, page, next) = store
                .conversation_page(id, from, budget, max)
                .await
                .unwrap();
            assert!(!page.is_empty(), "an empty page with more to come");
            assert!(page.len() <= max);
            let text: usize = page
                .iter()
                .map(|m| json_str_len(&m.text) + MESSAGE_OVERHEAD)
                .sum();
            // One character may pass a tiny budget.
            assert!(
                text <= budget.max(MESSAGE_OVERHEAD + 4),
                "{text} > {budget}"
            );
            vtuber_shared::append_page(&mut all, page);
            match next {
                Some(n) => from = Some(n),
                None => return all,
            }
        }
        panic!("paging never ended");
    }

    #[tokio::test]
    async fn pages_split_large_messages_and_join_back() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("h.sqlite3")).unwrap();
        let conv = store.create_conversation("mao").await.unwrap();
        let big = "ab\"é世🎉\n".repeat(5000);
        let texts = ["first".to_owned(), big.clone(), "x".repeat(300), big];
        for (i, t) in texts.iter().enumerate() {
            let role = if i % 2 == 0 {
                Role::User
            } else {
                Role::Assistant
            };
            store.add_message(conv.id, role, t, false).await.unwrap();
        }
        for (budget, max) in [
            (4096, 500),
            (1000, 2),
            (PAGE_TEXT_BUDGET, PAGE_MAX_MESSAGES),
        ] {
            let all = read_paged(&store, conv.id, budget, max).await;
            let got: Vec<&str> = all.iter().map(|m| m.text.as_str()).collect();
            assert_eq!(got, texts.iter().map(String::as_str).collect::<Vec<_>>());
            assert!(all.iter().all(|m| !m.text_continues));
        }
        // A cursor pointing inside a character is moved back to its start.
        let (_, page, _) = store
            .conversation_page(
                conv.id,
                Some(PageCursor {
                    message_id: 2,
                    text_offset: 4,
                }),
                PAGE_TEXT_BUDGET,
                1,
            )
            .await
            .unwrap();
        assert_eq!(page[0].text_offset, 3);
        assert!(page[0].text.starts_with('é'));
    }

    #[tokio::test]
    async fn cut_replies_are_marked_and_old_databases_migrate() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.sqlite3");
        {
            // A database as the previous schema made it.
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch(SCHEMA).unwrap();
            conn.execute_batch(
                "INSERT INTO conversations (character, title, created_ms, updated_ms) VALUES ('mao', 't', 1, 1);
                 INSERT INTO messages (conversation_id, role, text, created_ms, interrupted) VALUES (1, 'user', 'old', 1, 0);",
            )
            .unwrap();
        }
        let store = Store::open(&path).unwrap();
        store
            .add_reply(1, Role::Assistant, "long…", false, Some(CutReason::Time))
            .await
            .unwrap();
        let (_, msgs) = store.conversation(1).await.unwrap();
        assert_eq!(msgs[0].cut, None);
        assert_eq!(msgs[1].cut, Some(CutReason::Time));
        drop(store);
        // Opening again is a no-op for the migration.
        let store = Store::open(&path).unwrap();
        assert_eq!(store.recent_messages(1, 5).await.unwrap().len(), 2);
    }
}
