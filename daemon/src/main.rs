//! `vtuberd`: parses flags, sets up logging, and runs the daemon until a signal or a
//! client's `shutdown` request.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use clap::Parser;
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;
use vtuberd::characters::Roster;
use vtuberd::cli::{Args, LogFormat};
use vtuberd::config;
use vtuberd::events::EventBus;
use vtuberd::ipc;
use vtuberd::mcp::McpManager;
use vtuberd::stage::{DaemonInfo, Stage, StageSetup, character_dir};
use vtuberd::store::Store;

fn main() -> ExitCode {
    let started = Instant::now();
    let argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if let Some((spec, command)) = vtuberd::cli::sandbox_exec_args(&argv) {
        // Before logging or the runtime: this process becomes the MCP server.
        return vtuberd::mcp::sandbox::exec_sandboxed(&spec, &command);
    }
    let args = Args::parse_from(argv);
    if args.check_config {
        return check_config(&args);
    }
    if let Some(action) = args.models {
        return models_report(&args, action);
    }
    init_logging(&args);
    // Private by default: nothing the daemon creates is readable by other users, and
    // other processes of this user (tool servers) cannot read its memory or /proc files.
    vtuberd::private::restrict_umask();
    if let Err(e) = vtuberd::private::make_non_dumpable() {
        tracing::warn!(error = %e, "cannot make the daemon non-dumpable; processes of this user can read its environment through /proc");
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("vtuberd-rt")
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("vtuberd: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args, started)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vtuberd: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(args: &Args) {
    let default = if args.verbose {
        "debug,llama_cpp_2=info"
    } else {
        "info"
    };
    let filter = std::env::var("VTUBER_LOG")
        .ok()
        .and_then(|f| EnvFilter::try_new(f).ok())
        .or_else(|| EnvFilter::try_from_default_env().ok())
        .unwrap_or_else(|| EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match args.log_format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

fn models_report(args: &Args, action: vtuberd::cli::ModelsAction) -> ExitCode {
    use vtuberd::cli::ModelsAction;
    let cfg = match config::load(args.config.as_deref()) {
        Ok(l) => l.config,
        Err(e) => {
            for p in &e.problems {
                eprintln!("{p}");
            }
            return ExitCode::FAILURE;
        }
    };
    let (dir, mut files) = vtuberd::models::inventory(&cfg);
    if action == ModelsAction::Path {
        if args.json {
            println!("{}", serde_json::json!({"models_dir": dir}));
        } else {
            println!("{}", dir.display());
        }
        return ExitCode::SUCCESS;
    }
    if action == ModelsAction::Verify {
        vtuberd::models::verify(&mut files);
    }
    if args.json {
        println!("{}", serde_json::json!({"models_dir": dir, "files": files}));
    } else {
        print!("{}", vtuberd::models::table(&dir, &files));
    }
    let bad = action == ModelsAction::Verify
        && files
            .iter()
            .any(|f| !matches!(f.verified.as_deref(), Some("ok" | "unchecked")));
    if bad {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

fn check_config(args: &Args) -> ExitCode {
    let mut ok = true;
    let loaded = match config::load(args.config.as_deref()) {
        Ok(l) => {
            let name = l.source.as_ref().map_or_else(
                || "(built-in defaults)".to_owned(),
                |p| p.display().to_string(),
            );
            println!("{name}: ok");
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
    if let Err(e) = vtuberd::web::check(&cfg) {
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

async fn run(args: Args, started: Instant) -> anyhow::Result<()> {
    // Handlers first: a SIGTERM that arrives as soon as the socket accepts must still
    // mean a clean stop, not the default instant death.
    let stop_signals = StopSignals::install();
    let loaded = config::load(args.config.as_deref()).map_err(|e| {
        anyhow::anyhow!("invalid configuration:\n{e}\n(check it with `vtuber config check`)")
    })?;
    let cfg = loaded.config;
    // An exposed web server without TLS and a token is refused before anything starts.
    vtuberd::web::check(&cfg).map_err(|e| anyhow::anyhow!("{e}"))?;
    let socket = vtuber_shared::paths::socket_path(args.socket.clone());
    let bound = ipc::bind(&socket).map_err(|e| anyhow::anyhow!("{e} ({})", e.hint()))?;
    tracing::info!(socket = %socket.display(), pid = std::process::id(), "listening");

    let db = cfg
        .history
        .database
        .clone()
        .unwrap_or_else(|| vtuber_shared::paths::data_dir().join("history.sqlite3"));
    // The log `vtuber daemon start` appends to, as an older version may have left it.
    let log = vtuber_shared::paths::data_dir().join("vtuberd.log");
    if let Err(e) = vtuberd::private::tighten(&log, vtuberd::private::FILE_MODE) {
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
    let character = match roster.get(&cfg.character.default).cloned() {
        Some(c) => c,
        None => {
            let fallback = roster
                .ids()
                .into_iter()
                .next()
                .and_then(|id| roster.get(&id).cloned());
            match fallback {
                Some(c) => {
                    tracing::warn!(
                        wanted = %cfg.character.default,
                        using = %c.id,
                        "character.default names no known character"
                    );
                    c
                }
                None => {
                    bound.cleanup();
                    anyhow::bail!("no characters available (check the character folder)");
                }
            }
        }
    };
    let conversation = store
        .latest_conversation(&character.id)
        .await
        .ok()
        .flatten();

    let bus = EventBus::new(cfg.daemon.client_queue);
    // Tool servers start in the background; the conversation does not wait for them.
    let mcp = (!cfg.mcp.servers.is_empty()).then(|| {
        let protected = vec![
            vtuber_shared::cookie::cookie_path(&socket),
            vtuber_shared::paths::data_dir(),
            db.clone(),
        ];
        McpManager::start_with(
            cfg.mcp.clone(),
            bus.clone(),
            store.clone(),
            vtuberd::mcp::StartOptions {
                protected,
                ..Default::default()
            },
        )
    });
    let info = Arc::new(DaemonInfo {
        started,
        socket: socket.clone(),
        config_file: loaded.source.clone(),
        clients: Default::default(),
        shutdown_requested: CancellationToken::new(),
        mcp: mcp.clone(),
        voice: Default::default(),
        web_url: Default::default(),
        web_auth: Default::default(),
        web_error: Default::default(),
    });
    // Speech engines load in the background; devices are opened now (an absent sound
    // card is reported, not fatal).
    let voice = match vtuberd::voice::Voice::prepare(&cfg) {
        Ok(v) => v,
        Err(e) => {
            tracing::warn!("voice disabled: {e} ({})", e.hint());
            None
        }
    };
    let (speech, prepared_voice) = match voice {
        Some((out, prepared)) => (Some(out), Some(prepared)),
        None => (None, None),
    };
    let stage = Stage::start(
        StageSetup {
            config: cfg.clone(),
            roster,
            character_dir: dir,
            character,
            conversation,
            tools: mcp
                .clone()
                .map(|m| Arc::new(m) as Arc<dyn vtuberd::tools::ToolRunner>),
            max_tool_rounds: cfg.mcp.max_rounds,
            speech,
        },
        store,
        bus.clone(),
        info.clone(),
    );
    if let Some(prepared) = prepared_voice {
        let _ = info.voice.set(prepared.attach(stage.clone(), bus.clone()));
    }

    let stop_serving = CancellationToken::new();
    let server = tokio::spawn(ipc::serve(
        bound.listener,
        bound.cookie.clone(),
        stage.clone(),
        stop_serving.clone(),
    ));
    let web = if cfg.web.enabled {
        match vtuberd::web::serve(&cfg, stage.clone(), stop_serving.clone()).await {
            Ok(serving) => {
                // The address without its token: logs are not for secrets.
                tracing::info!(url = %serving.url, "web page (`vtuber web url` prints it with its access token)");
                if cfg.web.auth == config::WebAuth::None {
                    tracing::warn!(
                        "web.auth is none: anyone who can reach {} drives the character, and through it the MCP tools, without a token (set web.auth: token)",
                        serving.url
                    );
                }
                let _ = info.web_url.set(serving.page_url);
                let _ = info.web_auth.set(cfg.web.auth.as_str().to_owned());
                Some(serving.task)
            }
            Err(e) => {
                // The terminal and local clients still work; the page is what is missing,
                // and `status` says why.
                tracing::error!("web page unavailable: {e}");
                let _ = info.web_error.set(e.to_string());
                None
            }
        }
    } else {
        None
    };
    tracing::info!(
        ready_ms = started.elapsed().as_secs_f64() * 1000.0,
        "accepting clients"
    );

    stop_signals.wait(&info.shutdown_requested).await;
    tracing::info!("shutting down");
    stage.shutdown().await;
    if let Some(mcp) = &mcp {
        mcp.shutdown().await;
    }
    stop_serving.cancel();
    let _ = server.await;
    if let Some(web) = web {
        let _ = web.await;
    }
    // Give sessions a moment to flush `shutting_down` to their clients.
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    std::fs::remove_file(&socket).ok();
    let mut lock = socket.as_os_str().to_owned();
    lock.push(".lock");
    std::fs::remove_file(lock).ok();
    std::fs::remove_file(vtuber_shared::cookie::cookie_path(&socket)).ok();
    tracing::info!("stopped");
    Ok(())
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

    async fn wait(self, requested: &CancellationToken) {
        let Some((mut term, mut int)) = self.signals else {
            requested.cancelled().await;
            return;
        };
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM received"),
            _ = int.recv() => tracing::info!("SIGINT received"),
            _ = requested.cancelled() => tracing::info!("shutdown requested by a client"),
        }
    }
}
