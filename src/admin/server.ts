/**
 * The admin HTTP API (fastify): every route validates its input with a JSON schema, the schemas
 * make the OpenAPI document (`@fastify/swagger`, served at /api/v1/openapi.json), and every
 * route but /health and /ready (and /metrics with admin.metrics_public) wants the bearer token.
 * Errors are JSON: `{ statusCode, error, message }` — 400 bad input, 401 no or wrong token,
 * 404 nothing by that name, 503 not ready / no store.
 */
import fastifySwagger from '@fastify/swagger';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import Fastify, { type FastifyInstance } from 'fastify';
import type { Registry } from 'prom-client';
import { validateTopicFilter } from '../native.js';
import { logRoutes } from './log-routes.js';
import { bearerMatches } from './token.js';
import { NotFound, page, type AdminView } from './view.js';

export interface AdminServerOptions {
  token: string;
  metricsPublic: boolean;
  version: string;
  /** Whether the broker is ready (store open, listeners bound). */
  ready: () => { ready: boolean; store: 'open' | 'off' | 'closed'; listeners: Record<string, number | undefined> };
}

const obj = (properties: Record<string, unknown>, required: string[] = []): Record<string, unknown> => ({ type: 'object', properties, required, additionalProperties: true });
const str = { type: 'string' };
const int = { type: 'integer' };
const bool = { type: 'boolean' };
const nullable = (t: string): Record<string, unknown> => ({ type: [t, 'null'] });

const errorSchema = obj({ statusCode: int, error: str, message: str }, ['statusCode', 'message']);
const clientSchema = obj(
  {
    clientId: str,
    connected: bool,
    username: nullable('string'),
    remoteAddress: nullable('string'),
    protocolVersion: nullable('integer'),
    persistent: bool,
    expiryInterval: int,
    subscriptions: int,
    inflight: int,
    queued: int,
  },
  ['clientId', 'connected'],
);
const subscriptionSchema = obj({ clientId: str, filter: str, qos: int, noLocal: bool, retainAsPublished: bool, retainHandling: int, subscriptionId: nullable('integer') });
const messageSchema = obj({ topic: str, qos: int, retain: bool, publisher: str, receivedAt: int, payloadBytes: int, payload: nullable('string'), payloadBase64: nullable('string'), inflight: bool });
const pageOf = (item: Record<string, unknown>): Record<string, unknown> => obj({ total: int, page: int, limit: int, items: { type: 'array', items: item } }, ['total', 'items']);
const paging = { page: { type: 'integer', minimum: 1, default: 1 }, limit: { type: 'integer', minimum: 1, maximum: 10000, default: 100 } };
const clientIdParam = { type: 'object', properties: { clientid: { type: 'string', minLength: 1 } }, required: ['clientid'] };
const errors = { 400: errorSchema, 401: errorSchema, 404: errorSchema };
const secured = [{ bearer: [] }];

/**
 * The API's routes on `server` (listening already, made by the caller): returns the fastify
 * instance, ready, and the handler its requests go to.
 */
