//! How the store's own threads (metadata writer, log dispatch and shard writers, the shard-ends
//! refresher) are scheduled beside the thread that feeds them.
//!
//! The caller (Node.js's event loop, in the broker) hands work over through a channel and goes
//! on; the handover wakes the worker. Under Linux's default policy a woken thread may preempt the
//! one that woke it, so on a busy machine with few cores the event loop stopped inside the send
//! while the writer ran its commit: a metadata commit's hand-over cost the event loop 30–50 µs
//! instead of 3–5. `SCHED_BATCH` keeps the worker's share of the CPU (its nice value is
//! unchanged) and only gives up that wake-up preemption. Elsewhere, or when the call is refused,
//! nothing changes.

/// Schedules the calling thread as a batch thread (see the module's documentation).
pub(crate) fn background_thread() {
    #[cfg(target_os = "linux")]
    linux_batch();
}

#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
fn linux_batch() {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: sched_setscheduler only reads `param`, which lives across the call; pid 0 is the
    // calling thread. A refusal (a seccomp filter, say) leaves the default policy.
    let _ = unsafe { libc::sched_setscheduler(0, libc::SCHED_BATCH, &param) };
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    #[test]
    #[allow(unsafe_code)]
    fn a_background_thread_runs_under_sched_batch() {
        let policy = std::thread::spawn(|| {
            super::background_thread();
            // SAFETY: no arguments beyond the calling thread.
            unsafe { libc::sched_getscheduler(0) }
        })
        .join()
        .unwrap();
        assert_eq!(policy, libc::SCHED_BATCH);
    }
}
