//! `vtuberd`: parses flags, sets up logging and the runtime, and runs the daemon
//! ([`vtuberd::daemon`]) until a signal or a client's `shutdown` request.

use std::process::ExitCode;
use std::time::Instant;

use clap::Parser;
use vtuberd::cli::Args;

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
    if let Some(what) = args.show_config {
        return vtuberd::daemon::show_config(&args, what);
    }
    if let Some(action) = args.models {
        return vtuberd::models::report(&args, action);
    }
    // Before any thread starts: the variables are removed from the environment.
    // SAFETY: the process has one thread here (no runtime, no logging threads yet), and
    // nothing has opened a descriptor yet, so 3 and up are the ones the service manager
    // passed, if any (the sockets first: the notifier opens one).
    let inherited = unsafe { vtuberd::socket_activation::Inherited::take_from_env() };
    // SAFETY: as above.
    let notifier = unsafe { vtuberd::service_manager::Notifier::take_from_env() };
    let log_level = vtuberd::logging::init(&args);
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
    let result = runtime.block_on(vtuberd::daemon::run(
        args, started, notifier, log_level, inherited,
    ));
    // A model still computing on a blocking thread must not hold the exit up.
    runtime.shutdown_timeout(std::time::Duration::from_millis(500));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vtuberd: {e:#}");
            ExitCode::FAILURE
        }
    }
}
