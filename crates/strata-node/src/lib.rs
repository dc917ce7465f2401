//! Thin napi wrappers over strata-core. Only type and error conversion lives here, and
//! the guard (`guard`) that turns a panic into an `ERR_PANIC` error at every entry point.
#[cfg(target_os = "linux")]
mod drain;
mod error;
mod guard;
mod layouts;
mod memory;
mod store;
mod topic;
use napi_derive::napi;

/// Version of the native core.
#[napi]
pub fn core_version() -> napi::Result<String, String> {
    guard::call("coreVersion", || Ok(env!("CARGO_PKG_VERSION").to_string()))
}

/// Give the allocator's free memory back to the system (glibc `malloc_trim(0)`; elsewhere
/// nothing): true when some was released. Called by the broker when it goes quiet.
#[napi]
pub fn release_free_memory() -> napi::Result<bool, String> {
    guard::call("releaseFreeMemory", || Ok(memory::release()))
}

/// Whether this build has the native drain loop (`Store.drain` and `DrainControl`, over a
/// socket's file descriptor): true on Linux only. Elsewhere those are absent from the
/// binding and the broker drains a session's backlog on the event loop.
#[napi]
pub fn native_drain_supported() -> napi::Result<bool, String> {
    guard::call("nativeDrainSupported", || Ok(strata_core::drain::SUPPORTED))
}
