//! Failures at the C boundary: an errno for the return value and a message for
//! `kiseki_last_error`, kept per thread.

use std::cell::RefCell;
use std::ffi::{c_char, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};

/// One failed call: what C sees (`-errno`) and what `kiseki_last_error` says.
#[derive(Debug)]
pub(crate) struct Fail {
    pub errno: i32,
    pub message: String,
}

pub(crate) type Result<T, E = Fail> = std::result::Result<T, E>;

impl Fail {
    pub fn new(errno: i32, message: impl Into<String>) -> Self {
        Fail {
            errno,
            message: message.into(),
        }
    }
}

impl From<kiseki_core::Error> for Fail {
    fn from(e: kiseki_core::Error) -> Self {
        Fail::new(e.errno(), e.to_string())
    }
}

thread_local! {
    static LAST: RefCell<CString> = RefCell::new(CString::default());
}

pub(crate) fn set_last(message: &str) {
    // Interior NULs cannot be represented in a C string; they cannot come from our
    // messages except through user-supplied names, where a replacement is fine.
    let c = CString::new(message.replace('\0', "\\0")).unwrap_or_default();
    LAST.with(|l| *l.borrow_mut() = c);
}

/// The message of this thread's last failure; valid until this thread's next failing
/// call.
pub(crate) fn last_ptr() -> *const c_char {
    LAST.with(|l| l.borrow().as_ptr())
}

/// Return types that carry `-errno` on failure.
pub(crate) trait Errno {
    fn negative(errno: i32) -> Self;
}

impl Errno for i32 {
    fn negative(errno: i32) -> Self {
        -errno
    }
}

impl Errno for i64 {
    fn negative(errno: i32) -> Self {
        -i64::from(errno)
    }
}

impl Errno for isize {
    fn negative(errno: i32) -> Self {
        -(errno as isize)
    }
}

/// Runs one entry point: its value on success; `-errno` on failure, with the message
/// recorded. A panic is caught (unwinding into C is undefined behaviour) and is EIO.
pub(crate) fn call<T, F>(name: &str, f: F) -> T
where
    T: Errno,
    F: FnOnce() -> Result<T>,
{
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(v)) => v,
        Ok(Err(fail)) => {
            set_last(&format!("{name}: {}", fail.message));
            T::negative(fail.errno)
        }
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            tracing::error!("{name}: internal error: {what}");
            set_last(&format!("{name}: internal error: {what}"));
            T::negative(libc::EIO)
        }
    }
}
