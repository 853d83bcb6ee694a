//! `vtuber history`: list, start, load, delete and export conversations.

use std::io::Write;
use std::process::ExitCode;

use anyhow::{Context, Result, anyhow};
use vtuber_shared::client::{Client, REQUEST_TIMEOUT};
use vtuber_shared::{ConversationSummary, Reply, Request};

use super::{ask, print_json, query, unexpected};
use crate::cli::{ExportFormat, HistoryCommand};
use crate::export;
use crate::launcher::Target;
use crate::time::format_ms;

pub fn conversations_table(conversations: &[ConversationSummary]) -> String {
    if conversations.is_empty() {
        return "no conversations yet\n".to_owned();
    }
    let id_w = conversations
        .iter()
        .map(|c| c.id.to_string().len())
        .max()
        .unwrap_or(0)
        .max(2);
    let ch_w = conversations
        .iter()
        .map(|c| c.character.len())
        .max()
        .unwrap_or(0)
        .max(9);
    let mut out = format!(
        "{:>id_w$}  {:<ch_w$}  {:<23}  {:>8}  TITLE\n",
        "ID", "CHARACTER", "UPDATED", "MESSAGES"
    );
    for c in conversations {
        out.push_str(&format!(
            "{:>id_w$}  {:<ch_w$}  {:<23}  {:>8}  {}\n",
            c.id,
            c.character,
            format_ms(c.updated_ms),
            c.message_count,
            export::display_title(c)
        ));
    }
    out
}

/// The whole conversation, however many pages it takes.
async fn get_conversation(
    client: &Client,
    id: i64,
) -> Result<(ConversationSummary, Vec<vtuber_shared::StoredMessage>)> {
    client
        .conversation(id, REQUEST_TIMEOUT)
        .await
        .map_err(|e| anyhow!("{e}"))
}

pub async fn history(target: &Target, cmd: HistoryCommand) -> Result<ExitCode> {
    let conn = query(target, 1).await?;
    let client = &conn.client;
    match cmd {
        HistoryCommand::List { character, json } => {
            match ask(client, Request::ListConversations { character }).await? {
                Reply::Conversations { conversations } if json => print_json(&conversations)?,
                Reply::Conversations { conversations } => {
                    print!("{}", conversations_table(&conversations));
                }
                other => return Err(unexpected(&other)),
            }
        }
        HistoryCommand::Show { id, json } => {
            let (conversation, messages) = get_conversation(client, id).await?;
            if json {
                println!(
                    "{}",
                    export::json(&conversation, &messages).context("cannot encode JSON")?
                );
            } else {
                print!("{}", export::markdown(&conversation, &messages));
            }
        }
        HistoryCommand::New => match ask(client, Request::NewConversation).await? {
            Reply::ConversationChanged { conversation_id } => {
                println!("started conversation {conversation_id}");
            }
            other => return Err(unexpected(&other)),
        },
        HistoryCommand::Load { id } => match ask(client, Request::LoadConversation { id }).await? {
            Reply::ConversationChanged { conversation_id } => {
                println!("conversation {conversation_id} is now the current one");
            }
            other => return Err(unexpected(&other)),
        },
        HistoryCommand::Delete { id } => {
            match ask(client, Request::DeleteConversation { id }).await? {
                Reply::Deleted { id } => println!("deleted conversation {id}"),
                other => return Err(unexpected(&other)),
            }
        }
        HistoryCommand::Export { id, format, output } => {
            let (conversation, messages) = get_conversation(client, id).await?;
            let mut text = match format {
                ExportFormat::Md => export::markdown(&conversation, &messages),
                ExportFormat::Json => {
                    export::json(&conversation, &messages).context("cannot encode JSON")?
                }
            };
            if !text.ends_with('\n') {
                text.push('\n');
            }
            match output {
                Some(path) => {
                    write_private(&path, text.as_bytes())
                        .with_context(|| format!("cannot write {}", path.display()))?;
                    eprintln!("wrote conversation {id} to {}", path.display());
                }
                None => std::io::stdout()
                    .write_all(text.as_bytes())
                    .context("cannot write to standard output")?,
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Writes a file only its owner can read (conversations are private); an existing file
/// is truncated and narrowed to 0600.
fn write_private(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    f.write_all(bytes)
}
