//! The `/` command line of `vtuber chat`: what the CLI's subcommands do, without leaving
//! the chat (`/character NAME`, `/history`, `/new`, `/export`…), with Tab completion.
//! A line starting with `//` is sent as text with one `/` removed.

use std::path::PathBuf;

/// One parsed command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SlashCommand {
    Help,
    New,
    /// No name: list the characters.
    Character(Option<String>),
    /// No id: list the conversations; with one: open it.
    History(Option<i64>),
    /// Write the current conversation as Markdown (default: `conversation-ID.md` here).
    Export(Option<PathBuf>),
    Listen(bool),
    /// Attach a picture to the next message.
    Image(PathBuf),
    Quit,
}

/// Every command with its arguments and what it does, for `/help` and completion.
pub const COMMANDS: &[(&str, &str, &str)] = &[
    ("/character", "[NAME]", "switch character; alone: list them"),
    ("/export", "[FILE]", "write this conversation as Markdown"),
    ("/help", "", "list these commands"),
    ("/image", "PATH", "attach a picture to your next message"),
    (
        "/history",
        "[ID]",
        "list conversations; with an id: open it",
    ),
    (
        "/listen",
        "on|off",
        "hands-free listening on the daemon's microphone",
    ),
    ("/new", "", "start a new conversation"),
    ("/quit", "", "leave the chat (the daemon keeps running)"),
];

/// What a submitted line is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Line {
    /// Text for the character (`//x` becomes `/x`).
    Text(String),
    Command(SlashCommand),
    /// A `/` line that is no command, with what to say.
    Invalid(String),
}

pub fn parse(line: &str) -> Line {
    let trimmed = line.trim();
    if let Some(rest) = trimmed.strip_prefix("//") {
        return Line::Text(format!("/{rest}"));
    }
    let Some(body) = trimmed.strip_prefix('/') else {
        return Line::Text(line.to_owned());
    };
    let (name, arg) = match body.split_once(char::is_whitespace) {
        Some((n, a)) => (n, a.trim()),
        None => (body, ""),
    };
    let arg = (!arg.is_empty()).then(|| arg.to_owned());
    let command = match (name, arg) {
        ("help" | "?", None) => SlashCommand::Help,
        ("new", None) => SlashCommand::New,
        ("character" | "char", arg) => SlashCommand::Character(arg),
        ("history", None) => SlashCommand::History(None),
        ("history", Some(id)) => match id.trim_start_matches('#').parse() {
            Ok(id) => SlashCommand::History(Some(id)),
            Err(_) => {
                return Line::Invalid(format!(
                    "`{id}` is not a conversation id: `/history` lists them with their ids"
                ));
            }
        },
        ("export", arg) => SlashCommand::Export(arg.map(PathBuf::from)),
        ("listen", Some(v)) if v == "on" => SlashCommand::Listen(true),
        ("listen", Some(v)) if v == "off" => SlashCommand::Listen(false),
        ("listen", _) => return Line::Invalid("write `/listen on` or `/listen off`".into()),
        ("image", Some(path)) => SlashCommand::Image(PathBuf::from(path)),
        ("image", None) => {
            return Line::Invalid("write `/image PATH` (a PNG, JPEG, GIF or WebP file)".into());
        }
        ("quit" | "exit" | "q", None) => SlashCommand::Quit,
        (known, Some(_)) if COMMANDS.iter().any(|(c, _, _)| &c[1..] == known) => {
            return Line::Invalid(format!("/{known} takes no argument"));
        }
        _ => {
            return Line::Invalid(format!(
                "no command `/{name}`: /help lists them (start a message with // to send a literal /)"
            ));
        }
    };
    Line::Command(command)
}

/// Completes the input (one line, cursor at the end): a command name, or a character
/// name after `/character `. `None` when nothing fits or the choice is ambiguous with no
/// common prefix to add.
pub fn complete(input: &str, characters: &[String]) -> Option<String> {
    if !input.starts_with('/') || input.starts_with("//") || input.contains('\n') {
        return None;
    }
    match input.split_once(' ') {
        None => {
            let names: Vec<&str> = COMMANDS.iter().map(|(c, _, _)| *c).collect();
            let done = extend(input, &names)?;
            // A whole command gets its space, ready for the argument.
            Some(if names.contains(&done.as_str()) {
                format!("{done} ")
            } else {
                done
            })
        }
        Some(("/character" | "/char", partial)) => {
            let head = &input[..input.len() - partial.len()];
            let names: Vec<&str> = characters.iter().map(String::as_str).collect();
            extend(partial, &names).map(|n| format!("{head}{n}"))
        }
        Some(_) => None,
    }
}

