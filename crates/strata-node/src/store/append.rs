//! Appends: `append` (message objects) and `appendPacked` (one buffer in the layout of
//! `strata_core::log::packed`, `layouts().packed`).
use super::{dto, AppendMessage, AppendPosition, Store};
use crate::guard::{self, Pending};
use napi::bindgen_prelude::{Float64Array, Object};
use napi::Env;
use napi_derive::napi;
use strata_core::log::{Completes, NewMessage, Position};

#[napi]
impl Store {
    /// Appends messages; resolves with their positions once durable per the fsync
    /// policy (group commit), rejects with `ERR_STORE_DISK_FULL` etc.
    #[napi(ts_return_type = "Promise<Array<AppendPosition>>")]
    pub fn append<'env>(
        &self,
        env: &'env Env,
        messages: Vec<AppendMessage>,
    ) -> napi::Result<Object<'env>> {
        guard::promise(env, "Store.append", |p: Pending<Vec<AppendPosition>>| {
            let inner = match self.get() {
                Ok(i) => i,
                Err(e) => return p.reject(e),
            };
            let msgs = messages
                .into_iter()
                .map(|m| NewMessage {
                    publisher: m.publisher.into_bytes(),
                    topic: m.topic,
                    qos: m.qos.min(255) as u8,
                    retain: m.retain,
                    properties: m.properties.map(|b| b.to_vec()).unwrap_or_default(),
                    payload: m.payload.to_vec(),
                    inbound_id: 0,
                })
                .collect();
            inner.log.append(
                msgs,
                p.completion(|v: Vec<Position>| v.iter().map(dto::append_position).collect()),
            );
        })
    }

    /// Appends `count` messages packed in one buffer (layout: `layouts().packed`, see
    /// `strata_core::log::packed`: per message a 16-byte little-endian header — publisher,
    /// topic, properties and payload lengths, QoS, retain, the publisher's QoS 2 packet id
    /// (0 = none, see `findInbound`) — then those bytes) without a JS object per message.
    /// Resolves like `append`, with the positions as one `Float64Array` of
    /// `[shard, offset]` pairs in input order. Rejects with `ERR_INVALID_ARGUMENT` for a
    /// buffer that does not hold exactly `count` well-formed messages (or a topic that is
    /// not UTF-8). `durable` (default true): under fsync `always`, resolve once synced;
    /// false: once written (`Completes::Written`: synced with the shard's next durable
    /// append or `LAZY_SYNC_MS` later; for appends nothing is acknowledged on).
    #[napi(ts_return_type = "Promise<Float64Array>")]
    pub fn append_packed<'env>(
        &self,
        env: &'env Env,
        packed: &[u8],
        count: u32,
        durable: Option<bool>,
    ) -> napi::Result<Object<'env>> {
        guard::promise(env, "Store.appendPacked", |p: Pending<Float64Array>| {
            let inner = match self.get() {
                Ok(i) => i,
                Err(e) => return p.reject(e),
            };
            let completes = if durable.unwrap_or(true) {
                Completes::Durable
            } else {
                Completes::Written
            };
            // Copied here; split by shard (and checked) on the log's dispatch thread.
            inner.log.append_packed(
                packed.to_vec(),
                count as usize,
                completes,
                p.completion(|v: Vec<Position>| {
                    let mut out = Vec::with_capacity(v.len() * 2);
                    for p in v {
                        out.push(p.shard as f64);
                        out.push(p.offset.0 as f64);
                    }
                    Float64Array::new(out)
                }),
            );
        })
    }
}
