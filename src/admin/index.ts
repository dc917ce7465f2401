/**
 * Operating a running broker: the admin HTTP API with /metrics, /health and /ready (server.ts,
 * metrics.ts), and the `$SYS/broker/...` tree (sys.ts), over a read-only view of the broker's
 * parts (view.ts). broker.ts starts it once its listeners are bound and stops it first on close.
 * fastify and prom-client are loaded only when the API is enabled (admin.port >= 0), at its first
 * request (the port is bound at start).
 */
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import { PACKAGE_VERSION } from '../native.js';
import type { AdminServerOptions } from './server.js';
import { SysPublisher } from './sys.js';
import { adminToken } from './token.js';
import { type AdminSource, AdminView } from './view.js';

export type { AdminSource } from './view.js';

/** The package's version (package.json). */
export const VERSION: string = PACKAGE_VERSION;

export interface Admin {
  /** The admin API's bound port, when it listens. */
  readonly port: number | undefined;
  close(): Promise<void>;
}

/** Start the admin API (admin.port >= 0) and the $SYS publisher (sys.interval > 0). */
export async function startAdmin(b: AdminSource): Promise<Admin> {
  const c = b.config;
  const view = new AdminView(b);
  const sys = new SysPublisher(view, VERSION);
  let server: Server | null = null;
  let app: Promise<{ close(): Promise<unknown> }> | null = null;
  let port: number | undefined;
  if (c['admin.port'] >= 0) {
    const token = adminToken(c, b.log);
    const opts: AdminServerOptions = {
      token,
      metricsPublic: c['admin.metrics_public'],
      version: VERSION,
      ready: () => {
        const store = !c['durable_sessions.enable'] ? 'off' : b.store ? 'open' : 'closed';
        return { ready: store !== 'closed' && b.addresses.tcp !== undefined, store, listeners: { ...b.addresses } };
      },
    };
    // The port is bound now; fastify, its routes and prom-client (~20 MB) are loaded at the
    // first request, which waits for them.
    const s = (await import('node:http')).createServer(); // node's http: loaded only for the API
    s.keepAliveTimeout = 72_000; // fastify's own default for a server it makes
    server = s;
    let handle: ((req: IncomingMessage, res: ServerResponse) => void) | null = null;
    const load = async (): Promise<{ close(): Promise<unknown> }> => {
      const [{ adminApp }, { createMetrics }] = await Promise.all([import('./server.js'), import('./metrics.js')]);
      const made = await adminApp(view, createMetrics(view), opts, s);
      handle = made.handle;
      return made.app;
    };
    s.on('request', (req: IncomingMessage, res: ServerResponse) => {
      if (handle !== null) return handle(req, res);
      (app ??= load()).then(
        () => (handle as (req: IncomingMessage, res: ServerResponse) => void)(req, res),
        (e: unknown) => {
          b.log.error({ err: (e as Error).message }, 'admin API failed to start');
          res.statusCode = 500;
          res.end();
        },
      );
    });
    await new Promise<void>((resolve, reject) => {
      s.once('error', reject);
      s.listen(c['admin.port'], c['admin.host'], () => {
        s.off('error', reject);
        resolve();
      });
    });
    const addr = s.address();
    port = typeof addr === 'object' && addr ? addr.port : c['admin.port'];
    b.addresses.admin = port;
  }
  sys.start(c['sys.interval']);
  return {
    port,
    close: async () => {
      sys.stop();
      await (await app?.catch(() => null))?.close();
      if (server?.listening) {
        server.closeAllConnections();
        await new Promise((resolve) => server?.close(resolve));
      }
    },
  };
}
