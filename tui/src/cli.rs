//! Command-line interface. Completions and the man page are generated from these
//! definitions, so help text here is user documentation.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use clap_complete::Shell;

/// Chat with your local AI character, and manage the vtuberd daemon behind it.
///
/// Without a command, opens the chat. The daemon (vtuberd) keeps running in the
/// background between sessions; `chat` and `say` start it when it is not running.
#[derive(Debug, Parser)]
#[command(name = "vtuber", version, max_term_width = 100)]
pub struct Cli {
    /// Socket of the daemon [default: $XDG_RUNTIME_DIR/vtuber/vtuberd.sock]
    #[arg(
        long,
        global = true,
        value_name = "PATH",
        env = "VTUBER_SOCKET",
        hide_env_values = true
    )]
    pub socket: Option<PathBuf>,

    /// Config file for a daemon this command starts, and for `config check`
    #[arg(
        long,
        global = true,
        value_name = "FILE",
        env = "VTUBER_CONFIG",
        hide_env_values = true
    )]
    pub config: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Open the chat (the default): streaming replies, history, daemon status
    Chat,
    /// Send one message and print the reply as it streams in
    ///
    /// Exits 0 when the reply finished, 1 when it failed, 2 when it was interrupted.
    Say(SayArgs),
    /// Feed a WAV file to the character as if spoken, and print the reply
    ///
    /// The audio is transcribed by the daemon's speech recognition; what was heard
    /// goes to standard error, the reply to standard output. Works without any audio
    /// device. Exit codes as for `say`.
    Listen(ListenArgs),
    /// Synthesize TEXT in the current character's voice into a WAV file
    Speak(SpeakArgs),
    /// Show the speech and language model files: where, how big, intact or not
    #[command(subcommand)]
    Models(ModelsCommand),
    /// Show what the daemon is doing (exits 3 when it is not running)
    Status(JsonFlag),
    /// List or switch characters
    #[command(subcommand)]
    Characters(CharactersCommand),
    /// Browse, switch, delete and export conversations
    #[command(subcommand)]
    History(HistoryCommand),
    /// Validate configuration
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Start, stop or inspect the daemon
    #[command(subcommand)]
    Daemon(DaemonCommand),
    /// Inspect the MCP tool servers, their tools and the tool-call audit log
    #[command(subcommand)]
    Mcp(McpCommand),
    /// The browser page: print its address, with its access token
    #[command(subcommand)]
    Web(WebCommand),
    /// Print a shell completion script
    Completions {
        /// Shell to complete for
        #[arg(value_enum)]
        shell: Shell,
    },
    /// Print the man page, or write it (and one page per command) into a directory
    Man {
        /// Directory to write vtuber.1 and vtuber-*.1 into
        #[arg(short, long, value_name = "DIR")]
        out_dir: Option<PathBuf>,
    },
}

