//! llama.cpp's process-wide setup: the backend, initialised once, and its log lines
//! routed to tracing.

use std::ffi::{CStr, c_char, c_void};
use std::sync::{Mutex, Once, OnceLock};

use llama_cpp_2::llama_backend::LlamaBackend;
use tracing::{debug, warn};

use crate::llm::LlmError;

/// The llama.cpp backend, initialised once per process and shared by all providers.
pub(super) fn backend() -> Result<&'static LlamaBackend, LlmError> {
    static BACKEND: OnceLock<Result<LlamaBackend, String>> = OnceLock::new();
    BACKEND
        .get_or_init(|| LlamaBackend::init().map_err(|e| e.to_string()))
        .as_ref()
        .map_err(|e| LlmError::ModelLoad(format!("cannot initialise llama.cpp: {e}")))
}

/// Sends llama.cpp's and ggml's log lines to tracing at debug level (errors at warn):
/// left alone they go to stderr, a hundred lines per model load.
///
/// The target is under `llama_cpp_2`, so a filter for the binding covers them too.
pub(super) fn init_llama_logging() {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        // SAFETY: the callback is a plain function valid for the whole program, and the
        // user data pointer is unused.
        unsafe { llama_cpp_sys_2::llama_log_set(Some(llama_log), std::ptr::null_mut()) };
    });
}

/// Partial line llama.cpp has sent without its newline yet.
static LOG_LINE: Mutex<(u32, String)> = Mutex::new((0, String::new()));

unsafe extern "C" fn llama_log(
    level: llama_cpp_sys_2::ggml_log_level,
    text: *const c_char,
    _user_data: *mut c_void,
) {
    if text.is_null() {
        return;
    }
    // SAFETY: llama.cpp passes a NUL-terminated string that lives for this call.
    let text = unsafe { CStr::from_ptr(text) }.to_string_lossy();
    let mut pending = LOG_LINE
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if level != llama_cpp_sys_2::GGML_LOG_LEVEL_CONT {
        pending.0 = level;
    }
    pending.1.push_str(&text);
    while let Some(end) = pending.1.find('\n') {
        let line: String = pending.1.drain(..=end).collect();
        let line = line.trim_end();
        if line.is_empty() {
            continue;
        }
        if pending.0 == llama_cpp_sys_2::GGML_LOG_LEVEL_ERROR {
            warn!(target: "llama_cpp_2::native", "{line}");
        } else {
            debug!(target: "llama_cpp_2::native", "{line}");
        }
    }
}
