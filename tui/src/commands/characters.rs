//! `vtuber characters`: list and switch characters.

use std::process::ExitCode;

use anyhow::Result;
use vtuber_shared::{CharacterInfo, Reply, Request};

use super::{ask, print_json, query, unexpected};
use crate::cli::CharactersCommand;
use crate::launcher::Target;

pub fn characters_table(current: &str, characters: &[CharacterInfo]) -> String {
    let id_w = characters
        .iter()
        .map(|c| c.id.len())
        .max()
        .unwrap_or(0)
        .max(2);
    let name_w = characters
        .iter()
        .map(|c| c.name.len())
        .max()
        .unwrap_or(0)
        .max(4);
    let mut out = format!("  {:<id_w$}  {:<name_w$}  DESCRIPTION\n", "ID", "NAME");
    for c in characters {
        let mark = if c.id == current || c.name == current {
            '*'
        } else {
            ' '
        };
        let description = c.description.lines().next().unwrap_or("");
        out.push_str(&format!(
            "{mark} {:<id_w$}  {:<name_w$}  {description}\n",
            c.id, c.name
        ));
    }
    out
}

pub async fn characters(target: &Target, cmd: CharactersCommand) -> Result<ExitCode> {
    // Import is a file conversion: no daemon needed.
    if let CharactersCommand::Import { file, write, dir } = &cmd {
        let dir = write.then(|| {
            dir.clone()
                .unwrap_or_else(|| vtuber_shared::paths::config_dir().join("characters"))
        });
        super::character_import::import_command(file, dir)?;
        return Ok(ExitCode::SUCCESS);
    }
    let conn = query(target, 1).await?;
    match cmd {
        CharactersCommand::List(flag) => match ask(&conn.client, Request::ListCharacters).await? {
            Reply::Characters {
                current,
                characters,
            } => {
                if flag.json {
                    print_json(&serde_json::json!({
                        "current": current,
                        "characters": characters,
                    }))?;
                } else {
                    print!("{}", characters_table(&current, &characters));
                }
            }
            other => return Err(unexpected(&other)),
        },
        CharactersCommand::Switch { name } => {
            match ask(&conn.client, Request::SwitchCharacter { name }).await? {
                Reply::CharacterSwitched { character } => {
                    println!("switched to {} ({})", character.name, character.id);
                }
                other => return Err(unexpected(&other)),
            }
        }
        CharactersCommand::Import { .. } => {}
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn characters_table_marks_the_current_one() {
        let c = |id: &str, name: &str| CharacterInfo {
            id: id.into(),
            name: name.into(),
            description: "line one\nline two".into(),
            greeting: None,
            source: "built-in".into(),
        };
        let table = characters_table("bo", &[c("aria", "Aria"), c("bo", "Bo")]);
        assert_eq!(
            table,
            "  ID    NAME  DESCRIPTION\n  aria  Aria  line one\n* bo    Bo    line one\n"
        );
    }
}
