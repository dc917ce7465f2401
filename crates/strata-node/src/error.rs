//! The one place a `CoreError` becomes a JS error.
//!
//! The message is `"<CODE>: <text>"` (e.g. `ERR_INVALID_TOPIC: invalid topic: '#'
//! must be the last level of a topic filter`), so the stable code survives any path
//! to JS; for synchronous throws the code is also the napi status, which napi-rs
//! exposes as `error.code`.
use napi::Status;
use strata_core::error::CoreError;

/// For synchronous throws: `error.code` is the stable code, the message starts with it.
pub fn to_napi_coded(e: CoreError) -> napi::Error<String> {
    napi::Error::new(e.code().to_string(), format!("{}: {e}", e.code()))
}

/// For Promise rejections, where the error status must be a `napi::Status`: the
/// stable code is carried by the message prefix.
#[allow(dead_code)] // for async bindings (the store binding keeps its own copy for now)
pub fn to_napi(e: CoreError) -> napi::Error {
    napi::Error::new(Status::GenericFailure, format!("{}: {e}", e.code()))
}
