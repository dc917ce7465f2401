//! No panic may abort the process. napi-rs calls the binding from `extern "C"` callbacks
//! (and runs `AsyncTask::compute` from libuv's), so a panic unwinding out of Rust aborts
//! Node. Every way in goes through this module instead:
//!
//! - [`call`]: synchronous functions, methods, getters and constructors; [`call_at`] also
//!   for the `compute` and `resolve` of an `AsyncTask`;
//! - [`promise`]: methods returning a Promise settled through a deferred. A panic in their
//!   synchronous part rejects the Promise they return (no throw: the Promise exists by then);
//! - [`Pending`]: that deferred. Its last step runs on the thread that settles it (a shard or
//!   metadata writer, a background or drain thread: [`Pending::run`], [`Pending::completion`],
//!   [`spawn`]) under the guard; and dropped unsettled — that thread panicked in core code and
//!   unwound past the completion, dropping it — it rejects, so the Promise never hangs.
//!
//! A caught panic becomes `ERR_PANIC: panic in <Operation>: <panic message>` (the
//! `"CODE: text"` convention of `crate::error`; synchronous throws also set
//! `error.code = "ERR_PANIC"`). The default panic hook still prints the message and where it
//! happened to stderr (injected panics excepted). `<Operation>` is the JS name (`Store.open`,
//! `TopicTrie.match`).
//!
//! Why not napi-rs' own `#[napi(catch_unwind)]`: it guards only the generated function glue
//! (not `AsyncTask::compute`/`resolve`, which napi-rs calls from plain `extern "C"` callbacks,
//! nor threads settling a deferred; a `JsDeferred` dropped unsettled leaves its Promise pending
//! and its threadsafe function holding the event loop), and its error is napi's
//! `GenericFailure` with the bare payload, without a code or the operation. Left outside this
//! guard: napi-rs' own argument and return-value conversions around each body.
//!
//! After a caught panic the process and every other object keep working. The binding's own
//! mutexes are taken with [`lock`], which recovers a guard a panic poisoned: each guards state
//! that no panic leaves half-changed (a map insert or remove, an `Option` taken or cloned). The
//! object whose method panicked keeps whatever state the panic left it in; core state behind a
//! core lock the panic poisoned reports `ERR_PANIC` on each later use — reopen the store.
//!
//! Fault injection ([`test_inject_panic`]): sites are `"<Operation>"` (the synchronous call),
//! `"<Operation>/thread"` (its step off the JS thread: `compute` of an `AsyncTask`, the
//! completion on a core, background or drain thread), `"<Operation>/resolve"` (`resolve` of an
//! `AsyncTask`), `"<Operation>/unguarded"` (a `Pending` operation's thread, outside the guard:
//! as a core panic would, it unwinds that thread and drops the completion), and
//! `"DrainControl.run/loop"` (inside the drain loop, from the frame source it calls). Unarmed,
//! a check is one relaxed atomic load.
use crate::error::to_napi;
use napi::bindgen_prelude::{Object, ToNapiValue};
use napi::{Env, JsDeferred, Status};
use napi_derive::napi;
use std::any::Any;
use std::cell::RefCell;
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Once, PoisonError};
use strata_core::error::CoreError;

/// The stable code of a caught panic.
pub const CODE: &str = "ERR_PANIC";
/// Injection step: the operation's work off the JS thread, inside the guard.
pub const THREAD: &str = "/thread";
/// Injection step: `AsyncTask::resolve`, on the JS thread.
pub const RESOLVE: &str = "/resolve";
/// Injection step: the thread settling a [`Pending`], outside the guard.
pub const UNGUARDED: &str = "/unguarded";

fn message(op: &str, text: &str) -> String {
    format!("{CODE}: panic in {op}: {text}")
}

fn payload_text(p: &(dyn Any + Send)) -> String {
    match (p.downcast_ref::<&str>(), p.downcast_ref::<String>()) {
        (Some(s), _) => (*s).to_string(),
        (_, Some(s)) => s.clone(),
        _ => "panic payload is not a string".into(),
    }
}

/// The error a caught panic becomes, for either status type an entry point returns.
pub trait FromPanic {
    fn from_panic(message: String) -> Self;
}

