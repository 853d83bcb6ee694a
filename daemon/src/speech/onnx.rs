//! ONNX Runtime for the speech models (Silero VAD, Piper).
//!
//! The runtime is a shared library loaded at run time (`ort`'s `load-dynamic`), not linked
//! or downloaded at build time: builds stay offline, and the setup script installs the
//! library next to the models. One runtime environment serves the whole process (ONNX
//! Runtime allows only one), so every session is created through [`session`].

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use ort::environment::Environment;
use ort::logging::LogLevel;
use ort::session::Session;
use ort::session::builder::GraphOptimizationLevel;

use super::SpeechError;

/// Environment variable naming the ONNX Runtime shared library (the name `ort` itself uses).
pub const DYLIB_ENV: &str = "ORT_DYLIB_PATH";

const WHAT: &str = "ONNX Runtime library";
const MISSING_HINT: &str = "run scripts/fetch-model.sh --only onnxruntime, or set ORT_DYLIB_PATH";

static ENVIRONMENT: OnceLock<Environment> = OnceLock::new();
/// Serialises first-time loading so two engines starting together load the library once.
static INIT: Mutex<()> = Mutex::new(());

/// Where the setup script installs the library: `<models dir>/onnxruntime/libonnxruntime.so`.
pub fn default_library_path() -> PathBuf {
    library_in(&vtuber_shared::paths::models_dir())
}

/// `<models_dir>/onnxruntime/libonnxruntime.so`.
pub fn library_in(models_dir: &Path) -> PathBuf {
    models_dir.join("onnxruntime").join(format!(
        "{}onnxruntime{}",
        std::env::consts::DLL_PREFIX,
        std::env::consts::DLL_SUFFIX
    ))
}

/// The library for a configuration: `speech.onnxruntime`, else `$ORT_DYLIB_PATH`, else
/// the one in the configured models folder (not the default folder: a user who moved
/// the models moved the library with them, as `conf.yaml` documents).
pub fn configured_library(explicit: Option<&Path>, models_dir: &Path) -> PathBuf {
    chosen_library(explicit).unwrap_or_else(|| library_in(models_dir))
}

/// `explicit`, else `$ORT_DYLIB_PATH` when set.
fn chosen_library(explicit: Option<&Path>) -> Option<PathBuf> {
    explicit.map(Path::to_path_buf).or_else(|| {
        std::env::var_os(DYLIB_ENV)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    })
}

/// The library [`init_runtime`] would load: `explicit`, else `$ORT_DYLIB_PATH`, else the
/// default. The first one given wins, so a wrong setting is reported rather than silently
/// replaced by another library.
pub fn library_path(explicit: Option<&Path>) -> PathBuf {
    chosen_library(explicit).unwrap_or_else(default_library_path)
}

/// Loads ONNX Runtime and creates the process-wide environment. Idempotent: once it has
/// succeeded, later calls return at once (whatever `lib` they pass). A failure is not
/// remembered, so fixing the path and calling again works.
pub fn init_runtime(lib: Option<&Path>) -> Result<(), SpeechError> {
    environment(lib).map(|_| ())
}

/// Whether [`init_runtime`] has succeeded in this process.
pub fn is_initialized() -> bool {
    ENVIRONMENT.get().is_some()
}

fn environment(lib: Option<&Path>) -> Result<&'static Environment, SpeechError> {
    if let Some(env) = ENVIRONMENT.get() {
        return Ok(env);
    }
    let _guard = INIT.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(env) = ENVIRONMENT.get() {
        return Ok(env);
    }
    let path = library_path(lib);
    check_library(&path)?;
    let load_error = |reason: String| SpeechError::Load {
        what: WHAT,
        path: path.clone(),
        reason,
    };
    let builder = ort::init_from(&path).map_err(|e| load_error(e.to_string()))?;
    let env = builder
        .with_name("vtuber")
        .with_telemetry(false)
        .with_logger(Arc::new(log_to_tracing))
        .build()
        .map_err(|e| load_error(e.to_string()))?;
    // A custom logger starts at verbose; session creation would format hundreds of lines.
    env.set_log_level(LogLevel::Warning);
    tracing::info!(path = %path.display(), "loaded ONNX Runtime");
    Ok(ENVIRONMENT.get_or_init(|| env))
}

/// `ort` resolves relative names against the executable's folder and reports a bare
/// dlopen error; a missing file deserves the actionable error instead.
fn check_library(path: &Path) -> Result<(), SpeechError> {
    if path.is_file() {
        Ok(())
    } else {
        Err(SpeechError::Missing {
            what: WHAT,
            path: path.to_path_buf(),
            hint: MISSING_HINT.into(),
        })
    }
}

