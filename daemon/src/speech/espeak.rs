//! espeak-ng: IPA phonemes for Piper voices, and a robotic but zero-download fallback TTS.
//!
//! espeak-ng is GPL, so the daemon runs the `espeak-ng` program instead of linking the
//! library. Text always goes through stdin (never argv), so nothing in it can become a flag,
//! and every run has a deadline after which the program is killed.

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use super::SpeechError;
use crate::pcm::Pcm;

/// The program run; found on `PATH`.
pub const PROGRAM: &str = "espeak-ng";
/// A run that takes longer than this is killed: espeak is fast (tens of milliseconds), so a
/// slow one is stuck, and the speech pipeline must not stall behind it.
pub const TIMEOUT: Duration = Duration::from_secs(10);
/// espeak reads stdin line by line into a 1000-byte buffer; longer lines would be cut
/// mid-word, so clauses are wrapped below that.
const MAX_LINE_BYTES: usize = 900;

/// Phonemizes `text` with espeak-ng's `voice` (e.g. `en-us`) the way Piper does: IPA with
/// stress and length marks, no tie or separator characters, one string per sentence, each
/// clause ending in its punctuation (`.` `?` `!` `,` `:` `;`, commas and the like followed
/// by a space). "Hello world." gives `["həlˈoʊ wˈɜːld."]`.
///
/// The CLI prints one line per clause without its punctuation, so the text is split into
/// clauses here, sent one per line (espeak treats each line on its own) with a `.` line
/// between them, which espeak answers with an empty line: that recovers which punctuation
/// ended which clause in a single run. Should espeak's output not line up, each clause is
/// phonemized on its own instead.
pub fn phonemize(text: &str, voice: &str) -> Result<Vec<String>, SpeechError> {
    let clauses = split_clauses(text);
    if clauses.is_empty() {
        return Ok(Vec::new());
    }
    let mut input = String::new();
    for clause in &clauses {
        push_lines(&mut input, &clause.text);
        input.push_str(".\n");
    }
    let out = run(&phoneme_args(voice), input.as_bytes())?;
    let groups = match group_output(&String::from_utf8_lossy(&out), clauses.len()) {
        Some(groups) => groups,
        None => {
            tracing::debug!(
                "espeak-ng clause output did not line up; phonemizing clause by clause"
            );
            let mut groups = Vec::with_capacity(clauses.len());
            for clause in &clauses {
                let mut line = String::new();
                push_lines(&mut line, &clause.text);
                let out = run(&phoneme_args(voice), line.as_bytes())?;
                groups.push(join_lines(&String::from_utf8_lossy(&out)));
            }
            groups
        }
    };
    Ok(assemble(&clauses, &groups))
}

fn phoneme_args(voice: &str) -> Vec<String> {
    // `-q`: no audio; `--ipa`: IPA on stdout without separators; `-b 1`: input is UTF-8.
    // No `--stdin`: line-by-line mode, where each line is synthesized on its own.
    vec![
        "-q".into(),
        "--ipa".into(),
        "-b".into(),
        "1".into(),
        "-v".into(),
        voice.into(),
    ]
}

/// A piece of text espeak will treat as one clause, with what ended it.
#[derive(Debug, Clone, PartialEq)]
struct Clause {
    text: String,
    /// The punctuation Piper appends (`.` `?` `!` `,` `:` `;`), if any.
    punct: Option<char>,
    /// Whether the clause ends a sentence (Piper synthesizes sentence by sentence).
    ends_sentence: bool,
}

/// Characters that may follow clause punctuation and still belong to the clause.
fn is_closer(c: char) -> bool {
    matches!(
        c,
        '"' | '\'' | ')' | ']' | '}' | '”' | '’' | '»' | '」' | '』'
    )
}

fn is_clause_punct(c: char) -> bool {
    matches!(
        c,
        '.' | ','
            | '?'
            | '!'
            | ':'
            | ';'
            | '…'
            | '—'
            | '–'
            | '。'
            | '，'
            | '？'
            | '！'
            | '：'
            | '；'
            | '、'
    )
}

