// The load workers (load.ts) as the harness drives them: started, ready once every client is
// connected and subscribed, a result at the end; shared by run.ts and interleave.ts.
import { Worker } from 'node:worker_threads';
import type { ClientSpec, WorkerInit, WorkerMsg, WorkerResult } from './load.js';
import { nowNs } from './load.js';

/** Workers alive (terminated on SIGINT / SIGTERM). */
export const liveWorkers = new Set<Worker>();

export function at(ns: number, fn: () => void): NodeJS.Timeout {
  return setTimeout(fn, Math.max(0, (ns - nowNs()) / 1e6));
}

export interface WorkerSlot {
  worker: Worker;
  ready: Promise<void>;
  result: Promise<WorkerResult>;
}

/** Starts a load worker; its promises reject if it reports a fatal error or dies. */
export function startWorker(init: WorkerInit, runtimeErrors: string[]): WorkerSlot {
  const worker = new Worker(new URL('./load.js', import.meta.url), { workerData: init });
  liveWorkers.add(worker);
  let readyRes!: () => void;
  let readyRej!: (e: Error) => void;
  let resultRes!: (r: WorkerResult) => void;
  let resultRej!: (e: Error) => void;
  const ready = new Promise<void>((res, rej) => {
    readyRes = res;
    readyRej = rej;
  });
  const result = new Promise<WorkerResult>((res, rej) => {
    resultRes = res;
    resultRej = rej;
  });
  ready.catch(() => {});
  result.catch(() => {});
  const fail = (e: Error): void => {
    readyRej(e);
    resultRej(e);
  };
  worker.on('message', (m: WorkerMsg) => {
    if (m.type === 'ready') readyRes();
    else if (m.type === 'fatal') fail(new Error(m.error));
    else if (m.type === 'error') runtimeErrors.push(m.error);
    else if (m.type === 'result') resultRes(m);
  });
  worker.on('error', fail);
  worker.on('exit', (code) => fail(new Error(`load worker exited (code ${code})`)));
  return { worker, ready, result };
}

/** `specs` dealt round-robin to at most `workers` load workers (one list each). */
export function dealClients(specs: ClientSpec[], workers: number): ClientSpec[][] {
  const n = Math.max(1, Math.min(workers, specs.length));
  const buckets: ClientSpec[][] = Array.from({ length: n }, () => []);
  specs.forEach((s, i) => buckets[i % n]!.push(s));
  return buckets;
}

/** Messages sent and received so far by the workers sharing `shared` (WorkerInit.counters: slot 2i sent, 2i+1 received). */
export function counterTotals(shared: Int32Array): { sent: number; recv: number } {
  let sent = 0;
  let recv = 0;
  for (let i = 0; i < shared.length; i += 2) {
    sent += Atomics.load(shared, i);
    recv += Atomics.load(shared, i + 1);
  }
  return { sent, recv };
}
