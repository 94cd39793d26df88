//! The process's allocator: mimalloc, asked for plain (unaligned) blocks wherever a plain block
//! is aligned enough.
//!
//! `mimalloc::MiMalloc` asks for every block with `mi_malloc_aligned`, whose checks and, for
//! blocks over 1 KiB, over-allocation cost about twice what `mi_malloc` does; a large `check`
//! allocates millions of blocks (docs/performance.md). Every mimalloc block is aligned to at
//! least 8 bytes (`MI_INTPTR_SIZE`, the smallest block size), which is all but a few Rust
//! types ask for; those few still go through the aligned calls.

use std::alloc::{GlobalAlloc, Layout};
use std::ffi::c_void;

use libmimalloc_sys as mi;

/// The alignment every block `mi_malloc` returns has.
const PLAIN_ALIGN: usize = 8;

pub struct Allocator;

// SAFETY: each method passes the caller's request on to mimalloc, which returns a block of at
// least `layout.size()` bytes aligned to `layout.align()` (by `PLAIN_ALIGN` for the plain
// calls, by the aligned calls otherwise), or null; every block is freed by `mi_free`, which
// takes blocks from all of these calls.
unsafe impl GlobalAlloc for Allocator {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: see the impl.
        unsafe {
            if layout.align() <= PLAIN_ALIGN {
                mi::mi_malloc(layout.size()).cast()
            } else {
                mi::mi_malloc_aligned(layout.size(), layout.align()).cast()
            }
        }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: see the impl.
        unsafe {
            if layout.align() <= PLAIN_ALIGN {
                mi::mi_zalloc(layout.size()).cast()
            } else {
                mi::mi_zalloc_aligned(layout.size(), layout.align()).cast()
            }
        }
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, _layout: Layout) {
        // SAFETY: `ptr` came from one of the calls above (the `GlobalAlloc` contract).
        unsafe { mi::mi_free(ptr.cast::<c_void>()) }
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: `ptr` came from one of the calls above with `layout`; the block keeps its
        // alignment as above.
        unsafe {
            if layout.align() <= PLAIN_ALIGN {
                mi::mi_realloc(ptr.cast::<c_void>(), new_size).cast()
            } else {
                mi::mi_realloc_aligned(ptr.cast::<c_void>(), new_size, layout.align()).cast()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Blocks of every size and alignment come back aligned and usable, through a reallocation
    /// too.
    #[test]
    fn blocks_are_aligned_as_asked() {
        let a = Allocator;
        for align in [1, 2, 4, 8, 16, 32, 64, 4096] {
            for size in [1, 7, 8, 15, 16, 24, 100, 1024, 1025, 5000, 70_000, 1 << 21] {
                let layout = Layout::from_size_align(size, align).expect("a valid layout");
                // SAFETY: a non-zero size; each block is written within its size and freed
                // once, with the layout it was made with.
                unsafe {
                    for zeroed in [false, true] {
                        let p = if zeroed {
                            a.alloc_zeroed(layout)
                        } else {
                            a.alloc(layout)
                        };
                        assert!(!p.is_null());
                        assert_eq!(p as usize % align, 0, "size {size} align {align}");
                        if zeroed {
                            assert!((0..size).all(|i| *p.add(i) == 0));
                        }
                        p.write_bytes(0xab, size);
                        let q = a.realloc(p, layout, size * 3);
                        assert!(!q.is_null());
                        assert_eq!(q as usize % align, 0, "realloc size {size} align {align}");
                        assert!((0..size).all(|i| *q.add(i) == 0xab));
                        a.dealloc(q, Layout::from_size_align(size * 3, align).expect("valid"));
                    }
                }
            }
        }
    }
}