#[derive(Debug, Args)]
pub struct JsonFlag {
    /// Print JSON instead of a table
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct SayArgs {
    /// What to say; `-` reads it from standard input
    #[arg(required = true, num_args = 1.., value_name = "TEXT")]
    pub text: Vec<String>,
    /// Print the response and each event of the turn as raw protocol JSON lines
    #[arg(long)]
    pub json: bool,
    /// Send a picture (PNG, JPEG, GIF or WebP) with the message; repeat for more
    ///
    /// For models that can see pictures; a text-only model gets the text alone.
    #[arg(long = "image", value_name = "FILE")]
    pub images: Vec<std::path::PathBuf>,
    /// Allow every tool call of this message that asks for approval, once each
    ///
    /// Without it, `say` asks on the terminal; when standard input is not a
    /// terminal, another client answers or the request times out (denied).
    #[arg(long)]
    pub approve: bool,
}

#[derive(Debug, Args)]
pub struct ListenArgs {
    /// WAV file (any sample rate, mono or stereo, 16-bit or float)
    #[arg(value_name = "FILE.wav")]
    pub file: PathBuf,
    /// Print the response and each event of the turn as raw protocol JSON lines
    #[arg(long)]
    pub json: bool,
    /// Allow every tool call of this turn that asks for approval, once each
    #[arg(long)]
    pub approve: bool,
}

#[derive(Debug, Args)]
pub struct SpeakArgs {
    /// What to say; `-` reads it from standard input
    #[arg(required = true, num_args = 1.., value_name = "TEXT")]
    pub text: Vec<String>,
    /// WAV file to write (16-bit mono); `-` writes to standard output
    #[arg(short, long, value_name = "FILE.wav")]
    pub output: PathBuf,
}

#[derive(Debug, Subcommand)]
pub enum ModelsCommand {
    /// List model files with their role, state, size and path
    List(JsonFlag),
    /// Check every model file's SHA-256 (exits 1 when one is missing or damaged)
    Verify(JsonFlag),
    /// Print the models folder
    Path(JsonFlag),
    /// Download a model into the Ollama server the config names (its /api/pull), with
    /// progress; for `llm.provider: ollama`
    Pull {
        /// Model name as Ollama knows it [default: llm.model from the config]
        name: Option<String>,
        /// Ollama's address [default: llm.base_url from the config, else
        /// http://127.0.0.1:11434]
        #[arg(long, value_name = "URL")]
        base_url: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum CharactersCommand {
    /// List the characters the daemon knows (current one marked with *)
    List(JsonFlag),
    /// Make NAME the current character
    Switch {
        /// Character id (file stem) as shown by `characters list`
        name: String,
    },
    /// Convert an Open-LLM-VTuber character (its conf.yaml or characters/*.yaml):
    /// prints the character file, or writes it with --write
    Import {
        /// The YAML file with a `character_config` section
        file: PathBuf,
        /// Write it to the character folder ($XDG_CONFIG_HOME/vtuber/characters, or
        /// --dir) instead of printing it
        #[arg(long)]
        write: bool,
        /// The character folder to write into (with --write)
        #[arg(long, requires = "write")]
        dir: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub enum HistoryCommand {
    /// List conversations, newest first
    List {
        /// Only this character's conversations
        #[arg(long, value_name = "NAME")]
        character: Option<String>,
        /// Print JSON instead of a table
        #[arg(long)]
        json: bool,
    },
    /// Print one conversation as a Markdown transcript
    Show {
        /// Conversation id, as shown by `history list`
        id: i64,
        /// Print the conversation and its messages as JSON
        #[arg(long)]
        json: bool,
    },
    /// Start a fresh conversation with the current character
    New,
    /// Make an earlier conversation the current one
    Load {
        /// Conversation id, as shown by `history list`
        id: i64,
    },
    /// Delete a conversation for good
    Delete {
        /// Conversation id, as shown by `history list`
        id: i64,
    },
    /// Write a conversation as Markdown or JSON
    Export {
        /// Conversation id, as shown by `history list`
        id: i64,
        /// Output format
        #[arg(long, value_enum, default_value_t = ExportFormat::Md)]
        format: ExportFormat,
        /// Write to FILE instead of standard output
        #[arg(short, long, value_name = "FILE")]
        output: Option<PathBuf>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ExportFormat {
    /// A readable Markdown transcript
    Md,
    /// The conversation and its messages as JSON
    Json,
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Check a config file with `vtuberd --check-config` (exits 1 when invalid)
    Check {
        /// File to check [default: --config, $VTUBER_CONFIG, then the usual lookup]
        file: Option<PathBuf>,
        /// Also check conf.NAME.yaml beside it
        #[arg(long, short = 'p', value_name = "NAME", env = "VTUBER_PROFILE")]
        profile: Option<String>,
    },
    /// Print the configuration: conf.yaml, then conf.d/*.yaml in name order, then the
    /// profile's conf.NAME.yaml, merged, each value with the file and line it comes from
    /// (secrets masked)
    Show {
        /// Every value the daemon runs with, defaults included (without it: only what
        /// the files set)
        #[arg(long)]
        effective: bool,
        /// Add conf.NAME.yaml beside conf.yaml
        #[arg(long, short = 'p', value_name = "NAME", env = "VTUBER_PROFILE")]
        profile: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum McpCommand {
    /// List the configured MCP servers: transport, state, tools and sandbox
    List {
        /// Print JSON instead of a table
        #[arg(long)]
        json: bool,
    },
    /// List the tools offered to the LLM, with their policy
    Tools {
        /// Only this server's tools
        server: Option<String>,
        /// Print JSON instead of a table
        #[arg(long)]
        json: bool,
    },
    /// Stop and start one MCP server again (also re-enables one that gave up)
    Restart {
        /// Server name, as shown by `mcp list`
        name: String,
    },
    /// Show tool calls from the audit log, newest first
    Audit {
        /// Only calls since TIME: a duration back (10m, 2h, 1d), an RFC 3339 time,
        /// or `YYYY-MM-DD HH:MM` in UTC
        #[arg(long, value_name = "TIME", value_parser = parse_since)]
        since: Option<i64>,
        /// At most N calls
        #[arg(long, value_name = "N")]
        limit: Option<u32>,
        /// Print JSON instead of a table
        #[arg(long)]
        json: bool,
    },
    /// Convert a Claude Desktop style MCP server list into vtuber's config YAML
    ///
    /// Reads `{"mcpServers": {...}}` (or Open-LLM-VTuber's `mcp_servers`) and prints
    /// the matching `mcp: servers:` block. Secret-looking environment values and
    /// headers become ${NAME} references to export instead of being copied.
    Import {
        /// The JSON file, e.g. claude_desktop_config.json
        file: PathBuf,
        /// Append the block to the config file (--config, $VTUBER_CONFIG, else
        /// $XDG_CONFIG_HOME/vtuber/conf.yaml) when it has no `mcp:` section yet
        #[arg(long)]
        write: bool,
    },
}

fn parse_since(text: &str) -> Result<i64, String> {
    crate::time::parse_since(text, crate::time::now_ms())
}

#[derive(Debug, Subcommand)]
pub enum WebCommand {
    /// Print the page's address with its access token (exits 1 when there is no page)
    ///
    /// Open it in a browser on this machine: the page keeps the token in a cookie and
    /// drops it from the address. The address is a password (whoever has it can drive
    /// the character and the tools it may use), so share it with no one. Open-LLM-VTuber
    /// clients connect to the same host and port at /client-ws with the same
    /// `?token=...`. The address comes from the running daemon, so this also answers
    /// for a daemon started with another config.
    Url {
        /// Print {"web_url": ..., "web_auth": ...} as JSON
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum DaemonCommand {
    /// Start vtuberd in the background
    Start,
    /// Ask vtuberd to exit and wait until it has
    Stop,
    /// Stop vtuberd (if running), then start it
    Restart,
    /// Say whether vtuberd is running (exits 3 when not)
    Status,
    /// Re-read the configuration files and the characters and apply what can change live
    /// (as SIGHUP does); a file with a mistake changes nothing and is reported (exit 1)
    Reload,
    /// Run vtuberd as a systemd user service: write ~/.config/systemd/user/vtuberd.service
    /// and enable it
    ///
    /// With --system (as root): write the system template
    /// /etc/systemd/system/vtuberd@.service and a drop-in for the user, and enable
    /// vtuberd@USER.service, which runs vtuberd as that user from boot on (its socket is
    /// where that user's `vtuber` looks; `loginctl enable-linger USER` keeps it across
    /// logouts).
    Install {
        /// Print the unit instead of installing it
        #[arg(long)]
        print: bool,
        /// Install the system template vtuberd@.service instead of the user unit
        #[arg(long)]
        system: bool,
        /// With --system: the user vtuberd runs as (default: the one who ran sudo)
        #[arg(long = "for", value_name = "USER", requires = "system")]
        for_user: Option<String>,
        /// Also install socket units (vtuberd.socket, and vtuberd-web.socket for the web
        /// port in the configuration): systemd opens them and starts vtuberd on the first
        /// connection, so clients can connect before the daemon is up
        #[arg(long, conflicts_with = "system")]
        socket_activation: bool,
    },
    /// Disable and remove the systemd user service (with --system: the user's instance of
    /// the system template, and the template once no instance is left)
    Uninstall {
        /// Remove the system service vtuberd@USER instead of the user unit
        #[arg(long)]
        system: bool,
        /// With --system: the user whose instance goes (default: the one who ran sudo)
        #[arg(long = "for", value_name = "USER", requires = "system")]
        for_user: Option<String>,
    },
    /// Show the daemon's log: the journal for the service, else the file `vtuber` starts it
    /// with
    Logs {
        /// Keep printing new lines as they come
        #[arg(long, short = 'f')]
        follow: bool,
        /// How many of the last lines to show first
        #[arg(long, short = 'n', default_value_t = 100, value_name = "N")]
        lines: usize,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn definitions_are_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn no_command_means_chat_and_globals_work_after_subcommands() {
        let cli = Cli::try_parse_from(["vtuber"]).unwrap();
        assert!(cli.command.is_none());
        let cli = Cli::try_parse_from(["vtuber", "history", "list", "--socket", "/tmp/s"]).unwrap();
        assert_eq!(cli.socket, Some(PathBuf::from("/tmp/s")));
    }

    #[test]
    fn say_takes_many_words_and_export_defaults_to_markdown() {
        let cli = Cli::try_parse_from(["vtuber", "say", "hello", "there", "--json"]).unwrap();
        match cli.command {
            Some(Command::Say(args)) => {
                assert_eq!(args.text, ["hello", "there"]);
                assert!(args.json);
            }
            other => panic!("{other:?}"),
        }
        let cli = Cli::try_parse_from(["vtuber", "history", "export", "3"]).unwrap();
        assert!(matches!(
            cli.command,
            Some(Command::History(HistoryCommand::Export {
                id: 3,
                format: ExportFormat::Md,
                output: None
            }))
        ));
        assert!(Cli::try_parse_from(["vtuber", "say"]).is_err());
    }

    #[test]
    fn mcp_audit_parses_since() {
        let cli = Cli::try_parse_from([
            "vtuber",
            "mcp",
            "audit",
            "--since",
            "1970-01-02",
            "--limit",
            "5",
        ])
        .unwrap();
        assert!(matches!(
            cli.command,
            Some(Command::Mcp(McpCommand::Audit {
                since: Some(86_400_000),
                limit: Some(5),
                json: false
            }))
        ));
        assert!(Cli::try_parse_from(["vtuber", "mcp", "audit", "--since", "soon"]).is_err());
    }

    #[test]
    fn web_url_takes_json() {
        let cli = Cli::try_parse_from(["vtuber", "web", "url", "--json"]).unwrap();
        assert!(matches!(
            cli.command,
            Some(Command::Web(WebCommand::Url { json: true }))
        ));
        assert!(Cli::try_parse_from(["vtuber", "web"]).is_err());
    }
}
