//! `vtuber say`, `listen` and `speak`: one turn from text or a recording, streamed to
//! the terminal, or the character's voice for a text.

use std::io::{IsTerminal, Read, Write};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use vtuber_shared::client::Hello;
use vtuber_shared::{Reply, Request};

use super::turn_stream::{Approval, Outputs, TurnEnd, stdin_lines, stream_turn};
use super::unexpected;
use crate::cli::{ListenArgs, SayArgs, SpeakArgs};
use crate::exit;
use crate::launcher::{self, Target};

/// What the text of `say` is: the words joined, or standard input for `-`.
fn say_text(words: &[String]) -> Result<String> {
    let text = if words.len() == 1 && words[0] == "-" {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("cannot read the message from standard input")?;
        text.trim_end_matches(['\n', '\r']).to_owned()
    } else {
        words.join(" ")
    };
    if text.trim().is_empty() {
        bail!("nothing to say: the message is empty");
    }
    Ok(text)
}

pub async fn say(target: &Target, args: &SayArgs) -> Result<ExitCode> {
    let text = say_text(&args.text)?;
    let images = args
        .images
        .iter()
        .map(|path| crate::images::read_image(path))
        .collect::<Result<Vec<_>>>()?;
    let reads_stdin = args.text.len() == 1 && args.text[0] == "-";
    let approval = if args.approve {
        Approval::Auto
    } else if !reads_stdin && std::io::stdin().is_terminal() {
        Approval::Prompt(stdin_lines())
    } else {
        Approval::Leave
    };
    one_turn(
        target,
        "say",
        Request::SendText { text, images },
        args.json,
        approval,
    )
    .await
}

/// Sends `request` (which starts a turn), prints the turn as `say` does, and maps how it
/// ended to the exit code.
async fn one_turn(
    target: &Target,
    label: &str,
    request: Request,
    json: bool,
    approval: Approval,
) -> Result<ExitCode> {
    // Printed text needs no synthesized speech; `--json` passes the audio on.
    let hello = if json {
        Hello::new(label, true)
    } else {
        Hello::new(label, true).text_only()
    };
    let mut conn = launcher::connect_or_start(target, hello).await?;
    let mut stdout = std::io::stdout().lock();
    let mut stderr = std::io::stderr();
    let end = stream_turn(
        &conn.client,
        &mut conn.events,
        request,
        &mut Outputs {
            out: &mut stdout,
            diag: &mut stderr,
        },
        json,
        approval,
    )
    .await?;
    drop(stdout);
    Ok(match end {
        TurnEnd::Finished => ExitCode::SUCCESS,
        TurnEnd::Failed(error) => {
            eprintln!("error: {error}");
            ExitCode::from(exit::TURN_FAILED)
        }
        TurnEnd::Interrupted => {
            eprintln!("note: the reply was interrupted before it finished");
            ExitCode::from(exit::TURN_INTERRUPTED)
        }
    })
}

/// `vtuber listen FILE.wav`: the file as if spoken, then the reply as `say` prints it.
pub async fn listen(target: &Target, args: &ListenArgs) -> Result<ExitCode> {
    use base64::Engine as _;
    let bytes = std::fs::read(&args.file)
        .with_context(|| format!("cannot read {}", args.file.display()))?;
    if bytes.len() > MAX_AUDIO_BYTES {
        bail!(
            "{} is {} bytes; the limit is {} (about 2 minutes of 16 kHz 16-bit mono): cut it shorter",
            args.file.display(),
            bytes.len(),
            MAX_AUDIO_BYTES
        );
    }
    let wav_base64 = base64::engine::general_purpose::STANDARD.encode(&bytes);
    let approval = if args.approve {
        Approval::Auto
    } else {
        Approval::Leave
    };
    one_turn(
        target,
        "listen",
        Request::SendAudio { wav_base64 },
        args.json,
        approval,
    )
    .await
}

/// Largest audio file `listen` sends (the socket's frame limit, after base64).
const MAX_AUDIO_BYTES: usize = 3 * 1024 * 1024 - 64 * 1024;

/// `vtuber speak TEXT -o FILE`: the current character's voice, to a WAV file.
pub async fn speak(target: &Target, args: &SpeakArgs) -> Result<ExitCode> {
    use base64::Engine as _;
    let text = say_text(&args.text)?;
    let conn = launcher::connect_or_start(target, Hello::new("speak", false)).await?;
    let audio = match conn.client.request(Request::Speak { text }).await {
        Ok(Reply::Speech { audio }) => audio,
        Ok(other) => return Err(unexpected(&other)),
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(ExitCode::FAILURE);
        }
    };
    let wav = base64::engine::general_purpose::STANDARD
        .decode(audio.wav_base64.as_bytes())
        .context("the daemon sent audio that is not base64")?;
    if args.output.as_os_str() == "-" {
        std::io::stdout().write_all(&wav)?;
    } else {
        std::fs::write(&args.output, &wav)
            .with_context(|| format!("cannot write {}", args.output.display()))?;
        eprintln!(
            "wrote {} ({:.2} s, {} Hz)",
            args.output.display(),
            f64::from(audio.duration_ms) / 1000.0,
            audio.sample_rate
        );
    }
    Ok(ExitCode::SUCCESS)
}
