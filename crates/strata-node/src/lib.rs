//! Thin napi wrappers over strata-core. Only type and error conversion lives here, and
//! the guard (`guard`) that turns a panic into an `ERR_PANIC` error at every entry point.
mod drain;
mod error;
mod guard;
mod store;
mod topic;
use napi_derive::napi;

/// Version of the native core.
#[napi]
pub fn core_version() -> napi::Result<String, String> {
    guard::call("coreVersion", || Ok(env!("CARGO_PKG_VERSION").to_string()))
}
