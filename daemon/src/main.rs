//! `vtuberd`: parses flags, sets up logging and the runtime, and runs the daemon
//! ([`vtuberd::daemon`]) until a signal or a client's `shutdown` request.

use std::process::ExitCode;
use std::time::Instant;

use clap::Parser;
use tracing_subscriber::EnvFilter;
use vtuberd::cli::{Args, LogFormat};

fn main() -> ExitCode {
    let started = Instant::now();
    let argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if let Some((spec, command)) = vtuberd::cli::sandbox_exec_args(&argv) {
        // Before logging or the runtime: this process becomes the MCP server.
        return vtuberd::mcp::sandbox::exec_sandboxed(&spec, &command);
    }
    let args = Args::parse_from(argv);
    if args.check_config {
        return vtuberd::daemon::check_config(&args);
    }
    if let Some(action) = args.models {
        return vtuberd::models::report(&args, action);
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
    match runtime.block_on(vtuberd::daemon::run(args, started)) {
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
