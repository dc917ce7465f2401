/**
 * The session-store seam. The broker asks this for sessions and tells it when they change;
 * this in-memory store keeps them for the process lifetime (sessions that expire are
 * removed by the broker). Persistence is not done here: a persistent session reports its
 * progress to its `SessionPersistence` (src/session/durable.ts), and the broker rebuilds the
 * sessions in this store from the embedded store at start.
 */
import { Session } from './session.js';

export interface SessionStore {
  get(clientId: string): Session | undefined;
  /** Create (replacing any previous) session for a client id. */
  create(clientId: string): Session;
  delete(clientId: string): void;
  readonly size: number;
  [Symbol.iterator](): IterableIterator<Session>;
}

export class MemorySessionStore implements SessionStore {
  private readonly sessions = new Map<string, Session>();

  get(clientId: string): Session | undefined {
    return this.sessions.get(clientId);
  }

  create(clientId: string): Session {
    const s = new Session(clientId);
    this.sessions.set(clientId, s);
    return s;
  }

  delete(clientId: string): void {
    this.sessions.delete(clientId);
  }

  get size(): number {
    return this.sessions.size;
  }

  [Symbol.iterator](): IterableIterator<Session> {
    return this.sessions.values();
  }
}