/// Splits text roughly where espeak-ng ends clauses: at punctuation followed by whitespace
/// or the end (a `.` before a lowercase word is an abbreviation, as espeak assumes), and
/// at blank lines. Clauses without a letter or digit are dropped: espeak says nothing for
/// them, which would break the line-up of its output.
fn split_clauses(text: &str) -> Vec<Clause> {
    let mut clauses = Vec::new();
    for paragraph in text.split("\n\n") {
        let chars: Vec<char> = paragraph
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        let mut start = 0;
        let mut i = 0;
        while i < chars.len() {
            if !is_clause_punct(chars[i]) {
                i += 1;
                continue;
            }
            let run_start = i;
            while i < chars.len() && is_clause_punct(chars[i]) {
                i += 1;
            }
            let run: Vec<char> = chars[run_start..i].to_vec();
            while i < chars.len() && is_closer(chars[i]) {
                i += 1;
            }
            let at_end = i >= chars.len();
            if !at_end && !chars[i].is_whitespace() {
                continue;
            }
            let next = chars[i..].iter().find(|c| !c.is_whitespace());
            if run == ['.'] && next.is_some_and(|c| c.is_lowercase()) {
                continue;
            }
            let (punct, ends_sentence) = classify(&run);
            clauses.push(Clause {
                text: chars[start..i].iter().collect::<String>().trim().to_owned(),
                punct,
                ends_sentence,
            });
            start = i;
        }
        let rest: String = chars[start..].iter().collect();
        if !rest.trim().is_empty() {
            clauses.push(Clause {
                text: rest.trim().to_owned(),
                punct: None,
                ends_sentence: true,
            });
        }
    }
    clauses.retain(|c| c.text.chars().any(char::is_alphanumeric));
    clauses
}

/// Piper's punctuation for a run of clause punctuation, and whether it ends the sentence.
/// An ellipsis or a dash is a pause inside the sentence (Piper gives a dash `;`).
fn classify(run: &[char]) -> (Option<char>, bool) {
    let has = |cs: &[char]| run.iter().any(|c| cs.contains(c));
    if has(&['?', '？']) {
        (Some('?'), true)
    } else if has(&['!', '！']) {
        (Some('!'), true)
    } else if has(&['…', '—', '–']) || run.iter().filter(|&&c| c == '.').count() >= 2 {
        (Some(';'), false)
    } else if has(&['.', '。']) {
        (Some('.'), true)
    } else if has(&[';', '；']) {
        (Some(';'), false)
    } else if has(&[':', '：']) {
        (Some(':'), false)
    } else {
        (Some(','), false)
    }
}

/// Appends `text` as lines espeak reads whole, wrapping at whitespace below its buffer.
fn push_lines(out: &mut String, text: &str) {
    let mut line = String::new();
    for word in text.split_whitespace() {
        if !line.is_empty() && line.len() + 1 + word.len() > MAX_LINE_BYTES {
            out.push_str(&line);
            out.push('\n');
            line.clear();
        }
        if !line.is_empty() {
            line.push(' ');
        }
        // A single giant "word" is cut at character boundaries.
        let mut rest = word;
        while rest.len() > MAX_LINE_BYTES {
            let mut cut = MAX_LINE_BYTES;
            while !rest.is_char_boundary(cut) {
                cut -= 1;
            }
            out.push_str(&rest[..cut]);
            out.push('\n');
            rest = &rest[cut..];
        }
        line.push_str(rest);
    }
    out.push_str(&line);
    out.push('\n');
}

/// Splits espeak's output into one group per clause at the empty lines the `.` separators
/// produce; `None` if the count is off.
fn group_output(out: &str, clauses: usize) -> Option<Vec<String>> {
    let mut groups = Vec::with_capacity(clauses);
    let mut current: Vec<&str> = Vec::new();
    for line in out.lines().map(str::trim) {
        if line.is_empty() {
            groups.push(current.join(" "));
            current.clear();
        } else {
            current.push(line);
        }
    }
    (groups.len() == clauses && current.is_empty()).then_some(groups)
}

