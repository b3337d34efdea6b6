//! Catching an input's panic with its message and location, without the
//! default hook printing thousands of them.
//!
//! The panic hook is process-wide, and tests run in parallel threads: the hook
//! installed here captures only panics on threads that are inside [`catch`]
//! and hands every other panic to the hook it replaced, so a failing test
//! elsewhere still prints its message.

use std::any::Any;
use std::cell::{Cell, RefCell};
use std::panic::{self, AssertUnwindSafe};
use std::sync::Once;

/// A caught panic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Caught {
    /// The panic message.
    pub(crate) message: String,
    /// `file:line:column` of the panic, when the hook saw it.
    pub(crate) location: Option<String>,
}

thread_local! {
    /// Whether this thread is inside [`catch`].
    static CAPTURING: Cell<bool> = const { Cell::new(false) };
    /// What the hook saw of the last panic on this thread.
    static CAUGHT: RefCell<Option<Caught>> = const { RefCell::new(None) };
}

static INSTALL: Once = Once::new();

/// Installs the capturing hook (once per process).
pub(crate) fn install() {
    INSTALL.call_once(|| {
        let previous = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            let capturing = CAPTURING.try_with(Cell::get).unwrap_or(false);
            if !capturing {
                previous(info);
                return;
            }
            let caught = Caught {
                message: payload_text(info.payload()),
                location: info
                    .location()
                    .map(|l| format!("{}:{}:{}", l.file(), l.line(), l.column())),
            };
            // Ignored if the thread is being torn down: the payload still says what happened.
            let _ = CAUGHT.try_with(|c| *c.borrow_mut() = Some(caught));
        }));
    });
}

/// Runs `f`, turning a panic into a [`Caught`].
///
/// `AssertUnwindSafe`: after a panic the harness may hold half-updated state;
/// every harness starts each input from scratch, which is what makes this sound.
pub(crate) fn catch<T>(f: impl FnOnce() -> T) -> Result<T, Caught> {
    install();
    CAUGHT.with(|c| c.borrow_mut().take());
    CAPTURING.with(|c| c.set(true));
    let result = panic::catch_unwind(AssertUnwindSafe(f));
    CAPTURING.with(|c| c.set(false));
    result.map_err(|payload| {
        CAUGHT
            .with(|c| c.borrow_mut().take())
            .unwrap_or_else(|| Caught {
                message: payload_text(&*payload),
                location: None,
            })
    })
}

/// The text of a panic payload (`panic!` gives a `&str` or a `String`).
fn payload_text(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic with a non-string payload".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_is_caught_with_its_message_and_location() {
        let caught = catch(|| -> u32 { panic!("boom {}", 7) }).unwrap_err();
        assert_eq!(caught.message, "boom 7");
        let location = caught.location.unwrap();
        assert!(location.contains("panic_capture.rs"), "{location}");
        assert_eq!(catch(|| 5), Ok(5));
    }
}