impl FromPanic for napi::Error<String> {
    /// Synchronous throws: `error.code` is `ERR_PANIC`.
    fn from_panic(message: String) -> Self {
        napi::Error::new(CODE.to_string(), message)
    }
}

impl FromPanic for napi::Error {
    /// Promise rejections: the code is in the message prefix only (see `crate::error`).
    fn from_panic(message: String) -> Self {
        napi::Error::new(Status::GenericFailure, message)
    }
}

/// Runs the body of the synchronous entry point `op`, a panic becoming its error.
pub fn call<T, E: FromPanic>(op: &'static str, f: impl FnOnce() -> Result<T, E>) -> Result<T, E> {
    call_at(op, "", f)
}

/// [`call`] for one step of `op` (`""`, [`THREAD`], [`RESOLVE`]: the injection site).
pub fn call_at<T, E: FromPanic>(
    op: &'static str,
    step: &str,
    f: impl FnOnce() -> Result<T, E>,
) -> Result<T, E> {
    panic::catch_unwind(AssertUnwindSafe(|| {
        inject(op, step);
        f()
    }))
    .unwrap_or_else(|p| Err(E::from_panic(message(op, &payload_text(&*p)))))
}

/// Runs the body of `op`, an entry point returning a Promise, with that Promise's
/// [`Pending`]; returns the Promise. A panic drops the `Pending` (unless a thread holds it
/// already), which rejects the Promise with the panic's message.
pub fn promise<'env, T: ToNapiValue + Send + 'static>(
    env: &'env Env,
    op: &'static str,
    f: impl FnOnce(Pending<T>),
) -> napi::Result<Object<'env>> {
    let (pending, promise) = Pending::new(env, op)?;
    // The payload is dropped: `pending`'s drop already rejected with its message.
    let _ = panic::catch_unwind(AssertUnwindSafe(move || {
        inject(op, "");
        f(pending)
    }));
    Ok(promise)
}

pub(crate) type Resolver<T> = Box<dyn FnOnce(Env) -> napi::Result<T> + Send>;

/// The deferred of operation `op`'s Promise, settled exactly once: by `resolve`, `reject`,
/// `settle` or `run`, or else by its drop, which rejects with `ERR_PANIC` (a napi deferred
/// dropped unsettled would leave the Promise pending forever and its threadsafe function
/// holding the event loop open).
pub struct Pending<T: ToNapiValue + Send + 'static> {
    op: &'static str,
    deferred: Option<JsDeferred<T, Resolver<T>>>,
}

impl<T: ToNapiValue + Send + 'static> Pending<T> {
    pub fn new<'env>(env: &'env Env, op: &'static str) -> napi::Result<(Self, Object<'env>)> {
        HOOK.call_once(install_hook);
        let (d, promise) = env.create_deferred::<T, Resolver<T>>()?;
        Ok((
            Pending {
                op,
                deferred: Some(d),
            },
            promise,
        ))
    }

    pub fn resolve(mut self, v: T) {
        if let Some(d) = self.deferred.take() {
            d.resolve(Box::new(move |_| Ok(v)));
        }
    }

    pub fn reject(self, e: CoreError) {
        self.reject_with(to_napi(e));
    }

    fn reject_with(mut self, e: napi::Error) {
        if let Some(d) = self.deferred.take() {
            d.reject(e);
        }
    }

    pub fn settle(self, r: Result<T, CoreError>) {
        match r {
            Ok(v) => self.resolve(v),
            Err(e) => self.reject(e),
        }
    }

    /// Runs the operation's last step — on the thread that completes it — under the
    /// guard, and settles with what it returns: a panic rejects with `ERR_PANIC` and goes
    /// no further (the calling core thread carries on).
    pub fn run(self, f: impl FnOnce() -> Result<T, CoreError>) {
        let op = self.op;
        inject(op, UNGUARDED);
        match panic::catch_unwind(AssertUnwindSafe(|| {
            inject(op, THREAD);
            f()
        })) {
            Ok(r) => self.settle(r),
            Err(p) => self.reject_with(napi::Error::from_panic(message(op, &payload_text(&*p)))),
        }
    }

    /// A completion for a core writer (`Log::append`, `MetaStore::apply`): [`Pending::run`]
    /// converting the core's result with `f`.
    pub fn completion<U>(
        self,
        f: impl FnOnce(U) -> T + Send + 'static,
    ) -> Box<dyn FnOnce(Result<U, CoreError>) + Send> {
        Box::new(move |r| self.run(|| r.map(f)))
    }
}

