/**
 * Operating a running broker: the admin HTTP API with /metrics, /health and /ready (server.ts,
 * metrics.ts), and the `$SYS/broker/...` tree (sys.ts), over a read-only view of the broker's
 * parts (view.ts). broker.ts starts it once its listeners are bound and stops it first on close.
 * fastify and prom-client are loaded only when the API is enabled (admin.port >= 0).
 */
import { PACKAGE_VERSION } from '../native.js';
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
  let app: { close(): Promise<unknown> } | null = null;
  let port: number | undefined;
  if (c['admin.port'] >= 0) {
    const token = adminToken(c, b.log);
    const [{ startAdminServer }, { createMetrics }] = await Promise.all([import('./server.js'), import('./metrics.js')]);
    const started = await startAdminServer(view, createMetrics(view), {
      host: c['admin.host'],
      port: c['admin.port'],
      token,
      metricsPublic: c['admin.metrics_public'],
      version: VERSION,
      ready: () => {
        const store = !c['durable_sessions.enable'] ? 'off' : b.store ? 'open' : 'closed';
        return { ready: store !== 'closed' && b.addresses.tcp !== undefined, store, listeners: { ...b.addresses } };
      },
    });
    app = started.app;
    port = started.port;
    b.addresses.admin = port;
  }
  sys.start(c['sys.interval']);
  return {
    port,
    close: async () => {
      sys.stop();
      await app?.close();
    },
  };
}
