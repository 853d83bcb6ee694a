# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_vtuber_global_optspecs
    string join \n socket= config= h/help V/version
end

function __fish_vtuber_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_vtuber_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_vtuber_using_subcommand
    set -l cmd (__fish_vtuber_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c vtuber -n "__fish_vtuber_needs_command" -l socket -d 'Socket of the daemon [default: $XDG_RUNTIME_DIR/vtuber/vtuberd.sock]' -r -F
complete -c vtuber -n "__fish_vtuber_needs_command" -l config -d 'Config file for a daemon this command starts, and for `config check`' -r -F
complete -c vtuber -n "__fish_vtuber_needs_command" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c vtuber -n "__fish_vtuber_needs_command" -s V -l version -d 'Print version'
complete -c vtuber -n "__fish_vtuber_needs_command" -f -a "chat" -d 'Open the chat (the default): streaming replies, history, daemon status'
complete -c vtuber -n "__fish_vtuber_needs_command" -f -a "say" -d 'Send one message and print the reply as it streams in'
complete -c vtuber -n "__fish_vtuber_needs_command" -f -a "listen" -d 'Feed a WAV file to the character as if spoken, and print the reply'
complete -c vtuber -n "__fish_vtuber_needs_command" -f -a "speak" -d 'Synthesize TEXT in the current character\'s voice into a WAV file'
complete -c vtuber -n "__fish_vtuber_needs_command" -f -a "models" -d 'Show the speech and language model files: where, how big, intact or not'
complete -c vtuber -n "__fish_vtuber_needs_command" -f -a "status" -d 'Show what the daemon is doing (exits 3 when it is not running)'
complete -c vtuber -n "__fish_vtuber_needs_command" -f -a "characters" -d 'List or switch characters'
complete -c vtuber -n "__fish_vtuber_needs_command" -f -a "history" -d 'Browse, switch, delete and export conversations'
complete -c vtuber -n "__fish_vtuber_needs_command" -f -a "config" -d 'Validate configuration'
complete -c vtuber -n "__fish_vtuber_needs_command" -f -a "daemon" -d 'Start, stop or inspect the daemon'
complete -c vtuber -n "__fish_vtuber_needs_command" -f -a "mcp" -d 'Inspect the MCP tool servers, their tools and the tool-call audit log'
complete -c vtuber -n "__fish_vtuber_needs_command" -f -a "web" -d 'The browser page: print its address, with its access token'
complete -c vtuber -n "__fish_vtuber_needs_command" -f -a "completions" -d 'Print a shell completion script'
complete -c vtuber -n "__fish_vtuber_needs_command" -f -a "man" -d 'Print the man page, or write it (and one page per command) into a directory'
complete -c vtuber -n "__fish_vtuber_needs_command" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c vtuber -n "__fish_vtuber_using_subcommand chat" -l socket -d 'Socket of the daemon [default: $XDG_RUNTIME_DIR/vtuber/vtuberd.sock]' -r -F
complete -c vtuber -n "__fish_vtuber_using_subcommand chat" -l config -d 'Config file for a daemon this command starts, and for `config check`' -r -F
complete -c vtuber -n "__fish_vtuber_using_subcommand chat" -s h -l help -d 'Print help'
complete -c vtuber -n "__fish_vtuber_using_subcommand say" -l image -d 'Send a picture (PNG, JPEG, GIF or WebP) with the message; repeat for more' -r -F
complete -c vtuber -n "__fish_vtuber_using_subcommand say" -l socket -d 'Socket of the daemon [default: $XDG_RUNTIME_DIR/vtuber/vtuberd.sock]' -r -F
complete -c vtuber -n "__fish_vtuber_using_subcommand say" -l config -d 'Config file for a daemon this command starts, and for `config check`' -r -F
complete -c vtuber -n "__fish_vtuber_using_subcommand say" -l json -d 'Print the response and each event of the turn as raw protocol JSON lines'
complete -c vtuber -n "__fish_vtuber_using_subcommand say" -l approve -d 'Allow every tool call of this message that asks for approval, once each'
complete -c vtuber -n "__fish_vtuber_using_subcommand say" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c vtuber -n "__fish_vtuber_using_subcommand listen" -l socket -d 'Socket of the daemon [default: $XDG_RUNTIME_DIR/vtuber/vtuberd.sock]' -r -F
complete -c vtuber -n "__fish_vtuber_using_subcommand listen" -l config -d 'Config file for a daemon this command starts, and for `config check`' -r -F
complete -c vtuber -n "__fish_vtuber_using_subcommand listen" -l json -d 'Print the response and each event of the turn as raw protocol JSON lines'
complete -c vtuber -n "__fish_vtuber_using_subcommand listen" -l approve -d 'Allow every tool call of this turn that asks for approval, once each'
complete -c vtuber -n "__fish_vtuber_using_subcommand listen" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c vtuber -n "__fish_vtuber_using_subcommand speak" -s o -l output -d 'WAV file to write (16-bit mono); `-` writes to standard output' -r -F
complete -c vtuber -n "__fish_vtuber_using_subcommand speak" -l socket -d 'Socket of the daemon [default: $XDG_RUNTIME_DIR/vtuber/vtuberd.sock]' -r -F
complete -c vtuber -n "__fish_vtuber_using_subcommand speak" -l config -d 'Config file for a daemon this command starts, and for `config check`' -r -F
complete -c vtuber -n "__fish_vtuber_using_subcommand speak" -s h -l help -d 'Print help'
complete -c vtuber -n "__fish_vtuber_using_subcommand models; and not __fish_seen_subcommand_from list verify path pull help" -l socket -d 'Socket of the daemon [default: $XDG_RUNTIME_DIR/vtuber/vtuberd.sock]' -r -F
complete -c vtuber -n "__fish_vtuber_using_subcommand models; and not __fish_seen_subcommand_from list verify path pull help" -l config -d 'Config file for a daemon this command starts, and for `config check`' -r -F
complete -c vtuber -n "__fish_vtuber_using_subcommand models; and not __fish_seen_subcommand_from list verify path pull help" -s h -l help -d 'Print help'
complete -c vtuber -n "__fish_vtuber_using_subcommand models; and not __fish_seen_subcommand_from list verify path pull help" -f -a "list" -d 'List model files with their role, state, size and path'
complete -c vtuber -n "__fish_vtuber_using_subcommand models; and not __fish_seen_subcommand_from list verify path pull help" -f -a "verify" -d 'Check every model file\'s SHA-256 (exits 1 when one is missing or damaged)'
complete -c vtuber -n "__fish_vtuber_using_subcommand models; and not __fish_seen_subcommand_from list verify path pull help" -f -a "path" -d 'Print the models folder'
complete -c vtuber -n "__fish_vtuber_using_subcommand models; and not __fish_seen_subcommand_from list verify path pull help" -f -a "pull" -d 'Download a model into the Ollama server the config names (its /api/pull), with progress; for `llm.provider: ollama`'
complete -c vtuber -n "__fish_vtuber_using_subcommand models; and not __fish_seen_subcommand_from list verify path pull help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c vtuber -n "__fish_vtuber_using_subcommand models; and __fish_seen_subcommand_from list" -l socket -d 'Socket of the daemon [default: $XDG_RUNTIME_DIR/vtuber/vtuberd.sock]' -r -F
complete -c vtuber -n "__fish_vtuber_using_subcommand models; and __fish_seen_subcommand_from list" -l config -d 'Config file for a daemon this command starts, and for `config check`' -r -F
complete -c vtuber -n "__fish_vtuber_using_subcommand models; and __fish_seen_subcommand_from list" -l json -d 'Print JSON instead of a table'
complete -c vtuber -n "__fish_vtuber_using_subcommand models; and __fish_seen_subcommand_from list" -s h -l help -d 'Print help'
complete -c vtuber -n "__fish_vtuber_using_subcommand models; and __fish_seen_subcommand_from verify" -l socket -d 'Socket of the daemon [default: $XDG_RUNTIME_DIR/vtuber/vtuberd.sock]' -r -F
complete -c vtuber -n "__fish_vtuber_using_subcommand models; and __fish_seen_subcommand_from verify" -l config -d 'Config file for a daemon this command starts, and for `config check`' -r -F
complete -c vtuber -n "__fish_vtuber_using_subcommand models; and __fish_seen_subcommand_from verify" -l json -d 'Print JSON instead of a table'
complete -c vtuber -n "__fish_vtuber_using_subcommand models; and __fish_seen_subcommand_from verify" -s h -l help -d 'Print help'
complete -c vtuber -n "__fish_vtuber_using_subcommand models; and __fish_seen_subcommand_from path" -l socket -d 'Socket of the daemon [default: $XDG_RUNTIME_DIR/vtuber/vtuberd.sock]' -r -F
complete -c vtuber -n "__fish_vtuber_using_subcommand models; and __fish_seen_subcommand_from path" -l config -d 'Config file for a daemon this command starts, and for `config check`' -r -F
complete -c vtuber -n "__fish_vtuber_using_subcommand models; and __fish_seen_subcommand_from path" -l json -d 'Print JSON instead of a table'
complete -c vtuber -n "__fish_vtuber_using_subcommand models; and __fish_seen_subcommand_from path" -s h -l help -d 'Print help'
complete -c vtuber -n "__fish_vtuber_using_subcommand models; and __fish_seen_subcommand_from pull" -l base-url -d 'Ollama\'s address [default: llm.base_url from the config, else http://127.0.0.1:11434]' -r
complete -c vtuber -n "__fish_vtuber_using_subcommand models; and __fish_seen_subcommand_from pull" -l socket -d 'Socket of the daemon [default: $XDG_RUNTIME_DIR/vtuber/vtuberd.sock]' -r -F
complete -c vtuber -n "__fish_vtuber_using_subcommand models; and __fish_seen_subcommand_from pull" -l config -d 'Config file for a daemon this command starts, and for `config check`' -r -F
complete -c vtuber -n "__fish_vtuber_using_subcommand models; and __fish_seen_subcommand_from pull" -s h -l help -d 'Print help'
complete -c vtuber -n "__fish_vtuber_using_subcommand models; and __fish_seen_subcommand_from help" -f -a "list" -d 'List model files with their role, state, size and path'
complete -c vtuber -n "__fish_vtuber_using_subcommand models; and __fish_seen_subcommand_from help" -f -a "verify" -d 'Check every model file\'s SHA-256 (exits 1 when one is missing or damaged)'
complete -c vtuber -n "__fish_vtuber_using_subcommand models; and __fish_seen_subcommand_from help" -f -a "path" -d 'Print the models folder'
complete -c vtuber -n "__fish_vtuber_using_subcommand models; and __fish_seen_subcommand_from help" -f -a "pull" -d 'Download a model into the Ollama server the config names (its /api/pull), with progress; for `llm.provider: ollama`'
complete -c vtuber -n "__fish_vtuber_using_subcommand models; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c vtuber -n "__fish_vtuber_using_subcommand status" -l socket -d 'Socket of the daemon [default: $XDG_RUNTIME_DIR/vtuber/vtuberd.sock]' -r -F
complete -c vtuber -n "__fish_vtuber_using_subcommand status" -l config -d 'Config file for a daemon this command starts, and for `config check`' -r -F
complete -c vtuber -n "__fish_vtuber_using_subcommand status" -l json -d 'Print JSON instead of a table'
complete -c vtuber -n "__fish_vtuber_using_subcommand status" -s h -l help -d 'Print help'
complete -c vtuber -n "__fish_vtuber_using_subcommand characters; and not __fish_seen_subcommand_from list switch import help" -l socket -d 'Socket of the daemon [default: $XDG_RUNTIME_DIR/vtuber/vtuberd.sock]' -r -F
complete -c vtuber -n "__fish_vtuber_using_subcommand characters; and not __fish_seen_subcommand_from list switch import help" -l config -d 'Config file for a daemon this command starts, and for `config check`' -r -F
complete -c vtuber -n "__fish_vtuber_using_subcommand characters; and not __fish_seen_subcommand_from list switch import help" -s h -l help -d 'Print help'
complete -c vtuber -n "__fish_vtuber_using_subcommand characters; and not __fish_seen_subcommand_from list switch import help" -f -a "list" -d 'List the characters the daemon knows (current one marked with *)'
complete -c vtuber -n "__fish_vtuber_using_subcommand characters; and not __fish_seen_subcommand_from list switch import help" -f -a "switch" -d 'Make NAME the current character'
complete -c vtuber -n "__fish_vtuber_using_subcommand characters; and not __fish_seen_subcommand_from list switch import help" -f -a "import" -d 'Convert an Open-LLM-VTuber character (its conf.yaml or characters/*.yaml): prints the character file, or writes it with --write'
complete -c vtuber -n "__fish_vtuber_using_subcommand characters; and not __fish_seen_subcommand_from list switch import help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c vtuber -n "__fish_vtuber_using_subcommand characters; and __fish_seen_subcommand_from list" -l socket -d 'Socket of the daemon [default: $XDG_RUNTIME_DIR/vtuber/vtuberd.sock]' -r -F
complete -c vtuber -n "__fish_vtuber_using_subcommand characters; and __fish_seen_subcommand_from list" -l config -d 'Config file for a daemon this command starts, and for `config check`' -r -F
complete -c vtuber -n "__fish_vtuber_using_subcommand characters; and __fish_seen_subcommand_from list" -l json -d 'Print JSON instead of a table'
complete -c vtuber -n "__fish_vtuber_using_subcommand characters; and __fish_seen_subcommand_from list" -s h -l help -d 'Print help'
complete -c vtuber -n "__fish_vtuber_using_subcommand characters; and __fish_seen_subcommand_from switch" -l socket -d 'Socket of the daemon [default: $XDG_RUNTIME_DIR/vtuber/vtuberd.sock]' -r -F
complete -c vtuber -n "__fish_vtuber_using_subcommand characters; and __fish_seen_subcommand_from switch" -l config -d 'Config file for a daemon this command starts, and for `config check`' -r -F
complete -c vtuber -n "__fish_vtuber_using_subcommand characters; and __fish_seen_subcommand_from switch" -s h -l help -d 'Print help'
complete -c vtuber -n "__fish_vtuber_using_subcommand characters; and __fish_seen_subcommand_from import" -l dir -d 'The character folder to write into (with --write)' -r -F
complete -c vtuber -n "__fish_vtuber_using_subcommand characters; and __fish_seen_subcommand_from import" -l socket -d 'Socket of the daemon [default: $XDG_RUNTIME_DIR/vtuber/vtuberd.sock]' -r -F
complete -c vtuber -n "__fish_vtuber_using_subcommand characters; and __fish_seen_subcommand_from import" -l config -d 'Config file for a daemon this command starts, and for `config check`' -r -F
complete -c vtuber -n "__fish_vtuber_using_subcommand characters; and __fish_seen_subcommand_from import" -l write -d 'Write it to the character folder ($XDG_CONFIG_HOME/vtuber/characters, or --dir) instead of printing it'
complete -c vtuber -n "__fish_vtuber_using_subcommand characters; and __fish_seen_subcommand_from import" -s h -l help -d 'Print help'
complete -c vtuber -n "__fish_vtuber_using_subcommand characters; and __fish_seen_subcommand_from help" -f -a "list" -d 'List the characters the daemon knows (current one marked with *)'
complete -c vtuber -n "__fish_vtuber_using_subcommand characters; and __fish_seen_subcommand_from help" -f -a "switch" -d 'Make NAME the current character'
complete -c vtuber -n "__fish_vtuber_using_subcommand characters; and __fish_seen_subcommand_from help" -f -a "import" -d 'Convert an Open-LLM-VTuber character (its conf.yaml or characters/*.yaml): prints the character file, or writes it with --write'
complete -c vtuber -n "__fish_vtuber_using_subcommand characters; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c vtuber -n "__fish_vtuber_using_subcommand history; and not __fish_seen_subcommand_from list show new load delete export help" -l socket -d 'Socket of the daemon [default: $XDG_RUNTIME_DIR/vtuber/vtuberd.sock]' -r -F
complete -c vtuber -n "__fish_vtuber_using_subcommand history; and not __fish_seen_subcommand_from list show new load delete export help" -l config -d 'Config file for a daemon this command starts, and for `config check`' -r -F
complete -c vtuber -n "__fish_vtuber_using_subcommand history; and not __fish_seen_subcommand_from list show new load delete export help" -s h -l help -d 'Print help'
complete -c vtuber -n "__fish_vtuber_using_subcommand history; and not __fish_seen_subcommand_from list show new load delete export help" -f -a "list" -d 'List conversations, newest first'
complete -c vtuber -n "__fish_vtuber_using_subcommand history; and not __fish_seen_subcommand_from list show new load delete export help" -f -a "show" -d 'Print one conversation as a Markdown transcript'
complete -c vtuber -n "__fish_vtuber_using_subcommand history; and not __fish_seen_subcommand_from list show new load delete export help" -f -a "new" -d 'Start a fresh conversation with the current character'
complete -c vtuber -n "__fish_vtuber_using_subcommand history; and not __fish_seen_subcommand_from list show new load delete export help" -f -a "load" -d 'Make an earlier conversation the current one'
complete -c vtuber -n "__fish_vtuber_using_subcommand history; and not __fish_seen_subcommand_from list show new load delete export help" -f -a "delete" -d 'Delete a conversation for good'
complete -c vtuber -n "__fish_vtuber_using_subcommand history; and not __fish_seen_subcommand_from list show new load delete export help" -f -a "export" -d 'Write a conversation as Markdown or JSON'
complete -c vtuber -n "__fish_vtuber_using_subcommand history; and not __fish_seen_subcommand_from list show new load delete export help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c vtuber -n "__fish_vtuber_using_subcommand history; and __fish_seen_subcommand_from list" -l character -d 'Only this character\'s conversations' -r
complete -c vtuber -n "__fish_vtuber_using_subcommand history; and __fish_seen_subcommand_from list" -l socket -d 'Socket of the daemon [default: $XDG_RUNTIME_DIR/vtuber/vtuberd.sock]' -r -F
complete -c vtuber -n "__fish_vtuber_using_subcommand history; and __fish_seen_subcommand_from list" -l config -d 'Config file for a daemon this command starts, and for `config check`' -r -F
complete -c vtuber -n "__fish_vtuber_using_subcommand history; and __fish_seen_subcommand_from list" -l json -d 'Print JSON instead of a table'
complete -c vtuber -n "__fish_vtuber_using_subcommand history; and __fish_seen_subcommand_from list" -s h -l help -d 'Print help'
complete -c vtuber -n "__fish_vtuber_using_subcommand history; and __fish_seen_subcommand_from show" -l socket -d 'Socket of the daemon [default: $XDG_RUNTIME_DIR/vtuber/vtuberd.sock]' -r -F
complete -c vtuber -n "__fish_vtuber_using_subcommand history; and __fish_seen_subcommand_from show" -l config -d 'Config file for a daemon this command starts, and for `config check`' -r -F
complete -c vtuber -n "__fish_vtuber_using_subcommand history; and __fish_seen_subcommand_from show" -l json -d 'Print the conversation and its messages as JSON'
complete -c vtuber -n "__fish_vtuber_using_subcommand history; and __fish_seen_subcommand_from show" -s h -l help -d 'Print help'
complete -c vtuber -n "__fish_vtuber_using_subcommand history; and __fish_seen_subcommand_from new" -l socket -d 'Socket of the daemon [default: $XDG_RUNTIME_DIR/vtuber/vtuberd.sock]' -r -F
complete -c vtuber -n "__fish_vtuber_using_subcommand history; and __fish_seen_subcommand_from new" -l config -d 'Config file for a daemon this command starts, and for `config check`' -r -F
complete -c vtuber -n "__fish_vtuber_using_subcommand history; and __fish_seen_subcommand_from new" -s h -l help -d 'Print help'
complete -c vtuber -n "__fish_vtuber_using_subcommand history; and __fish_seen_subcommand_from load" -l socket -d 'Socket of the daemon [default: $XDG_RUNTIME_DIR/vtuber/vtuberd.sock]' -r -F
complete -c vtuber -n "__fish_vtuber_using_subcommand history; and __fish_seen_subcommand_from load" -l config -d 'Config file for a daemon this command starts, and for `config check`' -r -F
complete -c vtuber -n "__fish_vtuber_using_subcommand history; and __fish_seen_subcommand_from load" -s h -l help -d 'Print help'
complete -c vtuber -n "__fish_vtuber_using_subcommand history; and __fish_seen_subcommand_from delete" -l socket -d 'Socket of the daemon [default: $XDG_RUNTIME_DIR/vtuber/vtuberd.sock]' -r -F
complete -c vtuber -n "__fish_vtuber_using_subcommand history; and __fish_seen_subcommand_from delete" -l config -d 'Config file for a daemon this command starts, and for `config check`' -r -F
complete -c vtuber -n "__fish_vtuber_using_subcommand history; and __fish_seen_subcommand_from delete" -s h -l help -d 'Print help'
complete -c vtuber -n "__fish_vtuber_using_subcommand history; and __fish_seen_subcommand_from export" -l format -d 'Output format' -r -f -a "md\t'A readable Markdown transcript'
json\t'The conversation and its messages as JSON'"
complete -c vtuber -n "__fish_vtuber_using_subcommand history; and __fish_seen_subcommand_from export" -s o -l output -d 'Write to FILE instead of standard output' -r -F
complete -c vtuber -n "__fish_vtuber_using_subcommand history; and __fish_seen_subcommand_from export" -l socket -d 'Socket of the daemon [default: $XDG_RUNTIME_DIR/vtuber/vtuberd.sock]' -r -F
complete -c vtuber -n "__fish_vtuber_using_subcommand history; and __fish_seen_subcommand_from export" -l config -d 'Config file for a daemon this command starts, and for `config check`' -r -F
complete -c vtuber -n "__fish_vtuber_using_subcommand history; and __fish_seen_subcommand_from export" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c vtuber -n "__fish_vtuber_using_subcommand history; and __fish_seen_subcommand_from help" -f -a "list" -d 'List conversations, newest first'
complete -c vtuber -n "__fish_vtuber_using_subcommand history; and __fish_seen_subcommand_from help" -f -a "show" -d 'Print one conversation as a Markdown transcript'
complete -c vtuber -n "__fish_vtuber_using_subcommand history; and __fish_seen_subcommand_from help" -f -a "new" -d 'Start a fresh conversation with the current character'
complete -c vtuber -n "__fish_vtuber_using_subcommand history; and __fish_seen_subcommand_from help" -f -a "load" -d 'Make an earlier conversation the current one'
complete -c vtuber -n "__fish_vtuber_using_subcommand history; and __fish_seen_subcommand_from help" -f -a "delete" -d 'Delete a conversation for good'
complete -c vtuber -n "__fish_vtuber_using_subcommand history; and __fish_seen_subcommand_from help" -f -a "export" -d 'Write a conversation as Markdown or JSON'
complete -c vtuber -n "__fish_vtuber_using_subcommand history; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c vtuber -n "__fish_vtuber_using_subcommand config; and not __fish_seen_subcommand_from check show help" -l socket -d 'Socket of the daemon [default: $XDG_RUNTIME_DIR/vtuber/vtuberd.sock]' -r -F
complete -c vtuber -n "__fish_vtuber_using_subcommand config; and not __fish_seen_subcommand_from check show help" -l config -d 'Config file for a daemon this command starts, and for `config check`' -r -F
complete -c vtuber -n "__fish_vtuber_using_subcommand config; and not __fish_seen_subcommand_from check show help" -s h -l help -d 'Print help'
complete -c vtuber -n "__fish_vtuber_using_subcommand config; and not __fish_seen_subcommand_from check show help" -f -a "check" -d 'Check a config file with `vtuberd --check-config` (exits 1 when invalid)'
complete -c vtuber -n "__fish_vtuber_using_subcommand config; and not __fish_seen_subcommand_from check show help" -f -a "show" -d 'Print the configuration: conf.yaml, then conf.d/*.yaml in name order, then the profile\'s conf.NAME.yaml, merged, each value with the file and line it comes from (secrets masked)'
complete -c vtuber -n "__fish_vtuber_using_subcommand config; and not __fish_seen_subcommand_from check show help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c vtuber -n "__fish_vtuber_using_subcommand config; and __fish_seen_subcommand_from check" -s p -l profile -d 'Also check conf.NAME.yaml beside it' -r
complete -c vtuber -n "__fish_vtuber_using_subcommand config; and __fish_seen_subcommand_from check" -l socket -d 'Socket of the daemon [default: $XDG_RUNTIME_DIR/vtuber/vtuberd.sock]' -r -F
complete -c vtuber -n "__fish_vtuber_using_subcommand config; and __fish_seen_subcommand_from check" -l config -d 'Config file for a daemon this command starts, and for `config check`' -r -F
complete -c vtuber -n "__fish_vtuber_using_subcommand config; and __fish_seen_subcommand_from check" -s h -l help -d 'Print help'
complete -c vtuber -n "__fish_vtuber_using_subcommand config; and __fish_seen_subcommand_from show" -s p -l profile -d 'Add conf.NAME.yaml beside conf.yaml' -r
complete -c vtuber -n "__fish_vtuber_using_subcommand config; and __fish_seen_subcommand_from show" -l socket -d 'Socket of the daemon [default: $XDG_RUNTIME_DIR/vtuber/vtuberd.sock]' -r -F
complete -c vtuber -n "__fish_vtuber_using_subcommand config; and __fish_seen_subcommand_from show" -l config -d 'Config file for a daemon this command starts, and for `config check`' -r -F
complete -c vtuber -n "__fish_vtuber_using_subcommand config; and __fish_seen_subcommand_from show" -l effective -d 'Every value the daemon runs with, defaults included (without it: only what the files set)'
complete -c vtuber -n "__fish_vtuber_using_subcommand config; and __fish_seen_subcommand_from show" -s h -l help -d 'Print help'
complete -c vtuber -n "__fish_vtuber_using_subcommand config; and __fish_seen_subcommand_from help" -f -a "check" -d 'Check a config file with `vtuberd --check-config` (exits 1 when invalid)'
complete -c vtuber -n "__fish_vtuber_using_subcommand config; and __fish_seen_subcommand_from help" -f -a "show" -d 'Print the configuration: conf.yaml, then conf.d/*.yaml in name order, then the profile\'s conf.NAME.yaml, merged, each value with the file and line it comes from (secrets masked)'
complete -c vtuber -n "__fish_vtuber_using_subcommand config; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c vtuber -n "__fish_vtuber_using_subcommand daemon; and not __fish_seen_subcommand_from start stop restart status reload install uninstall logs help" -l socket -d 'Socket of the daemon [default: $XDG_RUNTIME_DIR/vtuber/vtuberd.sock]' -r -F
complete -c vtuber -n "__fish_vtuber_using_subcommand daemon; and not __fish_seen_subcommand_from start stop restart status reload install uninstall logs help" -l config -d 'Config file for a daemon this command starts, and for `config check`' -r -F
complete -c vtuber -n "__fish_vtuber_using_subcommand daemon; and not __fish_seen_subcommand_from start stop restart status reload install uninstall logs help" -s h -l help -d 'Print help'
complete -c vtuber -n "__fish_vtuber_using_subcommand daemon; and not __fish_seen_subcommand_from start stop restart status reload install uninstall logs help" -f -a "start" -d 'Start vtuberd in the background'
complete -c vtuber -n "__fish_vtuber_using_subcommand daemon; and not __fish_seen_subcommand_from start stop restart status reload install uninstall logs help" -f -a "stop" -d 'Ask vtuberd to exit and wait until it has'
complete -c vtuber -n "__fish_vtuber_using_subcommand daemon; and not __fish_seen_subcommand_from start stop restart status reload install uninstall logs help" -f -a "restart" -d 'Stop vtuberd (if running), then start it'
complete -c vtuber -n "__fish_vtuber_using_subcommand daemon; and not __fish_seen_subcommand_from start stop restart status reload install uninstall logs help" -f -a "status" -d 'Say whether vtuberd is running (exits 3 when not)'
complete -c vtuber -n "__fish_vtuber_using_subcommand daemon; and not __fish_seen_subcommand_from start stop restart status reload install uninstall logs help" -f -a "reload" -d 'Re-read the configuration files and the characters and apply what can change live (as SIGHUP does); a file with a mistake changes nothing and is reported (exit 1)'
complete -c vtuber -n "__fish_vtuber_using_subcommand daemon; and not __fish_seen_subcommand_from start stop restart status reload install uninstall logs help" -f -a "install" -d 'Run vtuberd as a systemd user service: write ~/.config/systemd/user/vtuberd.service and enable it'
complete -c vtuber -n "__fish_vtuber_using_subcommand daemon; and not __fish_seen_subcommand_from start stop restart status reload install uninstall logs help" -f -a "uninstall" -d 'Disable and remove the systemd user service (with --system: the user\'s instance of the system template, and the template once no instance is left)'
complete -c vtuber -n "__fish_vtuber_using_subcommand daemon; and not __fish_seen_subcommand_from start stop restart status reload install uninstall logs help" -f -a "logs" -d 'Show the daemon\'s log: the journal for the service, else the file `vtuber` starts it with'
complete -c vtuber -n "__fish_vtuber_using_subcommand daemon; and not __fish_seen_subcommand_from start stop restart status reload install uninstall logs help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c vtuber -n "__fish_vtuber_using_subcommand daemon; and __fish_seen_subcommand_from start" -l socket -d 'Socket of the daemon [default: $XDG_RUNTIME_DIR/vtuber/vtuberd.sock]' -r -F
complete -c vtuber -n "__fish_vtuber_using_subcommand daemon; and __fish_seen_subcommand_from start" -l config -d 'Config file for a daemon this command starts, and for `config check`' -r -F
complete -c vtuber -n "__fish_vtuber_using_subcommand daemon; and __fish_seen_subcommand_from start" -s h -l help -d 'Print help'
complete -c vtuber -n "__fish_vtuber_using_subcommand daemon; and __fish_seen_subcommand_from stop" -l socket -d 'Socket of the daemon [default: $XDG_RUNTIME_DIR/vtuber/vtuberd.sock]' -r -F
complete -c vtuber -n "__fish_vtuber_using_subcommand daemon; and __fish_seen_subcommand_from stop" -l config -d 'Config file for a daemon this command starts, and for `config check`' -r -F
complete -c vtuber -n "__fish_vtuber_using_subcommand daemon; and __fish_seen_subcommand_from stop" -s h -l help -d 'Print help'
complete -c vtuber -n "__fish_vtuber_using_subcommand daemon; and __fish_seen_subcommand_from restart" -l socket -d 'Socket of the daemon [default: $XDG_RUNTIME_DIR/vtuber/vtuberd.sock]' -r -F
complete -c vtuber -n "__fish_vtuber_using_subcommand daemon; and __fish_seen_subcommand_from restart" -l config -d 'Config file for a daemon this command starts, and for `config check`' -r -F
complete -c vtuber -n "__fish_vtuber_using_subcommand daemon; and __fish_seen_subcommand_from restart" -s h -l help -d 'Print help'
complete -c vtuber -n "__fish_vtuber_using_subcommand daemon; and __fish_seen_subcommand_from status" -l socket -d 'Socket of the daemon [default: $XDG_RUNTIME_DIR/vtuber/vtuberd.sock]' -r -F
complete -c vtuber -n "__fish_vtuber_using_subcommand daemon; and __fish_seen_subcommand_from status" -l config -d 'Config file for a daemon this command starts, and for `config check`' -r -F
complete -c vtuber -n "__fish_vtuber_using_subcommand daemon; and __fish_seen_subcommand_from status" -s h -l help -d 'Print help'
complete -c vtuber -n "__fish_vtuber_using_subcommand daemon; and __fish_seen_subcommand_from reload" -l socket -d 'Socket of the daemon [default: $XDG_RUNTIME_DIR/vtuber/vtuberd.sock]' -r -F
complete -c vtuber -n "__fish_vtuber_using_subcommand daemon; and __fish_seen_subcommand_from reload" -l config -d 'Config file for a daemon this command starts, and for `config check`' -r -F
complete -c vtuber -n "__fish_vtuber_using_subcommand daemon; and __fish_seen_subcommand_from reload" -s h -l help -d 'Print help'
complete -c vtuber -n "__fish_vtuber_using_subcommand daemon; and __fish_seen_subcommand_from install" -l for -d 'With --system: the user vtuberd runs as (default: the one who ran sudo)' -r
complete -c vtuber -n "__fish_vtuber_using_subcommand daemon; and __fish_seen_subcommand_from install" -l socket -d 'Socket of the daemon [default: $XDG_RUNTIME_DIR/vtuber/vtuberd.sock]' -r -F
complete -c vtuber -n "__fish_vtuber_using_subcommand daemon; and __fish_seen_subcommand_from install" -l config -d 'Config file for a daemon this command starts, and for `config check`' -r -F
complete -c vtuber -n "__fish_vtuber_using_subcommand daemon; and __fish_seen_subcommand_from install" -l print -d 'Print the unit instead of installing it'
complete -c vtuber -n "__fish_vtuber_using_subcommand daemon; and __fish_seen_subcommand_from install" -l system -d 'Install the system template vtuberd@.service instead of the user unit'
complete -c vtuber -n "__fish_vtuber_using_subcommand daemon; and __fish_seen_subcommand_from install" -l socket-activation -d 'Also install socket units (vtuberd.socket, and vtuberd-web.socket for the web port in the configuration): systemd opens them and starts vtuberd on the first connection, so clients can connect before the daemon is up'
complete -c vtuber -n "__fish_vtuber_using_subcommand daemon; and __fish_seen_subcommand_from install" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c vtuber -n "__fish_vtuber_using_subcommand daemon; and __fish_seen_subcommand_from uninstall" -l for -d 'With --system: the user whose instance goes (default: the one who ran sudo)' -r
complete -c vtuber -n "__fish_vtuber_using_subcommand daemon; and __fish_seen_subcommand_from uninstall" -l socket -d 'Socket of the daemon [default: $XDG_RUNTIME_DIR/vtuber/vtuberd.sock]' -r -F
complete -c vtuber -n "__fish_vtuber_using_subcommand daemon; and __fish_seen_subcommand_from uninstall" -l config -d 'Config file for a daemon this command starts, and for `config check`' -r -F
complete -c vtuber -n "__fish_vtuber_using_subcommand daemon; and __fish_seen_subcommand_from uninstall" -l system -d 'Remove the system service vtuberd@USER instead of the user unit'
complete -c vtuber -n "__fish_vtuber_using_subcommand daemon; and __fish_seen_subcommand_from uninstall" -s h -l help -d 'Print help'
complete -c vtuber -n "__fish_vtuber_using_subcommand daemon; and __fish_seen_subcommand_from logs" -s n -l lines -d 'How many of the last lines to show first' -r
complete -c vtuber -n "__fish_vtuber_using_subcommand daemon; and __fish_seen_subcommand_from logs" -l socket -d 'Socket of the daemon [default: $XDG_RUNTIME_DIR/vtuber/vtuberd.sock]' -r -F
complete -c vtuber -n "__fish_vtuber_using_subcommand daemon; and __fish_seen_subcommand_from logs" -l config -d 'Config file for a daemon this command starts, and for `config check`' -r -F
complete -c vtuber -n "__fish_vtuber_using_subcommand daemon; and __fish_seen_subcommand_from logs" -s f -l follow -d 'Keep printing new lines as they come'
complete -c vtuber -n "__fish_vtuber_using_subcommand daemon; and __fish_seen_subcommand_from logs" -s h -l help -d 'Print help'
complete -c vtuber -n "__fish_vtuber_using_subcommand daemon; and __fish_seen_subcommand_from help" -f -a "start" -d 'Start vtuberd in the background'
complete -c vtuber -n "__fish_vtuber_using_subcommand daemon; and __fish_seen_subcommand_from help" -f -a "stop" -d 'Ask vtuberd to exit and wait until it has'
complete -c vtuber -n "__fish_vtuber_using_subcommand daemon; and __fish_seen_subcommand_from help" -f -a "restart" -d 'Stop vtuberd (if running), then start it'
complete -c vtuber -n "__fish_vtuber_using_subcommand daemon; and __fish_seen_subcommand_from help" -f -a "status" -d 'Say whether vtuberd is running (exits 3 when not)'
complete -c vtuber -n "__fish_vtuber_using_subcommand daemon; and __fish_seen_subcommand_from help" -f -a "reload" -d 'Re-read the configuration files and the characters and apply what can change live (as SIGHUP does); a file with a mistake changes nothing and is reported (exit 1)'
complete -c vtuber -n "__fish_vtuber_using_subcommand daemon; and __fish_seen_subcommand_from help" -f -a "install" -d 'Run vtuberd as a systemd user service: write ~/.config/systemd/user/vtuberd.service and enable it'
complete -c vtuber -n "__fish_vtuber_using_subcommand daemon; and __fish_seen_subcommand_from help" -f -a "uninstall" -d 'Disable and remove the systemd user service (with --system: the user\'s instance of the system template, and the template once no instance is left)'
complete -c vtuber -n "__fish_vtuber_using_subcommand daemon; and __fish_seen_subcommand_from help" -f -a "logs" -d 'Show the daemon\'s log: the journal for the service, else the file `vtuber` starts it with'
complete -c vtuber -n "__fish_vtuber_using_subcommand daemon; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c vtuber -n "__fish_vtuber_using_subcommand mcp; and not __fish_seen_subcommand_from list tools restart audit import help" -l socket -d 'Socket of the daemon [default: $XDG_RUNTIME_DIR/vtuber/vtuberd.sock]' -r -F
complete -c vtuber -n "__fish_vtuber_using_subcommand mcp; and not __fish_seen_subcommand_from list tools restart audit import help" -l config -d 'Config file for a daemon this command starts, and for `config check`' -r -F
complete -c vtuber -n "__fish_vtuber_using_subcommand mcp; and not __fish_seen_subcommand_from list tools restart audit import help" -s h -l help -d 'Print help'
complete -c vtuber -n "__fish_vtuber_using_subcommand mcp; and not __fish_seen_subcommand_from list tools restart audit import help" -f -a "list" -d 'List the configured MCP servers: transport, state, tools and sandbox'
complete -c vtuber -n "__fish_vtuber_using_subcommand mcp; and not __fish_seen_subcommand_from list tools restart audit import help" -f -a "tools" -d 'List the tools offered to the LLM, with their policy'
complete -c vtuber -n "__fish_vtuber_using_subcommand mcp; and not __fish_seen_subcommand_from list tools restart audit import help" -f -a "restart" -d 'Stop and start one MCP server again (also re-enables one that gave up)'
complete -c vtuber -n "__fish_vtuber_using_subcommand mcp; and not __fish_seen_subcommand_from list tools restart audit import help" -f -a "audit" -d 'Show tool calls from the audit log, newest first'
complete -c vtuber -n "__fish_vtuber_using_subcommand mcp; and not __fish_seen_subcommand_from list tools restart audit import help" -f -a "import" -d 'Convert a Claude Desktop style MCP server list into vtuber\'s config YAML'
complete -c vtuber -n "__fish_vtuber_using_subcommand mcp; and not __fish_seen_subcommand_from list tools restart audit import help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c vtuber -n "__fish_vtuber_using_subcommand mcp; and __fish_seen_subcommand_from list" -l socket -d 'Socket of the daemon [default: $XDG_RUNTIME_DIR/vtuber/vtuberd.sock]' -r -F
complete -c vtuber -n "__fish_vtuber_using_subcommand mcp; and __fish_seen_subcommand_from list" -l config -d 'Config file for a daemon this command starts, and for `config check`' -r -F
complete -c vtuber -n "__fish_vtuber_using_subcommand mcp; and __fish_seen_subcommand_from list" -l json -d 'Print JSON instead of a table'
complete -c vtuber -n "__fish_vtuber_using_subcommand mcp; and __fish_seen_subcommand_from list" -s h -l help -d 'Print help'
complete -c vtuber -n "__fish_vtuber_using_subcommand mcp; and __fish_seen_subcommand_from tools" -l socket -d 'Socket of the daemon [default: $XDG_RUNTIME_DIR/vtuber/vtuberd.sock]' -r -F
complete -c vtuber -n "__fish_vtuber_using_subcommand mcp; and __fish_seen_subcommand_from tools" -l config -d 'Config file for a daemon this command starts, and for `config check`' -r -F
complete -c vtuber -n "__fish_vtuber_using_subcommand mcp; and __fish_seen_subcommand_from tools" -l json -d 'Print JSON instead of a table'
complete -c vtuber -n "__fish_vtuber_using_subcommand mcp; and __fish_seen_subcommand_from tools" -s h -l help -d 'Print help'
complete -c vtuber -n "__fish_vtuber_using_subcommand mcp; and __fish_seen_subcommand_from restart" -l socket -d 'Socket of the daemon [default: $XDG_RUNTIME_DIR/vtuber/vtuberd.sock]' -r -F
complete -c vtuber -n "__fish_vtuber_using_subcommand mcp; and __fish_seen_subcommand_from restart" -l config -d 'Config file for a daemon this command starts, and for `config check`' -r -F
complete -c vtuber -n "__fish_vtuber_using_subcommand mcp; and __fish_seen_subcommand_from restart" -s h -l help -d 'Print help'
complete -c vtuber -n "__fish_vtuber_using_subcommand mcp; and __fish_seen_subcommand_from audit" -l since -d 'Only calls since TIME: a duration back (10m, 2h, 1d), an RFC 3339 time, or `YYYY-MM-DD HH:MM` in UTC' -r
complete -c vtuber -n "__fish_vtuber_using_subcommand mcp; and __fish_seen_subcommand_from audit" -l limit -d 'At most N calls' -r
complete -c vtuber -n "__fish_vtuber_using_subcommand mcp; and __fish_seen_subcommand_from audit" -l socket -d 'Socket of the daemon [default: $XDG_RUNTIME_DIR/vtuber/vtuberd.sock]' -r -F
complete -c vtuber -n "__fish_vtuber_using_subcommand mcp; and __fish_seen_subcommand_from audit" -l config -d 'Config file for a daemon this command starts, and for `config check`' -r -F
complete -c vtuber -n "__fish_vtuber_using_subcommand mcp; and __fish_seen_subcommand_from audit" -l json -d 'Print JSON instead of a table'
complete -c vtuber -n "__fish_vtuber_using_subcommand mcp; and __fish_seen_subcommand_from audit" -s h -l help -d 'Print help'
complete -c vtuber -n "__fish_vtuber_using_subcommand mcp; and __fish_seen_subcommand_from import" -l socket -d 'Socket of the daemon [default: $XDG_RUNTIME_DIR/vtuber/vtuberd.sock]' -r -F
complete -c vtuber -n "__fish_vtuber_using_subcommand mcp; and __fish_seen_subcommand_from import" -l config -d 'Config file for a daemon this command starts, and for `config check`' -r -F
complete -c vtuber -n "__fish_vtuber_using_subcommand mcp; and __fish_seen_subcommand_from import" -l write -d 'Append the block to the config file (--config, $VTUBER_CONFIG, else $XDG_CONFIG_HOME/vtuber/conf.yaml) when it has no `mcp:` section yet'
complete -c vtuber -n "__fish_vtuber_using_subcommand mcp; and __fish_seen_subcommand_from import" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c vtuber -n "__fish_vtuber_using_subcommand mcp; and __fish_seen_subcommand_from help" -f -a "list" -d 'List the configured MCP servers: transport, state, tools and sandbox'
complete -c vtuber -n "__fish_vtuber_using_subcommand mcp; and __fish_seen_subcommand_from help" -f -a "tools" -d 'List the tools offered to the LLM, with their policy'
complete -c vtuber -n "__fish_vtuber_using_subcommand mcp; and __fish_seen_subcommand_from help" -f -a "restart" -d 'Stop and start one MCP server again (also re-enables one that gave up)'
complete -c vtuber -n "__fish_vtuber_using_subcommand mcp; and __fish_seen_subcommand_from help" -f -a "audit" -d 'Show tool calls from the audit log, newest first'
complete -c vtuber -n "__fish_vtuber_using_subcommand mcp; and __fish_seen_subcommand_from help" -f -a "import" -d 'Convert a Claude Desktop style MCP server list into vtuber\'s config YAML'
complete -c vtuber -n "__fish_vtuber_using_subcommand mcp; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c vtuber -n "__fish_vtuber_using_subcommand web; and not __fish_seen_subcommand_from url help" -l socket -d 'Socket of the daemon [default: $XDG_RUNTIME_DIR/vtuber/vtuberd.sock]' -r -F
complete -c vtuber -n "__fish_vtuber_using_subcommand web; and not __fish_seen_subcommand_from url help" -l config -d 'Config file for a daemon this command starts, and for `config check`' -r -F
complete -c vtuber -n "__fish_vtuber_using_subcommand web; and not __fish_seen_subcommand_from url help" -s h -l help -d 'Print help'
complete -c vtuber -n "__fish_vtuber_using_subcommand web; and not __fish_seen_subcommand_from url help" -f -a "url" -d 'Print the page\'s address with its access token (exits 1 when there is no page)'
complete -c vtuber -n "__fish_vtuber_using_subcommand web; and not __fish_seen_subcommand_from url help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c vtuber -n "__fish_vtuber_using_subcommand web; and __fish_seen_subcommand_from url" -l socket -d 'Socket of the daemon [default: $XDG_RUNTIME_DIR/vtuber/vtuberd.sock]' -r -F
complete -c vtuber -n "__fish_vtuber_using_subcommand web; and __fish_seen_subcommand_from url" -l config -d 'Config file for a daemon this command starts, and for `config check`' -r -F
complete -c vtuber -n "__fish_vtuber_using_subcommand web; and __fish_seen_subcommand_from url" -l json -d 'Print {"web_url": ..., "web_auth": ...} as JSON'
complete -c vtuber -n "__fish_vtuber_using_subcommand web; and __fish_seen_subcommand_from url" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c vtuber -n "__fish_vtuber_using_subcommand web; and __fish_seen_subcommand_from help" -f -a "url" -d 'Print the page\'s address with its access token (exits 1 when there is no page)'
complete -c vtuber -n "__fish_vtuber_using_subcommand web; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c vtuber -n "__fish_vtuber_using_subcommand completions" -l socket -d 'Socket of the daemon [default: $XDG_RUNTIME_DIR/vtuber/vtuberd.sock]' -r -F
complete -c vtuber -n "__fish_vtuber_using_subcommand completions" -l config -d 'Config file for a daemon this command starts, and for `config check`' -r -F
complete -c vtuber -n "__fish_vtuber_using_subcommand completions" -s h -l help -d 'Print help'
complete -c vtuber -n "__fish_vtuber_using_subcommand man" -s o -l out-dir -d 'Directory to write vtuber.1 and vtuber-*.1 into' -r -F
complete -c vtuber -n "__fish_vtuber_using_subcommand man" -l socket -d 'Socket of the daemon [default: $XDG_RUNTIME_DIR/vtuber/vtuberd.sock]' -r -F
complete -c vtuber -n "__fish_vtuber_using_subcommand man" -l config -d 'Config file for a daemon this command starts, and for `config check`' -r -F
complete -c vtuber -n "__fish_vtuber_using_subcommand man" -s h -l help -d 'Print help'
complete -c vtuber -n "__fish_vtuber_using_subcommand help; and not __fish_seen_subcommand_from chat say listen speak models status characters history config daemon mcp web completions man help" -f -a "chat" -d 'Open the chat (the default): streaming replies, history, daemon status'
complete -c vtuber -n "__fish_vtuber_using_subcommand help; and not __fish_seen_subcommand_from chat say listen speak models status characters history config daemon mcp web completions man help" -f -a "say" -d 'Send one message and print the reply as it streams in'
complete -c vtuber -n "__fish_vtuber_using_subcommand help; and not __fish_seen_subcommand_from chat say listen speak models status characters history config daemon mcp web completions man help" -f -a "listen" -d 'Feed a WAV file to the character as if spoken, and print the reply'
complete -c vtuber -n "__fish_vtuber_using_subcommand help; and not __fish_seen_subcommand_from chat say listen speak models status characters history config daemon mcp web completions man help" -f -a "speak" -d 'Synthesize TEXT in the current character\'s voice into a WAV file'
complete -c vtuber -n "__fish_vtuber_using_subcommand help; and not __fish_seen_subcommand_from chat say listen speak models status characters history config daemon mcp web completions man help" -f -a "models" -d 'Show the speech and language model files: where, how big, intact or not'
complete -c vtuber -n "__fish_vtuber_using_subcommand help; and not __fish_seen_subcommand_from chat say listen speak models status characters history config daemon mcp web completions man help" -f -a "status" -d 'Show what the daemon is doing (exits 3 when it is not running)'
complete -c vtuber -n "__fish_vtuber_using_subcommand help; and not __fish_seen_subcommand_from chat say listen speak models status characters history config daemon mcp web completions man help" -f -a "characters" -d 'List or switch characters'
complete -c vtuber -n "__fish_vtuber_using_subcommand help; and not __fish_seen_subcommand_from chat say listen speak models status characters history config daemon mcp web completions man help" -f -a "history" -d 'Browse, switch, delete and export conversations'
complete -c vtuber -n "__fish_vtuber_using_subcommand help; and not __fish_seen_subcommand_from chat say listen speak models status characters history config daemon mcp web completions man help" -f -a "config" -d 'Validate configuration'
complete -c vtuber -n "__fish_vtuber_using_subcommand help; and not __fish_seen_subcommand_from chat say listen speak models status characters history config daemon mcp web completions man help" -f -a "daemon" -d 'Start, stop or inspect the daemon'
complete -c vtuber -n "__fish_vtuber_using_subcommand help; and not __fish_seen_subcommand_from chat say listen speak models status characters history config daemon mcp web completions man help" -f -a "mcp" -d 'Inspect the MCP tool servers, their tools and the tool-call audit log'
complete -c vtuber -n "__fish_vtuber_using_subcommand help; and not __fish_seen_subcommand_from chat say listen speak models status characters history config daemon mcp web completions man help" -f -a "web" -d 'The browser page: print its address, with its access token'
complete -c vtuber -n "__fish_vtuber_using_subcommand help; and not __fish_seen_subcommand_from chat say listen speak models status characters history config daemon mcp web completions man help" -f -a "completions" -d 'Print a shell completion script'
complete -c vtuber -n "__fish_vtuber_using_subcommand help; and not __fish_seen_subcommand_from chat say listen speak models status characters history config daemon mcp web completions man help" -f -a "man" -d 'Print the man page, or write it (and one page per command) into a directory'
complete -c vtuber -n "__fish_vtuber_using_subcommand help; and not __fish_seen_subcommand_from chat say listen speak models status characters history config daemon mcp web completions man help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c vtuber -n "__fish_vtuber_using_subcommand help; and __fish_seen_subcommand_from models" -f -a "list" -d 'List model files with their role, state, size and path'
complete -c vtuber -n "__fish_vtuber_using_subcommand help; and __fish_seen_subcommand_from models" -f -a "verify" -d 'Check every model file\'s SHA-256 (exits 1 when one is missing or damaged)'
complete -c vtuber -n "__fish_vtuber_using_subcommand help; and __fish_seen_subcommand_from models" -f -a "path" -d 'Print the models folder'
complete -c vtuber -n "__fish_vtuber_using_subcommand help; and __fish_seen_subcommand_from models" -f -a "pull" -d 'Download a model into the Ollama server the config names (its /api/pull), with progress; for `llm.provider: ollama`'
complete -c vtuber -n "__fish_vtuber_using_subcommand help; and __fish_seen_subcommand_from characters" -f -a "list" -d 'List the characters the daemon knows (current one marked with *)'
complete -c vtuber -n "__fish_vtuber_using_subcommand help; and __fish_seen_subcommand_from characters" -f -a "switch" -d 'Make NAME the current character'
complete -c vtuber -n "__fish_vtuber_using_subcommand help; and __fish_seen_subcommand_from characters" -f -a "import" -d 'Convert an Open-LLM-VTuber character (its conf.yaml or characters/*.yaml): prints the character file, or writes it with --write'
complete -c vtuber -n "__fish_vtuber_using_subcommand help; and __fish_seen_subcommand_from history" -f -a "list" -d 'List conversations, newest first'
complete -c vtuber -n "__fish_vtuber_using_subcommand help; and __fish_seen_subcommand_from history" -f -a "show" -d 'Print one conversation as a Markdown transcript'
complete -c vtuber -n "__fish_vtuber_using_subcommand help; and __fish_seen_subcommand_from history" -f -a "new" -d 'Start a fresh conversation with the current character'
complete -c vtuber -n "__fish_vtuber_using_subcommand help; and __fish_seen_subcommand_from history" -f -a "load" -d 'Make an earlier conversation the current one'
complete -c vtuber -n "__fish_vtuber_using_subcommand help; and __fish_seen_subcommand_from history" -f -a "delete" -d 'Delete a conversation for good'
complete -c vtuber -n "__fish_vtuber_using_subcommand help; and __fish_seen_subcommand_from history" -f -a "export" -d 'Write a conversation as Markdown or JSON'
complete -c vtuber -n "__fish_vtuber_using_subcommand help; and __fish_seen_subcommand_from config" -f -a "check" -d 'Check a config file with `vtuberd --check-config` (exits 1 when invalid)'
complete -c vtuber -n "__fish_vtuber_using_subcommand help; and __fish_seen_subcommand_from config" -f -a "show" -d 'Print the configuration: conf.yaml, then conf.d/*.yaml in name order, then the profile\'s conf.NAME.yaml, merged, each value with the file and line it comes from (secrets masked)'
complete -c vtuber -n "__fish_vtuber_using_subcommand help; and __fish_seen_subcommand_from daemon" -f -a "start" -d 'Start vtuberd in the background'
complete -c vtuber -n "__fish_vtuber_using_subcommand help; and __fish_seen_subcommand_from daemon" -f -a "stop" -d 'Ask vtuberd to exit and wait until it has'
complete -c vtuber -n "__fish_vtuber_using_subcommand help; and __fish_seen_subcommand_from daemon" -f -a "restart" -d 'Stop vtuberd (if running), then start it'
complete -c vtuber -n "__fish_vtuber_using_subcommand help; and __fish_seen_subcommand_from daemon" -f -a "status" -d 'Say whether vtuberd is running (exits 3 when not)'
complete -c vtuber -n "__fish_vtuber_using_subcommand help; and __fish_seen_subcommand_from daemon" -f -a "reload" -d 'Re-read the configuration files and the characters and apply what can change live (as SIGHUP does); a file with a mistake changes nothing and is reported (exit 1)'
complete -c vtuber -n "__fish_vtuber_using_subcommand help; and __fish_seen_subcommand_from daemon" -f -a "install" -d 'Run vtuberd as a systemd user service: write ~/.config/systemd/user/vtuberd.service and enable it'
complete -c vtuber -n "__fish_vtuber_using_subcommand help; and __fish_seen_subcommand_from daemon" -f -a "uninstall" -d 'Disable and remove the systemd user service (with --system: the user\'s instance of the system template, and the template once no instance is left)'
complete -c vtuber -n "__fish_vtuber_using_subcommand help; and __fish_seen_subcommand_from daemon" -f -a "logs" -d 'Show the daemon\'s log: the journal for the service, else the file `vtuber` starts it with'
complete -c vtuber -n "__fish_vtuber_using_subcommand help; and __fish_seen_subcommand_from mcp" -f -a "list" -d 'List the configured MCP servers: transport, state, tools and sandbox'
complete -c vtuber -n "__fish_vtuber_using_subcommand help; and __fish_seen_subcommand_from mcp" -f -a "tools" -d 'List the tools offered to the LLM, with their policy'
complete -c vtuber -n "__fish_vtuber_using_subcommand help; and __fish_seen_subcommand_from mcp" -f -a "restart" -d 'Stop and start one MCP server again (also re-enables one that gave up)'
complete -c vtuber -n "__fish_vtuber_using_subcommand help; and __fish_seen_subcommand_from mcp" -f -a "audit" -d 'Show tool calls from the audit log, newest first'
complete -c vtuber -n "__fish_vtuber_using_subcommand help; and __fish_seen_subcommand_from mcp" -f -a "import" -d 'Convert a Claude Desktop style MCP server list into vtuber\'s config YAML'
complete -c vtuber -n "__fish_vtuber_using_subcommand help; and __fish_seen_subcommand_from web" -f -a "url" -d 'Print the page\'s address with its access token (exits 1 when there is no page)'
