/**
 * The message log through the admin API (SPEC E2): a query streamed as JSON lines, and replays
 * started, watched and stopped. A bad query (filter, range, offset, time) is a 400 with the reason,
 * before anything is read; no store (durable_sessions.enable = false) is a 503.
 */
import { Readable } from 'node:stream';
import type { FastifyInstance, FastifyReply } from 'fastify';
import { jsonLines, LogQueryError, type LogQueryInput, openLineReader, planQuery } from '../msglog/query.js';
import { checkPrefix, type Replay } from '../msglog/replay.js';
import type { LogSource } from '../msglog/source.js';
import type { DurableStore } from '../native.js';
import { NotFound } from './view.js';

const str = { type: 'string' };
const int = { type: 'integer' };
const errorSchema = { type: 'object', properties: { statusCode: int, error: str, message: str } };
const errors = { 400: errorSchema, 401: errorSchema, 404: errorSchema, 503: errorSchema };
const secured = [{ bearer: [] }];
const queryProps = {
  topic: { type: 'string', minLength: 1, description: 'topic filter' },
  from: { type: 'string', description: 'RFC 3339 time or ms since the epoch (inclusive)' },
  to: { type: 'string', description: 'RFC 3339 time or ms since the epoch (inclusive)' },
  fromOffset: { type: 'string', description: 'N (every shard) or shard:offset,… (a position, as a replay reports it)' },
  toOffset: { type: 'string', description: 'stop before this position' },
  limit: { type: 'integer', minimum: 1 },
};
const progressSchema = {
  type: 'object',
  properties: { id: str, state: str, topic: str, sent: int, total: { type: ['integer', 'null'] }, rate: int, etaSeconds: { type: ['integer', 'null'] }, position: str, until: str, startedAt: str, error: { type: ['string', 'null'] } },
};

function badQuery(e: unknown): unknown {
  return e instanceof LogQueryError ? Object.assign(new Error(e.message), { statusCode: 400 }) : e;
}

function storeOr503(src: LogSource, reply: FastifyReply): DurableStore | null {
  const store = src.logStore();
  if (!store) void reply.code(503).send({ statusCode: 503, error: 'Service Unavailable', message: 'no store: durable_sessions.enable is false' });
  return store;
}

function replayOf(src: LogSource, id: string): Replay {
  const r = src.replays.get(id);
  if (!r) throw new NotFound(`no replay ${JSON.stringify(id)}`);
  return r;
}

export function logRoutes(app: FastifyInstance, src: LogSource): void {
  app.get(
    '/api/v1/log',
    {
      schema: {
        summary: 'logged messages matching a topic filter in a time or offset range, oldest first, as JSON lines (application/x-ndjson), streamed',
        tags: ['log'],
        security: secured,
        querystring: { type: 'object', properties: queryProps, required: ['topic'], additionalProperties: false },
        response: errors,
      },
    },
    async (req, reply) => {
      const store = storeOr503(src, reply);
      if (!store) return reply;
      await src.logCounts()?.settle(); // what was counted so far, in the answer
      let reader;
      try {
        reader = openLineReader(store, planQuery(store, req.query as LogQueryInput), src.msglog.keyProperty);
      } catch (e) {
        throw badQuery(e);
      }
      return reply.type('application/x-ndjson').send(Readable.from(jsonLines(reader)));
    },
  );

  app.post(
    '/api/v1/log/replays',
    {
      schema: {
        summary: 'start a replay: re-publish what a query selects (to its topics, or under toPrefix), at most `rate` messages a second',
        tags: ['log'],
        security: secured,
        body: { type: 'object', properties: { ...queryProps, toPrefix: str, rate: { type: 'integer', minimum: 0 } }, required: ['topic'], additionalProperties: false },
        response: { 201: progressSchema, ...errors },
      },
    },
    async (req, reply) => {
      const store = storeOr503(src, reply);
      if (!store) return reply;
      const body = req.body as LogQueryInput & { toPrefix?: string; rate?: number };
      let plan;
      try {
        checkPrefix(body.toPrefix);
        plan = planQuery(store, body);
      } catch (e) {
        throw badQuery(e);
      }
      const r = src.replays.start(store, plan, src.republisher, { toPrefix: body.toPrefix, rate: body.rate });
      return reply.code(201).send(r.progress());
    },
  );
  app.get('/api/v1/log/replays', { schema: { summary: 'replays, running and finished', tags: ['log'], security: secured, response: { 200: { type: 'array', items: progressSchema }, 401: errorSchema } } }, async () => src.replays.list().map((r) => r.progress()));
  const idParam = { type: 'object', properties: { id: { type: 'string', minLength: 1 } }, required: ['id'] };
  app.get('/api/v1/log/replays/:id', { schema: { summary: 'a replay\'s progress: sent, total, rate, ETA, position to resume from', tags: ['log'], security: secured, params: idParam, response: { 200: progressSchema, ...errors } } }, async (req) => replayOf(src, (req.params as { id: string }).id).progress());
  app.delete('/api/v1/log/replays/:id', { schema: { summary: 'stop a replay after its current batch; its position says where to resume', tags: ['log'], security: secured, params: idParam, response: { 200: progressSchema, ...errors } } }, async (req) => replayOf(src, (req.params as { id: string }).id).stop());
}
