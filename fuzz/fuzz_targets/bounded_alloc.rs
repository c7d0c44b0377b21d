//! Every fuzz target's allocator: the system's, refusing any single allocation above
//! `LIMIT` with a message and an abort, which libFuzzer reports as a crash with its input.
//! (libFuzzer's own `-malloc_limit_mb` needs a sanitizer's malloc hooks; these targets build
//! without one. `-rss_limit_mb` bounds the total either way.)

use std::alloc::{GlobalAlloc, Layout, System};

const LIMIT: usize = 256 << 20;

pub struct Bounded;

// SAFETY: every call is forwarded unchanged to `System`, whose contract it keeps; an
// allocation above the limit never reaches it.
unsafe impl GlobalAlloc for Bounded {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        check(layout.size());
        // SAFETY: the caller keeps `alloc`'s contract, which `System` needs.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        check(layout.size());
        // SAFETY: as for `alloc`.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        check(new_size);
        // SAFETY: the caller keeps `realloc`'s contract: `ptr` came from this allocator.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller keeps `dealloc`'s contract: `ptr` came from this allocator.
        unsafe { System.dealloc(ptr, layout) }
    }
}

fn check(size: usize) {
    if size > LIMIT {
        // No formatting machinery here: it would allocate.
        let _ = std::io::Write::write_all(
            &mut std::io::stderr(),
            b"==bounded_alloc== a single allocation above 256 MiB\n",
        );
        std::process::abort();
    }
}
