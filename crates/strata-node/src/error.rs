//! The one place a `CoreError` becomes a JS error.
//!
//! The message is `"<CODE>: <text>"` (e.g. `ERR_INVALID_TOPIC: invalid topic: '#'
//! must be the last level of a topic filter`), so the stable code survives any path
//! to JS — synchronous throws and Promise rejections alike; for synchronous throws the
//! code is also the napi status, which napi-rs exposes as `error.code`. JS callers
//! should read the prefix (`/^(ERR_[A-Z_]+): /`), which every path carries.
use napi::Status;
use strata_core::error::CoreError;

/// For synchronous throws: `error.code` is the stable code, the message starts with it.
pub fn to_napi_coded(e: CoreError) -> napi::Error<String> {
    napi::Error::new(e.code().to_string(), format!("{}: {e}", e.code()))
}

/// For Promise rejections (deferreds, async tasks), where the error status must be a
/// `napi::Status`: the stable code is carried by the message prefix, and
/// `error.code` is napi's own `GenericFailure`.
pub fn to_napi(e: CoreError) -> napi::Error {
    napi::Error::new(Status::GenericFailure, format!("{}: {e}", e.code()))
}