/// ONNX Runtime's own messages go to the daemon log rather than stderr.
fn log_to_tracing(level: LogLevel, category: &str, _id: &str, location: &str, message: &str) {
    match level {
        LogLevel::Verbose | LogLevel::Info => {
            tracing::debug!(target: "onnxruntime", category, location, "{message}");
        }
        LogLevel::Warning => tracing::warn!(target: "onnxruntime", category, "{message}"),
        LogLevel::Error | LogLevel::Fatal => {
            tracing::error!(target: "onnxruntime", category, location, "{message}");
        }
    }
}

/// Creates an inference session for `model` (`what` names it in errors), initialising the
/// runtime from the default places if nobody did yet. `intra_threads` bounds the threads
/// one run uses: the daemon shares the CPU with the LLM, so engines ask for few.
pub fn session(
    model: &Path,
    what: &'static str,
    intra_threads: usize,
) -> Result<Session, SpeechError> {
    let env = environment(None)?;
    let load_error = |reason: String| SpeechError::Load {
        what,
        path: model.to_path_buf(),
        reason,
    };
    let step = |r: ort::session::builder::BuilderResult| r.map_err(|e| load_error(e.to_string()));
    let builder = Session::builder(env).map_err(|e| load_error(e.to_string()))?;
    let builder = step(builder.with_optimization_level(GraphOptimizationLevel::All))?;
    let builder = step(builder.with_intra_threads(intra_threads.max(1)))?;
    let builder = step(builder.with_inter_threads(1))?;
    // Spinning workers would burn a core between the short runs engines make.
    let mut builder = step(builder.with_intra_op_spinning(false))?;
    builder
        .commit_from_file(model)
        .map_err(|e| load_error(e.to_string()))
}

/// Names of a session's inputs, for checking a model has what an engine feeds it.
pub fn input_names(session: &Session) -> Vec<String> {
    session
        .inputs()
        .iter()
        .map(|i| i.name().to_owned())
        .collect()
}

/// A one-line summary of a session's inputs and outputs with their types, for logs.
pub fn describe_io(session: &Session) -> String {
    let list = |outlets: &[ort::value::Outlet]| {
        outlets
            .iter()
            .map(|o| format!("{}: {}", o.name(), o.dtype()))
            .collect::<Vec<_>>()
            .join(", ")
    };
    format!(
        "inputs [{}] outputs [{}]",
        list(session.inputs()),
        list(session.outputs())
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Real-library tests fail loudly with the fix rather than skipping: CI installs it.
    pub(crate) fn require_runtime() {
        if let Err(e) = init_runtime(None) {
            panic!(
                "ONNX Runtime is not available ({e}); run scripts/setup.sh (or {})",
                e.hint()
            );
        }
    }

    #[test]
    fn runtime_loads_and_is_idempotent() {
        require_runtime();
        assert!(is_initialized());
        // A second call with a bogus path is a no-op once loaded.
        init_runtime(Some(Path::new("/nonexistent/libonnxruntime.so"))).expect("idempotent");
    }

    #[test]
    fn missing_library_says_how_to_get_it() {
        let err = check_library(Path::new("/nonexistent/libonnxruntime.so")).expect_err("missing");
        assert!(
            matches!(err, SpeechError::Missing { what: WHAT, .. }),
            "{err:?}"
        );
        assert!(err.hint().contains("fetch-model.sh --only onnxruntime"));
    }

    #[test]
    fn explicit_path_wins_over_environment() {
        let p = Path::new("/some/where/libonnxruntime.so");
        assert_eq!(library_path(Some(p)), p);
        assert!(default_library_path().ends_with("models/onnxruntime/libonnxruntime.so"));
        assert_eq!(configured_library(Some(p), Path::new("/m")), p);
    }

    #[test]
    fn configured_models_folder_holds_the_library() {
        if std::env::var_os(DYLIB_ENV).is_some() {
            return; // the environment variable rightly wins; nothing to check here
        }
        assert_eq!(
            configured_library(None, Path::new("/srv/models")),
            Path::new("/srv/models/onnxruntime/libonnxruntime.so")
        );
    }

    #[test]
    fn missing_model_is_reported_as_load_error_not_panic() {
        require_runtime();
        let Err(err) = session(Path::new("/nonexistent/model.onnx"), "test model", 1) else {
            panic!("no such model")
        };
        assert!(matches!(err, SpeechError::Load { .. }), "{err:?}");
    }
}
