//! An over-long line is discarded as it streams in, never buffered whole.
//!
//! Its own test binary, because it measures the process's heap with a counting
//! global allocator and other tests running alongside would disturb that.

// Helpers here are test code too: a panic is how they report a failure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};

use protocol::stream::{JsonLineReader, LineError};
use serde_json::{Value, json};
use tokio::io::{AsyncRead, ReadBuf};

struct Counting;

static CURRENT: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

fn track_alloc(size: usize) {
    let now = CURRENT.fetch_add(size, Ordering::SeqCst) + size;
    PEAK.fetch_max(now, Ordering::SeqCst);
}

// SAFETY: every call is passed to the system allocator unchanged; the
// counters only observe sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract for `alloc` is passed on as is.
        let ptr = unsafe { System.alloc(layout) };
        if !ptr.is_null() {
            track_alloc(layout.size());
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System` with this layout (see `alloc`).
        unsafe { System.dealloc(ptr, layout) };
        CURRENT.fetch_sub(layout.size(), Ordering::SeqCst);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: as for `dealloc`; the caller's contract is passed on.
        let new = unsafe { System.realloc(ptr, layout, new_size) };
        if !new.is_null() {
            CURRENT.fetch_sub(layout.size(), Ordering::SeqCst);
            track_alloc(new_size);
        }
        new
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// `flood` bytes of `x` without a newline, then `tail`; generated, so it takes no memory itself.
struct Flood {
    flood: usize,
    tail: &'static [u8],
}

impl AsyncRead for Flood {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.flood > 0 {
            let n = self.flood.min(buf.remaining());
            buf.initialize_unfilled_to(n).fill(b'x');
            buf.advance(n);
            self.flood -= n;
        } else {
            let n = self.tail.len().min(buf.remaining());
            buf.put_slice(&self.tail[..n]);
            self.tail = &self.tail[n..];
        }
        Poll::Ready(Ok(()))
    }
}

#[tokio::test(flavor = "current_thread")]
async fn over_long_line_is_never_buffered_whole() {
    const FLOOD: usize = 32 << 20;
    let mut reader = JsonLineReader::with_max_line_len(
        Flood {
            flood: FLOOD,
            tail: b"\n{\"after\":true}\n",
        },
        1024,
    );
    let baseline = CURRENT.load(Ordering::SeqCst);
    PEAK.store(baseline, Ordering::SeqCst);

    let err = reader.next::<Value>().await.unwrap_err();
    let peak = PEAK.load(Ordering::SeqCst) - baseline;

    assert!(
        peak < 1 << 20,
        "reading a {FLOOD}-byte line with a 1 KiB limit allocated {peak} bytes at peak"
    );
    assert!(matches!(
        LineError::from_io(&err),
        Some(LineError::TooLong { limit: 1024 })
    ));
    assert_eq!(
        reader.next::<Value>().await.unwrap(),
        Some(json!({"after": true}))
    );
    assert_eq!(reader.next::<Value>().await.unwrap(), None);
}