export async function adminApp(view: AdminView, metrics: Registry, opts: AdminServerOptions, server: Server): Promise<{ app: FastifyInstance; handle: (req: IncomingMessage, res: ServerResponse) => void }> {
  let handle: ((req: IncomingMessage, res: ServerResponse) => void) | null = null;
  // Query strings: `connected=true` as a boolean, numbers as numbers (ajv coercion), no extra keys.
  const app = Fastify({
    logger: false,
    ajv: { customOptions: { coerceTypes: true, removeAdditional: false } },
    serverFactory: (h) => {
      handle = h;
      return server;
    },
  });
  await app.register(fastifySwagger, {
    openapi: {
      openapi: '3.0.3',
      info: { title: 'StrataMQ admin API', version: opts.version, description: 'Clients, sessions, subscriptions, retained messages, storage, the message log (query, replay); /metrics (Prometheus); /health, /ready.' },
      components: { securitySchemes: { bearer: { type: 'http', scheme: 'bearer', description: 'admin.token, or the token in <data_dir>/admin.token' } } },
    },
  });

  const open = new Set(['/health', '/ready']);
  if (opts.metricsPublic) open.add('/metrics');
  app.addHook('onRequest', async (req, reply) => {
    const path = req.url.split('?')[0] as string;
    if (open.has(path)) return;
    if (!bearerMatches(req.headers.authorization, opts.token)) {
      await reply
        .code(401)
        .header('www-authenticate', 'Bearer')
        .send({ statusCode: 401, error: 'Unauthorized', message: req.headers.authorization ? 'wrong token' : 'a bearer token is required (Authorization: Bearer <admin token>)' });
    }
  });
  app.setErrorHandler((err: Error & { statusCode?: number; validation?: unknown }, _req, reply) => {
    if (err instanceof NotFound) return reply.code(404).send({ statusCode: 404, error: 'Not Found', message: err.message });
    const code = err.validation ? 400 : (err.statusCode ?? 500);
    if (code >= 500) view.b.log.error({ err: err.message }, 'admin API error');
    return reply.code(code).send({ statusCode: code, error: code === 400 ? 'Bad Request' : 'Error', message: err.message });
  });
  app.setNotFoundHandler((req, reply) => reply.code(404).send({ statusCode: 404, error: 'Not Found', message: `no route ${req.method} ${req.url.split('?')[0]}` }));

  app.get('/health', { schema: { summary: 'liveness: the process serves HTTP', tags: ['health'], response: { 200: obj({ status: str }) } } }, async () => ({ status: 'ok' }));
  app.get(
    '/ready',
    { schema: { summary: 'readiness: the store is open (when durable) and the listeners are bound', tags: ['health'], response: { 200: obj({ ready: bool, store: str, listeners: { type: 'object', additionalProperties: true } }), 503: obj({ ready: bool, store: str }) } } },
    async (_req, reply) => {
      const r = opts.ready();
      return reply.code(r.ready ? 200 : 503).send(r);
    },
  );
  app.get('/metrics', { schema: { summary: 'Prometheus text format', tags: ['metrics'], security: opts.metricsPublic ? [] : secured, response: { 200: str, 401: errorSchema } } }, async (_req, reply) => {
    return reply.header('content-type', metrics.contentType).send(await metrics.metrics());
  });
  app.get('/api/v1/openapi.json', { schema: { summary: 'this document', tags: ['meta'], security: secured } }, async () => app.swagger());

  app.get(
    '/api/v1/clients',
    {
      schema: {
        summary: 'clients (connected ones, and persistent sessions away), by client id',
        tags: ['clients'],
        security: secured,
        querystring: { type: 'object', properties: { ...paging, username: str, clientid: { type: 'string', description: 'client id prefix' }, connected: bool }, additionalProperties: false },
        response: { 200: pageOf(clientSchema), ...errors },
      },
    },
    async (req) => {
      const q = req.query as { page: number; limit: number; username?: string; clientid?: string; connected?: boolean };
      return page(view.clients({ username: q.username, clientid: q.clientid, connected: q.connected }), q.page, q.limit);
    },
  );
  app.get('/api/v1/clients/:clientid', { schema: { summary: 'one client', tags: ['clients'], security: secured, params: clientIdParam, response: { 200: clientSchema, ...errors } } }, async (req) => {
    const { clientid } = req.params as { clientid: string };
    const found = view.clients({}).find((c) => c.clientId === clientid);
    if (!found) throw new NotFound(`no client ${JSON.stringify(clientid)}`);
    return found;
  });
  app.delete('/api/v1/clients/:clientid', { schema: { summary: 'kick: disconnect the client (v5: DISCONNECT 0x98 Administrative action); its session stays', tags: ['clients'], security: secured, params: clientIdParam, response: { 204: { type: 'null' }, ...errors } } }, async (req, reply) => {
    view.kick((req.params as { clientid: string }).clientid);
    return reply.code(204).send();
  });

  app.get(
    '/api/v1/sessions',
    {
      schema: {
        summary: 'sessions, by client id',
        tags: ['sessions'],
        security: secured,
        querystring: { type: 'object', properties: { ...paging, clientid: { type: 'string', description: 'client id prefix' }, connected: bool }, additionalProperties: false },
        response: { 200: pageOf(clientSchema), ...errors },
      },
    },
    async (req) => {
      const q = req.query as { page: number; limit: number; clientid?: string; connected?: boolean };
      return page(view.clients({ clientid: q.clientid, connected: q.connected }), q.page, q.limit);
    },
  );
  app.get(
    '/api/v1/sessions/:clientid',
    {
      schema: {
        summary: 'one session: subscriptions, queue depth, in flight, and its waiting messages (a persistent session: as the store has them)',
        tags: ['sessions'],
        security: secured,
        params: clientIdParam,
        querystring: { type: 'object', properties: { limit: { type: 'integer', minimum: 0, maximum: 10000, default: 100 } }, additionalProperties: false },
        response: { 200: obj({ ...(clientSchema.properties as object), dropped: int, subscriptionList: { type: 'array', items: subscriptionSchema }, messages: { type: 'array', items: messageSchema } }), ...errors },
      },
    },
    async (req) => view.sessionDetail((req.params as { clientid: string }).clientid, (req.query as { limit: number }).limit),
  );
  app.delete('/api/v1/sessions/:clientid', { schema: { summary: 'discard: end the session (disconnecting its client, 0x98) and delete its durable state', tags: ['sessions'], security: secured, params: clientIdParam, response: { 204: { type: 'null' }, ...errors } } }, async (req, reply) => {
    await view.discard((req.params as { clientid: string }).clientid);
    return reply.code(204).send();
  });

  app.get(
    '/api/v1/subscriptions',
    {
      schema: {
        summary: 'subscriptions, optionally of one client',
        tags: ['subscriptions'],
        security: secured,
        querystring: { type: 'object', properties: { ...paging, clientid: { type: 'string', minLength: 1 } }, additionalProperties: false },
        response: { 200: pageOf(subscriptionSchema), ...errors },
      },
    },
    async (req) => {
      const q = req.query as { page: number; limit: number; clientid?: string };
      return page(view.subscriptions(q.clientid), q.page, q.limit);
    },
  );

  app.get(
    '/api/v1/retained',
    {
      schema: {
        summary: 'retained messages whose topic matches a filter',
        tags: ['retained'],
        security: secured,
        querystring: { type: 'object', properties: { ...paging, filter: { type: 'string', minLength: 1, default: '#' } }, additionalProperties: false },
        response: { 200: pageOf(messageSchema), ...errors },
      },
    },
    async (req) => {
      const q = req.query as { page: number; limit: number; filter: string };
      const bad = validateTopicFilter(q.filter);
      if (bad) throw Object.assign(new Error(`bad filter: ${bad}`), { statusCode: 400 });
      return view.retained(q.filter, q.page, q.limit);
    },
  );
  app.delete(
    '/api/v1/retained/*',
    { schema: { summary: 'clear a retained topic (durably, as an empty retained publish; the topic is the rest of the path, URL-encoded)', tags: ['retained'], security: secured, params: { type: 'object', properties: { '*': { type: 'string', minLength: 1 } }, required: ['*'] }, response: { 204: { type: 'null' }, ...errors } } },
    async (req, reply) => {
      const topic = (req.params as { '*': string })['*'];
      if (/[+#\0]/.test(topic)) throw Object.assign(new Error('a topic name, not a filter (no + or #)'), { statusCode: 400 });
      await view.deleteRetained(topic);
      return reply.code(204).send();
    },
  );

  app.get('/api/v1/storage', { schema: { summary: 'the embedded store: site, shards, generations, messages, bytes, losses (as `stratamq ds info`)', tags: ['storage'], security: secured, response: { 200: { type: 'object', additionalProperties: true }, 401: errorSchema, 503: errorSchema } } }, async (_req, reply) => {
    const info = view.storage();
    if (!info) return reply.code(503).send({ statusCode: 503, error: 'Service Unavailable', message: 'no store: durable_sessions.enable is false' });
    return info;
  });

  app.get('/api/v1/backends', { schema: { summary: 'backend pools (up, connection errors, last error) and rules (events matched, done, failed; their queue: queued, handled, failed, dropped, waiting)', tags: ['backends'], security: secured, response: { 200: { type: 'object', additionalProperties: true }, 401: errorSchema } } }, async () => view.backends());

  logRoutes(app, view.b);

  await app.ready();
  return { app, handle: handle as unknown as (req: IncomingMessage, res: ServerResponse) => void };
}

