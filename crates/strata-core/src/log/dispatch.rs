//! The log's dispatch thread. Every command for the shard writers goes through it, in the
//! order it was given (an append before a flush stays before it), and a packed append
//! ([`super::Log::append_packed`]) is split by shard there: the caller — the broker's event
//! loop — only copies the bytes, and wakes one thread instead of one per shard.
use super::packed::Split;
use super::shard::{Cmd, ShardDone};
use super::{AppendDone, Completes, Log, Offset, Position};
use crate::error::CoreError;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// Work for the dispatch thread.
pub(super) enum Job {
    /// `count` messages in the packed layout ([`super::packed`]), split by shard there.
    Packed(Vec<u8>, usize, Completes, AppendDone),
    /// A command for shard `.0`.
    Cmd(u32, Cmd),
}

/// The dispatch thread and the way to it.
#[derive(Debug)]
pub(super) struct Dispatcher {
    tx: Mutex<Option<Sender<Job>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Dispatcher {
    /// Starts the thread, forwarding to the shard writers through `shards` (one sender each).
    pub(super) fn start(shards: Vec<Sender<Cmd>>) -> Result<Dispatcher, CoreError> {
        let (tx, rx) = mpsc::channel::<Job>();
        let thread = std::thread::Builder::new()
            .name("strata-dispatch".into())
            .spawn(move || {
                crate::sched::background_thread();
                let n = shards.len() as u32;
                let send = |s: u32, c: Cmd| {
                    if let Err(e) = shards[s as usize].send(c) {
                        fail(e.0, Log::closed_err());
                    }
                };
                for job in rx {
                    match job {
                        Job::Cmd(s, c) => send(s, c),
                        Job::Packed(bytes, count, completes, done) => {
                            match Split::packed(&bytes, count, n) {
                                Ok(split) => route(split, completes, done, &send),
                                Err(e) => done(Err(e)),
                            }
                        }
                    }
                }
            })
            .map_err(|e| CoreError::from_io("spawn the log's dispatch thread", &e))?;
        Ok(Dispatcher {
            tx: Mutex::new(Some(tx)),
            thread: Mutex::new(Some(thread)),
        })
    }

    /// Queues `job`; it comes back when the thread is stopped.
    pub(super) fn send(&self, job: Job) -> Result<(), Job> {
        match self.tx.lock().expect("poisoned").as_ref() {
            Some(tx) => tx.send(job).map_err(|e| e.0),
            None => Err(job),
        }
    }

    /// Stops the thread once it has forwarded everything queued (before the writers stop).
    pub(super) fn close(&self) {
        self.tx.lock().expect("poisoned").take();
        if let Some(t) = self.thread.lock().expect("poisoned").take() {
            let _ = t.join();
        }
    }
}

/// Completes `cmd` with `e` (it will not run).
pub(super) fn fail(cmd: Cmd, e: CoreError) {
    match cmd {
        Cmd::Append(_, d, _) => d(Err(e)),
        Cmd::Flush(d) | Cmd::Roll(d) => d(Err(e)),
        Cmd::DropExpired(d) => d(Err(e)),
        Cmd::RaiseEnd(_, d) => d(Err(e)),
    }
}

/// Fails `job` with `e`.
pub(super) fn fail_job(job: Job, e: CoreError) {
    match job {
        Job::Packed(_, _, _, done) => done(Err(e)),
        Job::Cmd(_, c) => fail(c, e),
    }
}

/// Sends each shard its part of `split` through `send`; `done` gets the positions in input
/// order once every part completed (the first error otherwise).
pub(super) fn route(split: Split, completes: Completes, done: AppendDone, send: &dyn Fn(u32, Cmd)) {
    if split.total == 0 {
        return done(Ok(Vec::new()));
    }
    let total = split.total;
    let mut groups = split.groups;
    if groups.len() == 1 {
        let (first, _, msgs) = groups.pop().expect("one group");
        let count = msgs.len() as u64;
        let cb: ShardDone = Box::new(move |r| {
            done(r.map(|o| {
                (o..o + count)
                    .map(|x| Position {
                        shard: first,
                        offset: Offset(x),
                    })
                    .collect()
            }))
        });
        return send(first, Cmd::Append(msgs, cb, completes));
    }
    // Mixed shards: join the completions.
    struct Join {
        out: Mutex<(Vec<Position>, Option<CoreError>, Option<AppendDone>)>,
        left: AtomicUsize,
    }
    let live = groups.len();
    let join = Arc::new(Join {
        out: Mutex::new((
            vec![
                Position {
                    shard: 0,
                    offset: Offset(0)
                };
                total
            ],
            None,
            Some(done),
        )),
        left: AtomicUsize::new(live),
    });
    for (s, idx, ms) in groups {
        let j = join.clone();
        let cb: ShardDone = Box::new(move |r| {
            {
                let mut g = j.out.lock().expect("poisoned");
                match r {
                    Ok(o) => {
                        for (k, i) in idx.iter().enumerate() {
                            g.0[*i] = Position {
                                shard: s,
                                offset: Offset(o + k as u64),
                            };
                        }
                    }
                    Err(e) => {
                        g.1.get_or_insert(e);
                    }
                }
            }
            if j.left.fetch_sub(1, Ordering::AcqRel) == 1 {
                let mut g = j.out.lock().expect("poisoned");
                let done = g.2.take().expect("completed once");
                let res = match g.1.take() {
                    Some(e) => Err(e),
                    None => Ok(std::mem::take(&mut g.0)),
                };
                drop(g);
                done(res);
            }
        });
        send(s, Cmd::Append(ms, cb, completes));
    }
}