fn join_lines(out: &str) -> String {
    out.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Joins clause phonemes into sentences as Piper does.
fn assemble(clauses: &[Clause], groups: &[String]) -> Vec<String> {
    let mut sentences = Vec::new();
    let mut sentence = String::new();
    for (clause, phonemes) in clauses.iter().zip(groups) {
        sentence.push_str(phonemes);
        if let Some(p) = clause.punct {
            sentence.push(p);
        }
        if clause.ends_sentence {
            let done = std::mem::take(&mut sentence);
            if !done.trim().is_empty() {
                sentences.push(done.trim_end().to_owned());
            }
        } else {
            sentence.push(' ');
        }
    }
    if !sentence.trim().is_empty() {
        sentences.push(sentence.trim_end().to_owned());
    }
    sentences
}

/// espeak-ng as a speech synthesizer: instant, robotic, needs no model download.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EspeakTts {
    /// espeak-ng voice, e.g. `en-us`.
    pub voice: String,
    /// Speaking rate in words per minute (espeak's default is 175).
    pub rate_wpm: u32,
}

impl Default for EspeakTts {
    fn default() -> Self {
        Self {
            voice: "en-us".into(),
            rate_wpm: 175,
        }
    }
}

impl EspeakTts {
    /// Speaks `text` into 22050 Hz mono audio.
    pub fn synthesize(&self, text: &str) -> Result<Pcm, SpeechError> {
        let args: Vec<String> = vec![
            "--stdout".into(),
            "--stdin".into(),
            "-b".into(),
            "1".into(),
            "-v".into(),
            self.voice.clone(),
            "-s".into(),
            self.rate_wpm.clamp(80, 450).to_string(),
        ];
        let mut wav = run(&args, text.as_bytes())?;
        patch_streamed_wav(&mut wav)?;
        Ok(Pcm::from_wav(&wav)?)
    }

    pub fn describe(&self) -> String {
        format!("espeak-ng voice {} at {} wpm", self.voice, self.rate_wpm)
    }
}

/// espeak writes WAV to a pipe, so it cannot go back to fill in the lengths and leaves
/// placeholders (0x7ffff000 and the like). Sets the RIFF and data lengths from what arrived.
fn patch_streamed_wav(wav: &mut [u8]) -> Result<(), SpeechError> {
    let bad = |why: &str| SpeechError::BadAudio(format!("espeak-ng output is not WAV: {why}"));
    if wav.len() < 12 || &wav[..4] != b"RIFF" || &wav[8..12] != b"WAVE" {
        return Err(bad("no RIFF/WAVE header"));
    }
    let total = u32::try_from(wav.len() - 8).map_err(|_| bad("too long"))?;
    wav[4..8].copy_from_slice(&total.to_le_bytes());
    let mut pos = 12;
    while pos + 8 <= wav.len() {
        let id = [wav[pos], wav[pos + 1], wav[pos + 2], wav[pos + 3]];
        if &id == b"data" {
            let len = u32::try_from(wav.len() - pos - 8).map_err(|_| bad("too long"))?;
            wav[pos + 4..pos + 8].copy_from_slice(&len.to_le_bytes());
            return Ok(());
        }
        let size = u32::from_le_bytes([wav[pos + 4], wav[pos + 5], wav[pos + 6], wav[pos + 7]]);
        pos += 8 + size as usize + (size as usize & 1);
    }
    Err(bad("no data chunk"))
}

/// Runs espeak-ng with `args`, feeding `input` on stdin; returns stdout. Kills it after
/// [`TIMEOUT`].
fn run(args: &[String], input: &[u8]) -> Result<Vec<u8>, SpeechError> {
    run_program(PROGRAM, args, input, TIMEOUT)
}

