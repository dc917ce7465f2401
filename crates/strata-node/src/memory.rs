//! The allocator's free memory given back to the system.
//!
//! The core and the binding allocate with the system allocator (glibc's malloc on Linux), and
//! so do V8 (off-heap buffers, compiler zones) and libuv. glibc keeps what was freed in its
//! arenas — one per thread that allocated, the store's writer threads included — and returns
//! only the free top of an arena above a threshold that grows with the process's largest
//! allocations. After a burst (200k retained messages published: the metadata writer's
//! transactions, the packed batches) tens of MB stay resident, free. `malloc_trim(0)` hands
//! every arena's free pages back (`MADV_DONTNEED`), the middle of the heap included.

/// Release the free memory of every malloc arena; true when some was released. A no-op
/// (false) where the allocator is not glibc's.
pub fn release() -> bool {
    imp::release()
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
mod imp {
    extern "C" {
        fn malloc_trim(pad: usize) -> i32;
    }

    #[allow(unsafe_code)]
    pub fn release() -> bool {
        // SAFETY: glibc's malloc_trim takes the arenas' locks itself and only releases pages
        // of chunks that are free; it may be called from any thread at any time.
        unsafe { malloc_trim(0) != 0 }
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
mod imp {
    pub fn release() -> bool {
        false
    }
}
