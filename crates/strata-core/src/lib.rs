//! StrataMQ core engine. Pure Rust: nothing here knows about Node.js.
pub mod args;
pub mod drain;
pub mod error;
pub mod fetch;
pub mod frame;
mod fsutil;
pub mod log;
pub mod meta;
mod sched;
pub mod store;
pub mod topic;