fn run_program(
    program: &str,
    args: &[String],
    input: &[u8],
    timeout: Duration,
) -> Result<Vec<u8>, SpeechError> {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                SpeechError::Missing {
                    what: "espeak-ng",
                    path: program.into(),
                    hint: "install it: apt-get install espeak-ng".into(),
                }
            } else {
                SpeechError::inference("espeak-ng", format!("could not start {program}: {e}"))
            }
        })?;
    // Each pipe gets its own thread so a full pipe can never deadlock us, and the wait
    // below can give up on time.
    let stdin = child.stdin.take();
    let input = input.to_vec();
    let writer = std::thread::spawn(move || {
        if let Some(mut stdin) = stdin {
            // A program that exits early closes the pipe; its exit status tells why.
            let _ = stdin.write_all(&input);
        }
    });
    let stderr = child.stderr.take();
    let err_reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(mut stderr) = stderr {
            let _ = stderr.read_to_end(&mut buf);
        }
        buf
    });
    let (tx, rx) = mpsc::channel();
    let stdout = child.stdout.take();
    let out_reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let result = match stdout {
            Some(mut stdout) => stdout.read_to_end(&mut buf).map(|_| buf),
            None => Ok(buf),
        };
        let _ = tx.send(result);
    });
    let received = rx.recv_timeout(timeout);
    if received.is_err() {
        // Killing closes the pipes, which ends the reader threads.
        let _ = child.kill();
    }
    let status = child.wait();
    let _ = writer.join();
    let _ = out_reader.join();
    let stderr = err_reader.join().unwrap_or_default();
    let stdout = match received {
        Ok(Ok(out)) => out,
        Ok(Err(e)) => {
            return Err(SpeechError::inference(
                "espeak-ng",
                format!("reading its output: {e}"),
            ));
        }
        Err(_) => {
            return Err(SpeechError::inference(
                "espeak-ng",
                format!("no answer within {} s; killed it", timeout.as_secs_f32()),
            ));
        }
    };
    match status {
        Ok(s) if s.success() => Ok(stdout),
        Ok(s) => Err(SpeechError::inference(
            "espeak-ng",
            format!("{s}: {}", String::from_utf8_lossy(&stderr).trim()),
        )),
        Err(e) => Err(SpeechError::inference("espeak-ng", e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// espeak-ng is required (CI installs it); a missing program fails with the fix.
    fn phonemes(text: &str) -> Vec<String> {
        match phonemize(text, "en-us") {
            Ok(p) => p,
            Err(e) => panic!("espeak-ng failed ({e}); run scripts/setup.sh"),
        }
    }

    #[test]
    fn phonemizes_like_piper() {
        assert_eq!(phonemes("Hello world."), ["həlˈoʊ wˈɜːld."]);
        assert_eq!(
            phonemes("Hello world. How are you, my friend? I'm fine!"),
            ["həlˈoʊ wˈɜːld.", "hˈaʊ ɑːɹ juː, maɪ fɹˈɛnd?", "aɪm fˈaɪn!"]
        );
        // No tie bars or separators.
        assert!(
            phonemes("How are you?")
                .iter()
                .all(|s| !s.contains('\u{361}'))
        );
    }

    #[test]
    fn keeps_abbreviations_and_unpunctuated_tails() {
        assert_eq!(
            phonemes("Fast... e.g. this is 3.5 percent"),
            ["fˈæst; fˌɔːɹɛɡzˈæmpəl ðɪs ɪz θɹˈiː pɔɪnt fˈaɪv pɚsˈɛnt"]
        );
        // A dash is a pause; brackets, which espeak also breaks at, stay in the clause.
        assert_eq!(phonemes("Hello — world (ok)."), ["həlˈoʊ; wˈɜːld ˌoʊkˈeɪ."]);
    }

    #[test]
    fn text_is_never_a_flag() {
        assert_eq!(phonemes("-h --version"), phonemes("h version"));
        assert!(phonemes("").is_empty());
        assert!(phonemes(" ... !? ").is_empty());
    }

    #[test]
    #[ignore = "prints phonemes for comparing with piper-tts by hand"]
    fn print_phonemes() {
        for t in [
            "Hello world.",
            "Hello world. How are you, my friend? I'm fine!",
            "Fast... e.g. this is 3.5 percent",
            "Hello — world (ok).",
            "Mr. Smith went to Washington; he said: hi.",
            "\"Quoted.\" She left",
            "It costs $5, or 10%!",
        ] {
            println!("{t:?} {:?}", phonemes(t));
        }
    }

    #[test]
    fn splits_clauses() {
        let c = split_clauses("Hi, there! \"Quoted.\" Mr. Smith said 3.5\n\nnew para");
        let texts: Vec<_> = c
            .iter()
            .map(|c| (c.text.as_str(), c.punct, c.ends_sentence))
            .collect();
        assert_eq!(
            texts,
            [
                ("Hi,", Some(','), false),
                ("there!", Some('!'), true),
                ("\"Quoted.\"", Some('.'), true),
                ("Mr.", Some('.'), true),
                ("Smith said 3.5", None, true),
                ("new para", None, true),
            ]
        );
    }

    #[test]
    fn long_clauses_are_wrapped_for_espeak() {
        let long = "word ".repeat(400);
        let mut out = String::new();
        push_lines(&mut out, &long);
        assert!(out.lines().all(|l| l.len() <= MAX_LINE_BYTES));
        assert_eq!(out.split_whitespace().count(), 400);
        let p = phonemes(&format!("{long}."));
        assert_eq!(p.len(), 1);
        assert!(p[0].ends_with('.'));
    }

    #[test]
    fn tts_makes_plausible_audio() {
        let tts = EspeakTts::default();
        let pcm = match tts.synthesize("Hello there, how are you today?") {
            Ok(p) => p,
            Err(e) => panic!("espeak-ng failed ({e}); run scripts/setup.sh"),
        };
        assert_eq!(pcm.sample_rate, 22050);
        let secs = pcm.duration_secs();
        assert!((1.0..4.0).contains(&secs), "{secs} s");
        assert!(pcm.rms() > 0.02, "rms {}", pcm.rms());
    }

    #[test]
    fn bad_voice_is_an_error() {
        let err = EspeakTts {
            voice: "zzzz".into(),
            rate_wpm: 175,
        }
        .synthesize("hello")
        .expect_err("fails");
        assert!(matches!(err, SpeechError::Inference { .. }), "{err:?}");
    }

    #[test]
    fn missing_program_is_reported() {
        let err = run_program("/nonexistent/espeak-ng", &[], b"", TIMEOUT).expect_err("missing");
        assert!(matches!(err, SpeechError::Missing { .. }), "{err:?}");
        assert!(err.hint().contains("apt-get install espeak-ng"));
    }

    #[test]
    fn hung_program_is_killed() {
        // `cat` with stdin held open would wait forever; `sleep` stands in for a hang.
        let started = std::time::Instant::now();
        let err = run_program("sleep", &["30".into()], b"", Duration::from_millis(200))
            .expect_err("times out");
        assert!(matches!(err, SpeechError::Inference { .. }), "{err:?}");
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn streamed_wav_header_is_patched() {
        let pcm = Pcm::new(vec![0.25; 100], 22050);
        let mut wav = pcm.to_wav();
        wav[4..8].copy_from_slice(&0x7fff_f000u32.to_le_bytes());
        wav[40..44].copy_from_slice(&0x7fff_f000u32.to_le_bytes());
        patch_streamed_wav(&mut wav).expect("patched");
        assert_eq!(Pcm::from_wav(&wav).expect("decodes").samples.len(), 100);
        assert!(patch_streamed_wav(&mut b"nonsense".to_vec()).is_err());
    }
}
