//! `vtuber daemon logs [-f]`: the daemon's log, wherever it goes: the journal when
//! vtuberd runs as the systemd user service (or as this user's instance of the system
//! template), else the file `vtuber` starts it with.

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::process::{Command, ExitCode};
use std::time::Duration;

use anyhow::{Context, Result, bail};

use super::{service_unit, system_unit};
use crate::launcher;

/// How often `--follow` looks for new lines in the file.
const FOLLOW_EVERY: Duration = Duration::from_millis(200);

pub fn logs(follow: bool, lines: usize) -> Result<ExitCode> {
    if service_unit::unit_path().exists() {
        return journal(&["--user", "-u", "vtuberd.service"], follow, lines);
    }
    if let Some(unit) = system_unit::installed_for_current_user() {
        // The system journal: readable by members of systemd-journal or adm.
        return journal(&["-u", &unit], follow, lines);
    }
    let path = launcher::log_path();
    if !path.exists() {
        bail!(
            "no log at {}: vtuberd has not been started by `vtuber` here, nor installed as a \
             service (`vtuber daemon install`); a vtuberd run in a terminal logs to that terminal",
            path.display()
        );
    }
    file(&path, follow, lines)
}

/// `journalctl [--user] -u UNIT`, which knows the service's own log.
fn journal(unit: &[&str], follow: bool, lines: usize) -> Result<ExitCode> {
    let mut cmd = Command::new("journalctl");
    cmd.args(unit)
        .args(["--no-pager", "-n"])
        .arg(lines.to_string());
    if follow {
        cmd.arg("-f");
    }
    let status = cmd
        .status()
        .context("cannot run journalctl (the service logs to the journal)")?;
    Ok(match status.code() {
        Some(0) => ExitCode::SUCCESS,
        Some(code) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
        None => ExitCode::FAILURE,
    })
}

/// The last `lines` lines of the file, then (with `follow`) what is appended to it; a
/// file that shrinks (a new start truncated it) is read again from its start.
fn file(path: &Path, follow: bool, lines: usize) -> Result<ExitCode> {
    let open =
        || std::fs::File::open(path).with_context(|| format!("cannot read {}", path.display()));
    let mut f = open()?;
    let mut text = Vec::new();
    f.read_to_end(&mut text)
        .with_context(|| format!("cannot read {}", path.display()))?;
    let mut out = std::io::stdout().lock();
    let shown = last_lines(&text, lines);
    out.write_all(shown)?;
    out.flush()?;
    if !follow {
        return Ok(ExitCode::SUCCESS);
    }
    let mut pos = text.len() as u64;
    loop {
        std::thread::sleep(FOLLOW_EVERY);
        let len = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
        if len < pos {
            f = open()?;
            pos = 0;
        }
        if len > pos {
            f.seek(SeekFrom::Start(pos))?;
            let mut more = Vec::new();
            f.read_to_end(&mut more)?;
            pos += more.len() as u64;
            out.write_all(&more)?;
            out.flush()?;
        }
    }
}

/// The bytes of the last `n` lines.
fn last_lines(text: &[u8], n: usize) -> &[u8] {
    let body = text.strip_suffix(b"\n").unwrap_or(text);
    let mut seen = 0;
    for (i, b) in body.iter().enumerate().rev() {
        if *b == b'\n' {
            seen += 1;
            if seen == n {
                return &text[i + 1..];
            }
        }
    }
    if n == 0 { &[] } else { text }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_lines_of_a_log() {
        assert_eq!(last_lines(b"a\nb\nc\n", 2), b"b\nc\n");
        assert_eq!(last_lines(b"a\nb\nc", 2), b"b\nc");
        assert_eq!(last_lines(b"a\nb\n", 5), b"a\nb\n");
        assert_eq!(last_lines(b"a\nb\n", 0), b"");
        assert_eq!(last_lines(b"", 3), b"");
    }
}
