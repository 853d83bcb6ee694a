//! The daemon's start sequence and its lifetime: checks the configuration, binds the
//! socket and the web port, builds the [`Services`] once, serves clients until a signal
//! or a `shutdown` request, then stops everything in order. Also where the parts are
//! wired together (the MCP manager as the conversation's tool source).

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use futures::future::BoxFuture;
use tokio_util::sync::CancellationToken;

use crate::characters::{Character, Roster};
use crate::cli::Args;
use crate::clients::Clients;
use crate::config::{self, Config};
use crate::conversation::character_files::character_dir;
use crate::conversation::tool_use::{ToolInvocation, ToolReply, ToolRunner};
use crate::conversation::{Conversation, ConversationSetup};
use crate::events::EventBus;
use crate::ipc;
use crate::llm::ToolSpec;
use crate::logging::LogLevel;
use crate::mcp::McpManager;
use crate::service_manager::Notifier;
use crate::services::{LiveConfig, Services, WebAccess};
use crate::socket_activation::Inherited;
use crate::speech::listeners::Listeners;
use crate::store::Store;
use crate::voice_input::VoiceInput;

/// `--check-config`: what start would refuse or warn about, without starting.
pub fn check_config(args: &Args) -> ExitCode {
    let mut ok = true;
    let loaded = match config::load(args.config.as_deref(), args.profile.as_deref()) {
        Ok(l) => {
            if l.layers.is_empty() {
                println!("(built-in defaults): ok");
            }
            for file in l.files() {
                println!("{}: ok", file.display());
            }
            Some(l)
        }
        Err(e) => {
            for p in &e.problems {
                println!("{p}");
            }
            ok = false;
            None
        }
    };
    let cfg = loaded.map(|l| l.config).unwrap_or_default();
    if let Err(e) = crate::web::check(&cfg) {
        println!("{e}");
        ok = false;
    }
    let dir = character_dir(&cfg);
    let (roster, problems) = Roster::load(dir.as_deref());
    for p in &problems {
        println!("{p}");
        ok = false;
    }
    if roster.get(&cfg.character.default).is_none() {
        println!(
            "character.default: no character `{}` (known: {})",
            cfg.character.default,
            roster.ids().join(", ")
        );
        ok = false;
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// `--show-config`: the merged configuration with where each value came from.
pub fn show_config(args: &Args, what: crate::cli::ShowConfig) -> ExitCode {
    match config::load(args.config.as_deref(), args.profile.as_deref()) {
        Ok(l) if what == crate::cli::ShowConfig::Json => {
            println!("{}", l.effective_json());
            ExitCode::SUCCESS
        }
        Ok(l) => {
            let files: Vec<String> = l.files().map(|f| f.display().to_string()).collect();
            if files.is_empty() {
                println!("# files: none (built-in defaults)");
            } else {
                println!("# files, in the order applied: {}", files.join(", "));
            }
            print!(
                "{}",
                l.render_effective(what == crate::cli::ShowConfig::Set)
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}

/// Runs the daemon until a signal or a client's `shutdown` request. `inherited` are the
/// sockets the service manager opened (socket activation), used instead of binding.
pub async fn run(
    args: Args,
    started: Instant,
    notifier: Notifier,
    log_level: LogLevel,
    mut inherited: Inherited,
) -> anyhow::Result<()> {
    // Handlers first: a SIGTERM that arrives as soon as the socket accepts must still
    // mean a clean stop, and a SIGHUP a reload, not the default instant death.
    let mut stop_signals = StopSignals::install();
    let hangups = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .map_err(|e| tracing::warn!(error = %e, "cannot handle SIGHUP; reload with `vtuber daemon reload`"))
        .ok();
    let loaded = config::load(args.config.as_deref(), args.profile.as_deref()).map_err(|e| {
        anyhow::anyhow!("invalid configuration:\n{e}\n(check it with `vtuber config check`)")
    })?;
    let cfg = loaded.config.clone();
    if let Err(e) = log_level.apply(&cfg.daemon.log_level) {
        tracing::warn!("daemon.log_level: {e}");
    }
    // An exposed web server without TLS and a token is refused before anything starts.
    crate::web::check(&cfg).map_err(|e| anyhow::anyhow!("{e}"))?;
    inherited.close_unknown();
    let configured = vtuber_shared::paths::socket_path(args.socket.clone());
    let bound = match inherited.local.take() {
        Some(fd) => ipc::adopt(fd, &configured),
        None => ipc::bind(&configured),
    }
    .map_err(|e| anyhow::anyhow!("{e} ({})", e.hint()))?;
    let socket = bound.path.clone();
    let activated = bound.activated;
    tracing::info!(
        socket = %socket.display(),
        pid = std::process::id(),
        from_service_manager = activated,
        "listening"
    );

    let db = cfg
        .history
        .database
        .clone()
        .unwrap_or_else(|| vtuber_shared::paths::data_dir().join("history.sqlite3"));
    // The log `vtuber daemon start` appends to, as an older version may have left it.
    let log = vtuber_shared::paths::data_dir().join("vtuberd.log");
    if let Err(e) = crate::private::tighten(&log, crate::private::FILE_MODE) {
        tracing::warn!(path = %log.display(), error = %e, "cannot make the log private");
    }
    let store = match Store::open(&db) {
        Ok(s) => s,
        Err(e) => {
            bound.cleanup();
            anyhow::bail!("{e} ({})", e.to_body().hint.unwrap_or_default());
        }
    };

    let dir = character_dir(&cfg);
    let (roster, problems) = Roster::load(dir.as_deref());
    for p in &problems {
        tracing::warn!(problem = %p, "character file skipped");
    }
    let Some(character) = starting_character(&cfg, &roster) else {
        bound.cleanup();
        anyhow::bail!("no characters available (check the character folder)");
    };
    let conversation_id = store
        .latest_conversation(&character.id)
        .await
        .ok()
        .flatten();

    let bus = EventBus::new(cfg.daemon.client_queue);
    // Tool servers start in the background; the conversation does not wait for them.
    // The manager runs even with none configured, so a reload can add some.
    let mcp = {
        let protected = vec![
            vtuber_shared::cookie::cookie_path(&socket),
            vtuber_shared::paths::data_dir(),
            db.clone(),
        ];
        Some(McpManager::start_with(
            cfg.mcp.clone(),
            bus.clone(),
            store.clone(),
            crate::mcp::StartOptions {
                protected,
                ..Default::default()
            },
        ))
    };
    // Speech engines load in the background; devices are opened now (an absent sound
    // card is reported, not fatal).
    let listeners = Listeners::default();
    let (speech, voice_input) = match VoiceInput::prepare(&cfg, &listeners) {
        Ok(Some((out, input))) => (Some(out), Some(input)),
        Ok(None) => (None, None),
        Err(e) => {
            tracing::warn!("voice disabled: {e} ({})", e.hint());
            (None, None)
        }
    };
    let conversation = Conversation::start(
        ConversationSetup {
            config: cfg.clone(),
            roster,
            character_dir: dir,
            character,
            conversation: conversation_id,
            tools: mcp.clone().map(|m| Arc::new(m) as Arc<dyn ToolRunner>),
            max_tool_rounds: cfg.mcp.max_rounds,
            speech: speech.clone(),
        },
        store.clone(),
        bus.clone(),
    );
    let voice = voice_input.map(|input| input.attach(conversation.clone(), bus.clone()));
    // Bound before the services are made, so `status` has the page's address (or why
    // there is none) from the first client on.
    let (web_bound, web) = bind_web(&cfg, inherited.web.take()).await;

    let notifier = Arc::new(notifier);
    let files = loaded.files().map(|f| f.display().to_string()).collect();
    let mut config = LiveConfig::new(cfg, files);
    config.explicit = args.config.clone();
    config.profile = args.profile.clone();
    config.log_level = log_level;
    let services = Arc::new(Services {
        started,
        config,
        config_file: loaded.source,
        notifier: notifier.clone(),
        socket: socket.clone(),
        store,
        clients: Clients::new(bus.clone(), voice.clone(), listeners),
        bus,
        conversation,
        speech,
        voice,
        mcp,
        web,
        shutdown_requested: CancellationToken::new(),
    });

    let stop_serving = CancellationToken::new();
    let server = tokio::spawn(ipc::serve(
        bound.listener,
        bound.cookie.clone(),
        services.clone(),
        stop_serving.clone(),
    ));
    let web_task = web_bound.map(|b| crate::web::serve(b, services.clone(), stop_serving.clone()));
    tracing::info!(
        ready_ms = started.elapsed().as_secs_f64() * 1000.0,
        "accepting clients"
    );
    if let Some(hangups) = hangups {
        tokio::spawn(reload_on_hangup(
            hangups,
            services.clone(),
            stop_serving.clone(),
        ));
    }
    tokio::spawn(crate::readiness::report(
        notifier.clone(),
        services.clone(),
        stop_serving.clone(),
    ));

    stop_signals.wait(&services.shutdown_requested).await;
    tracing::info!("shutting down");
    notifier.stopping();
    let orderly = async {
        services.conversation.shutdown().await;
        if let Some(mcp) = &services.mcp {
            mcp.shutdown().await;
        }
        stop_serving.cancel();
        let _ = server.await;
        if let Some(web) = web_task {
            let _ = web.await;
        }
        // Give sessions a moment to flush `shutting_down` to their clients.
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    let limit = std::time::Duration::from_secs(services.config.get().daemon.stop_timeout_secs);
    tokio::select! {
        () = orderly => {}
        () = tokio::time::sleep(limit) => tracing::warn!(
            limit_secs = limit.as_secs(),
            "the orderly stop took longer than daemon.stop_timeout_secs; stopping now"
        ),
        () = stop_signals.next() => tracing::warn!("a second stop signal: stopping now"),
    }
    // An activated socket stays: the service manager keeps it for the next start.
    ipc::listener::remove_files(&socket, activated);
    tracing::info!("stopped");
    Ok(())
}

/// Each SIGHUP reloads the configuration (errors are logged and shown in `status`).
async fn reload_on_hangup(
    mut hangups: tokio::signal::unix::Signal,
    services: Arc<Services>,
    stop: CancellationToken,
) {
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            got = hangups.recv() => {
                if got.is_none() {
                    return;
                }
                tracing::info!("SIGHUP received");
                let _ = crate::reload::reload(&services).await;
            }
        }
    }
}

/// `character.default`, else the first known character.
fn starting_character(cfg: &Config, roster: &Roster) -> Option<Character> {
    if let Some(c) = roster.get(&cfg.character.default) {
        return Some(c.clone());
    }
    let c = roster
        .ids()
        .into_iter()
        .next()
        .and_then(|id| roster.get(&id).cloned())?;
    tracing::warn!(
        wanted = %cfg.character.default,
        using = %c.id,
        "character.default names no known character"
    );
    Some(c)
}

/// Binds the web port when the page is enabled, or serves on the one the service manager
/// passed. A failure leaves the terminal and local clients working; the page is what is
/// missing, and `status` says why.
async fn bind_web(
    cfg: &Config,
    inherited: Option<std::os::fd::OwnedFd>,
) -> (Option<crate::web::BoundWeb>, WebAccess) {
    if !cfg.web.enabled {
        if inherited.is_some() {
            tracing::warn!(
                "the service manager passed a web port, but web.enabled is false; closing it (remove the web socket unit, or set web.enabled: true)"
            );
        }
        return (None, WebAccess::default());
    }
    match crate::web::bind(cfg, inherited).await {
        Ok(bound) => {
            // The address without its token: logs are not for secrets.
            tracing::info!(url = %bound.url, "web page (`vtuber web url` prints it with its access token)");
            if cfg.web.auth == config::WebAuth::None {
                tracing::warn!(
                    "web.auth is none: anyone who can reach {} drives the character, and through it the MCP tools, without a token (set web.auth: token)",
                    bound.url
                );
            }
            let access = WebAccess {
                url: Some(bound.page_url.clone()),
                auth: Some(cfg.web.auth.as_str().to_owned()),
                ..WebAccess::default()
            };
            (Some(bound), access)
        }
        Err(e) => {
            tracing::error!("web page unavailable: {e}");
            let access = WebAccess {
                error: Some(e.to_string()),
                ..WebAccess::default()
            };
            (None, access)
        }
    }
}

/// MCP servers are the tool source in the daemon.
impl ToolRunner for crate::mcp::McpManager {
    fn specs(&self) -> Vec<ToolSpec> {
        self.tool_specs()
    }

    fn call(&self, inv: ToolInvocation) -> BoxFuture<'static, ToolReply> {
        let manager = self.clone();
        Box::pin(async move {
            let result = manager
                .call(crate::mcp::ToolCallRequest {
                    turn_id: inv.turn_id,
                    call_id: inv.call_id,
                    character: inv.character,
                    exposed_name: inv.name,
                    arguments: inv.arguments,
                    cancel: inv.cancel,
                })
                .await;
            ToolReply {
                outcome: result.outcome,
                content: result.content,
                duration: result.duration,
            }
        })
    }
}

/// SIGTERM and SIGINT, installed before the socket opens.
struct StopSignals {
    signals: Option<(tokio::signal::unix::Signal, tokio::signal::unix::Signal)>,
}

impl StopSignals {
    fn install() -> Self {
        use tokio::signal::unix::{SignalKind, signal};
        let signals = match (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) {
            (Ok(t), Ok(i)) => Some((t, i)),
            _ => {
                tracing::warn!(
                    "cannot install signal handlers; only `shutdown` requests stop the daemon"
                );
                None
            }
        };
        Self { signals }
    }

    async fn wait(&mut self, requested: &CancellationToken) {
        tokio::select! {
            () = self.next() => {}
            () = requested.cancelled() => tracing::info!("shutdown requested by a client"),
        }
    }

    /// The next SIGTERM or SIGINT; never, without handlers.
    async fn next(&mut self) {
        let Some((term, int)) = self.signals.as_mut() else {
            return std::future::pending().await;
        };
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM received"),
            _ = int.recv() => tracing::info!("SIGINT received"),
        }
    }
}
