//! Where the daemon's log goes and how it reads there: text for people (colours only on
//! a terminal), JSON for programs, and the journal's own form when systemd captures
//! stderr (`<priority>` prefixes, no colours, no timestamps, one event a line).

use std::fmt;
use std::io::IsTerminal;

use tracing::{Event, Level, Subscriber};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::Layer;
use tracing_subscriber::fmt::format::{FormatEvent, FormatFields, Writer};
use tracing_subscriber::fmt::{FmtContext, format};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::reload;
use tracing_subscriber::util::SubscriberInitExt;

use crate::cli::{Args, LogFormat};

/// Changes what the log shows while the daemon runs (`daemon.log_level` on reload),
/// unless the command line or the environment chose it.
#[derive(Clone)]
pub struct LogLevel {
    handle: Option<reload::Handle<EnvFilter, tracing_subscriber::Registry>>,
    /// `--verbose`, `$VTUBER_LOG` or `$RUST_LOG` chose the filter; the config does not.
    overridden: bool,
}

impl LogLevel {
    /// A handle that changes nothing (tests, or no subscriber installed).
    pub fn fixed() -> Self {
        Self {
            handle: None,
            overridden: true,
        }
    }

    /// Applies `daemon.log_level`. `Ok(false)`: left as is, because the command line or
    /// the environment chose the filter.
    pub fn apply(&self, directives: &str) -> Result<bool, String> {
        let Some(handle) = self.handle.as_ref().filter(|_| !self.overridden) else {
            return Ok(false);
        };
        let filter = EnvFilter::builder()
            .parse(quiet_tool_transports(directives))
            .map_err(|e| format!("`{directives}` is not a log filter: {e}"))?;
        handle
            .reload(filter)
            .map_err(|e| format!("cannot change the log filter: {e}"))?;
        Ok(true)
    }
}

/// Installs the global subscriber on stderr.
pub fn init(args: &Args) -> LogLevel {
    // An empty variable counts as unset.
    let from_env = |name: &str| {
        std::env::var(name)
            .ok()
            .filter(|f| !f.trim().is_empty())
            .and_then(|f| EnvFilter::try_new(quiet_tool_transports(&f)).ok())
    };
    let chosen = from_env("VTUBER_LOG")
        .or_else(|| from_env("RUST_LOG"))
        .or_else(|| {
            args.verbose
                .then(|| EnvFilter::new(quiet_tool_transports("debug,llama_cpp_2=info")))
        });
    let overridden = chosen.is_some();
    let filter = chosen.unwrap_or_else(|| EnvFilter::new("info"));
    let format = args.log_format.unwrap_or_else(|| {
        if stderr_is_journal(std::env::var("JOURNAL_STREAM").ok().as_deref()) {
            LogFormat::Journal
        } else {
            LogFormat::Text
        }
    });
    let (filter, handle) = reload::Layer::new(filter);
    let ansi = format == LogFormat::Text && std::io::stderr().is_terminal();
    let base = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(ansi);
    let output = match format {
        LogFormat::Text => base.boxed(),
        LogFormat::Json => base.json().boxed(),
        LogFormat::Journal => base.event_format(JournalFormat).boxed(),
    };
    let installed = tracing_subscriber::registry()
        .with(filter)
        .with(output)
        .try_init()
        .is_ok();
    LogLevel {
        handle: installed.then_some(handle),
        overridden,
    }
}

/// rmcp logs, at debug level, every line a tool server writes that is not JSON-RPC, with
/// the line itself: a server flooding its stdout (issue 19) then grew the log by some
/// 40 MB in 5 s, and whatever it printed, secrets included, landed in the log. Those
/// messages stay out unless the filter names `rmcp` itself.
fn quiet_tool_transports(directives: &str) -> String {
    const QUIET: &str = "rmcp::transport::async_rw=info";
    if directives.contains("rmcp") {
        directives.to_owned()
    } else if directives.trim().is_empty() {
        QUIET.to_owned()
    } else {
        format!("{directives},{QUIET}")
    }
}

/// Whether stderr is the stream systemd named in `JOURNAL_STREAM` (`device:inode`);
/// a child that inherited the variable but not the stream does not match.
fn stderr_is_journal(journal_stream: Option<&str>) -> bool {
    use std::os::fd::AsFd;
    use std::os::unix::fs::MetadataExt;
    let Some((dev, ino)) = journal_stream.and_then(|v| v.trim().split_once(':')) else {
        return false;
    };
    let (Ok(dev), Ok(ino)) = (dev.parse::<u64>(), ino.parse::<u64>()) else {
        return false;
    };
    let Ok(fd) = std::io::stderr().as_fd().try_clone_to_owned() else {
        return false;
    };
    match std::fs::File::from(fd).metadata() {
        Ok(m) => m.dev() == dev && m.ino() == ino,
        Err(_) => false,
    }
}

/// sd-daemon(3) priority: 3 error, 4 warning, 6 info, 7 debug.
fn priority(level: &Level) -> u8 {
    match *level {
        Level::ERROR => 3,
        Level::WARN => 4,
        Level::INFO => 6,
        Level::DEBUG | Level::TRACE => 7,
    }
}

/// The journal's line form: `<6>target: message key=value`, line breaks inside an event
/// written as `\n` so one event stays one journal entry.
struct JournalFormat;

impl<S, N> FormatEvent<S, N> for JournalFormat
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let mut line = String::new();
        format()
            .without_time()
            .with_level(false)
            .with_ansi(false)
            .format_event(ctx, Writer::new(&mut line), event)?;
        let line = line.trim_end_matches('\n').replace('\n', "\\n");
        writeln!(writer, "<{}>{line}", priority(event.metadata().level()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Buffer {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn tool_transport_chatter_stays_out_unless_asked_for() {
        assert_eq!(
            quiet_tool_transports("debug"),
            "debug,rmcp::transport::async_rw=info"
        );
        assert_eq!(quiet_tool_transports(" "), "rmcp::transport::async_rw=info");
        assert_eq!(quiet_tool_transports("info,rmcp=trace"), "info,rmcp=trace");
        for d in ["debug", "", "warn,vtuberd=debug"] {
            assert!(EnvFilter::builder().parse(quiet_tool_transports(d)).is_ok());
        }
    }

    #[test]
    fn journal_lines_carry_priorities_and_stay_one_line() {
        let buffer = Buffer::default();
        let out = buffer.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_env_filter(EnvFilter::new("debug"))
            .with_writer(move || out.clone())
            .with_ansi(false)
            .event_format(JournalFormat)
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            tracing::error!(code = 7, "broken");
            tracing::warn!("first line\nsecond line");
            tracing::info!("fine");
            tracing::debug!("detail");
        });
        let text = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4, "{text}");
        assert!(
            lines[0].starts_with("<3>") && lines[0].contains("broken code=7"),
            "{text}"
        );
        assert!(
            lines[1].starts_with("<4>") && lines[1].contains("first line\\nsecond line"),
            "{text}"
        );
        assert!(lines[2].starts_with("<6>"), "{text}");
        assert!(lines[3].starts_with("<7>"), "{text}");
        assert!(!text.contains('\u{1b}'), "{text}");
    }

    #[test]
    fn journal_stream_must_name_this_stderr() {
        assert!(!stderr_is_journal(None));
        assert!(!stderr_is_journal(Some("")));
        assert!(!stderr_is_journal(Some("not:numbers")));
        assert!(!stderr_is_journal(Some("1:1")));
    }
}
