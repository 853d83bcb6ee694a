//! libasound prints its own errors straight to stderr ("ALSA lib confmisc.c:855:
//! (parse_card) cannot find card '0'" and a dozen more on a machine without a sound
//! card), which fills the daemon's log with lines that are neither ours nor actionable.
//! We install a handler that counts them and keeps them at `debug` level (target
//! `alsa`), and [`super::open`] logs one line of its own instead.

use std::ffi::{CStr, c_char, c_int};
use std::sync::Once;
use std::sync::atomic::{AtomicU64, Ordering};

static INSTALL: Once = Once::new();
static SEEN: AtomicU64 = AtomicU64::new(0);

/// Receives libasound's errors. The C type is variadic; the arguments after `fmt` are
/// not read (stable Rust cannot), so the debug line shows the message's format.
/// Must not panic: it is called from C.
unsafe extern "C" fn quiet_handler(
    file: *const c_char,
    line: c_int,
    function: *const c_char,
    err: c_int,
    fmt: *const c_char,
) {
    SEEN.fetch_add(1, Ordering::Relaxed);
    if tracing::enabled!(target: "alsa", tracing::Level::DEBUG) {
        let text = |p: *const c_char| {
            if p.is_null() {
                String::new()
            } else {
                // SAFETY: libasound passes NUL-terminated strings that live for the call.
                unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
            }
        };
        tracing::debug!(
            target: "alsa",
            file = %text(file),
            line,
            function = %text(function),
            err,
            "{}",
            text(fmt)
        );
    }
}

/// Routes libasound's error messages away from stderr (once per process).
pub fn install() {
    INSTALL.call_once(|| {
        type Fixed =
            unsafe extern "C" fn(*const c_char, c_int, *const c_char, c_int, *const c_char);
        let fixed: Fixed = quiet_handler;
        // SAFETY: a function pointer is reinterpreted as the variadic handler type
        // libasound calls. On the Linux ABIs (x86-64 System V, AArch64 AAPCS) a callee
        // that takes the fixed leading arguments and ignores the rest is called
        // correctly through a variadic pointer.
        let handler: alsa_sys::snd_lib_error_handler_t = Some(unsafe {
            std::mem::transmute::<
                Fixed,
                unsafe extern "C" fn(
                    *const c_char,
                    c_int,
                    *const c_char,
                    c_int,
                    *const c_char,
                    ...
                ),
            >(fixed)
        });
        // SAFETY: sets a process-wide function pointer; no other state is touched.
        unsafe { alsa_sys::snd_lib_error_set_handler(handler) };
    });
}

/// How many messages libasound has reported so far.
pub fn messages_seen() -> u64 {
    SEEN.load(Ordering::Relaxed)
}