impl<T: ToNapiValue + Send + 'static> Drop for Pending<T> {
    fn drop(&mut self) {
        let Some(d) = self.deferred.take() else {
            return;
        };
        // Unwinding: this thread's panic hook ran first and left the message.
        let why = if std::thread::panicking() {
            LAST_PANIC
                .try_with(|l| l.try_borrow().ok().and_then(|m| m.clone()))
                .ok()
                .flatten()
                .unwrap_or_else(|| "unknown panic".into())
        } else {
            "its completion was dropped without running".into()
        };
        d.reject(napi::Error::from_panic(message(self.op, &why)));
    }
}

/// Runs `f` on a new thread named `name` and settles `p` with its result through
/// [`Pending::run`]; a thread that cannot start rejects `p` with `ERR_STORE_IO`.
pub fn spawn<T: ToNapiValue + Send + 'static>(
    name: &str,
    p: Pending<T>,
    f: impl FnOnce() -> Result<T, CoreError> + Send + 'static,
) {
    let slot = Arc::new(Mutex::new(Some(p)));
    let theirs = slot.clone();
    let started = std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            let p = lock(&theirs).take();
            if let Some(p) = p {
                p.run(f);
            }
        });
    if let Err(e) = started {
        let p = lock(&slot).take();
        if let Some(p) = p {
            p.reject(CoreError::Io(format!("spawn {name}: {e}")));
        }
    }
}

/// Locks a mutex of the binding, recovering it if a caught panic poisoned it (see the
/// module doc: the binding's mutexes guard state no panic leaves half-changed).
pub fn lock<T: ?Sized>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

thread_local! {
    /// The message of this thread's latest panic, for a `Pending` dropped while unwinding.
    static LAST_PANIC: RefCell<Option<String>> = const { RefCell::new(None) };
}

static HOOK: Once = Once::new();

/// Chains a hook before the current one (the default prints to stderr) that keeps the
/// panic's message for [`Pending`]'s drop, and spares stderr the panics injected on
/// purpose. Installed with the first `Pending` or injection.
fn install_hook() {
    let prev = panic::take_hook();
    panic::set_hook(Box::new(move |info| {
        let text = payload_text(info.payload());
        let injected = text.starts_with(INJECTED);
        let _ = LAST_PANIC.try_with(|l| {
            if let Ok(mut l) = l.try_borrow_mut() {
                *l = Some(text);
            }
        });
        if !injected {
            prev(info);
        }
    }));
}

/// How an injected panic's message starts.
const INJECTED: &str = "injected panic at ";
static ARMED: AtomicBool = AtomicBool::new(false);
static TARGET: Mutex<Option<String>> = Mutex::new(None);

/// Panics here if [`test_inject_panic`] armed the site `op` + `step`.
#[inline]
pub fn inject(op: &str, step: &str) {
    if ARMED.load(Ordering::Relaxed) {
        fire(op, step);
    }
}

#[cold]
#[inline(never)]
fn fire(op: &str, step: &str) {
    let mut target = lock(&TARGET);
    if target.as_deref().and_then(|t| t.strip_prefix(op)) == Some(step) {
        *target = None;
        ARMED.store(false, Ordering::Relaxed);
        drop(target);
        panic!("{INJECTED}{op}{step} (testInjectPanic)");
    }
}

/// Test only: makes the site `site` panic the next time it runs, once (sites: see
/// docs/storage.md, "Errors"; e.g. `Store.open/thread`); `null` disarms. Returns the site
/// that was armed and has not fired, or null.
#[napi]
// napi-derive registers exports only outside `cfg(test)` (see topic.rs).
#[cfg_attr(test, allow(dead_code))]
pub fn test_inject_panic(site: Option<String>) -> napi::Result<Option<String>, String> {
    call("testInjectPanic", || {
        HOOK.call_once(install_hook);
        let mut target = lock(&TARGET);
        let armed = site.is_some();
        let prev = std::mem::replace(&mut *target, site);
        ARMED.store(armed, Ordering::Relaxed);
        Ok(prev)
    })
}
