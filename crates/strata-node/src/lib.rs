//! Thin napi wrappers over strata-core. Only type and error conversion lives here.
mod drain;
mod error;
mod store;
mod topic;
use napi_derive::napi;

/// Version of the native core.
#[napi]
pub fn core_version() -> String {
    env!("CARGO_PKG_VERSION").to_string()
}