/// The longest common extension of `prefix` among `options`, if it adds anything.
fn extend(prefix: &str, options: &[&str]) -> Option<String> {
    let matching: Vec<&str> = options
        .iter()
        .copied()
        .filter(|o| o.starts_with(prefix))
        .collect();
    let first = *matching.first()?;
    let mut common = first.len();
    for m in &matching[1..] {
        common = first
            .char_indices()
            .zip(m.chars())
            .find(|((_, a), b)| a != b)
            .map_or(common.min(m.len()), |((i, _), _)| i.min(common));
    }
    let extended = &first[..common];
    (extended.len() > prefix.len()).then(|| extended.to_owned())
}

/// `/help` text: one line per command.
pub fn help() -> String {
    let width = COMMANDS
        .iter()
        .map(|(c, a, _)| c.len() + a.len() + 1)
        .max()
        .unwrap_or(0);
    let mut out = String::from("commands (Tab completes):");
    for (c, a, what) in COMMANDS {
        let usage = if a.is_empty() {
            (*c).to_owned()
        } else {
            format!("{c} {a}")
        };
        out.push_str(&format!("\n  {usage:<width$}  {what}"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_text_commands_or_explained() {
        assert_eq!(parse("hello /there"), Line::Text("hello /there".into()));
        assert_eq!(parse("//shrug"), Line::Text("/shrug".into()));
        assert_eq!(parse("/new"), Line::Command(SlashCommand::New));
        assert_eq!(parse("  /help "), Line::Command(SlashCommand::Help));
        assert_eq!(
            parse("/character kit"),
            Line::Command(SlashCommand::Character(Some("kit".into())))
        );
        assert_eq!(
            parse("/character"),
            Line::Command(SlashCommand::Character(None))
        );
        assert_eq!(
            parse("/history #12"),
            Line::Command(SlashCommand::History(Some(12)))
        );
        assert_eq!(
            parse("/export notes/chat.md"),
            Line::Command(SlashCommand::Export(Some("notes/chat.md".into())))
        );
        assert_eq!(
            parse("/listen on"),
            Line::Command(SlashCommand::Listen(true))
        );
        assert_eq!(parse("/quit"), Line::Command(SlashCommand::Quit));
        let Line::Invalid(why) = parse("/histroy") else {
            panic!()
        };
        assert!(why.contains("/help") && why.contains("//"), "{why}");
        assert!(
            matches!(parse("/history lots"), Line::Invalid(w) if w.contains("not a conversation id"))
        );
        assert!(matches!(parse("/new now"), Line::Invalid(w) if w.contains("takes no argument")));
        assert!(matches!(parse("/listen maybe"), Line::Invalid(_)));
    }

    #[test]
    fn tab_completes_commands_and_character_names() {
        let chars = vec!["mao".to_owned(), "kit".to_owned(), "kitsune".to_owned()];
        assert_eq!(complete("/ch", &chars).as_deref(), Some("/character "));
        // /help and /history: nothing in common beyond what is typed.
        assert_eq!(complete("/h", &chars), None);
        assert_eq!(complete("/he", &chars).as_deref(), Some("/help "));
        assert_eq!(complete("/hi", &chars).as_deref(), Some("/history "));
        assert_eq!(
            complete("/character m", &chars).as_deref(),
            Some("/character mao")
        );
        assert_eq!(
            complete("/character k", &chars).as_deref(),
            Some("/character kit")
        );
        assert_eq!(complete("/character kit", &chars), None);
        assert_eq!(complete("/zz", &chars), None);
        assert_eq!(complete("hello", &chars), None);
        assert_eq!(complete("/new x", &chars), None);
    }

    #[test]
    fn help_lists_every_command() {
        let h = help();
        for (c, _, _) in COMMANDS {
            assert!(h.contains(c), "{h}");
        }
    }

    #[test]
    fn image_takes_a_path() {
        assert_eq!(
            parse("/image ~/a b.png"),
            Line::Command(SlashCommand::Image(PathBuf::from("~/a b.png")))
        );
        assert!(matches!(parse("/image"), Line::Invalid(_)));
    }
}
