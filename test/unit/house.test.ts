/**
 * The house's arrows (scripts/check-arrows.mjs, run by `npm run lint`): the check itself must
 * catch an import that points up — type-only included — and the tree must have none.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

/** dist/test/unit/house.test.js → <repo>/ */
const ROOT = fileURLToPath(new URL('../../../', import.meta.url));

interface Arrows {
  importsOf(source: string): string[];
  violations(files: [string, string[]][]): [string, string, string][];
  scan(srcDir: string): [string, string[]][];
}
const arrows = (await import(new URL('../../../scripts/check-arrows.mjs', import.meta.url).href)) as Arrows;

test('every import in src/ points down the house', () => {
  assert.deepEqual(arrows.violations(arrows.scan(`${ROOT}src`)), []);
});

test('an import that points up is caught, type-only or not, and so is a room outside the house', () => {
  const source = [
    "import type { Connection } from '../protocol/connection.js';",
    "import { RC } from '../wire/reason-codes.js';",
    'import {',
    '  type Broker,',
    "} from '../broker.js';",
    "export { x } from './queue.js';",
    "const m = await import('../transport/tcp.js');",
  ].join('\n');
  const specs = arrows.importsOf(source);
  assert.deepEqual(specs, ['../protocol/connection.js', '../wire/reason-codes.js', '../broker.js', './queue.js', '../transport/tcp.js']);
  const bad = arrows.violations([
    ['session/delivery.ts', specs],
    ['routing/router.ts', ['../lifecycle/sessions.js']],
    ['server/old.ts', []],
  ]);
  assert.deepEqual(
    bad.map(([from, to]) => `${from} → ${to}`),
    ['session/delivery.ts → protocol/connection.ts', 'session/delivery.ts → broker.ts', 'session/delivery.ts → transport/tcp.ts', 'routing/router.ts → lifecycle/sessions.ts', 'server/old.ts → '],
  );
});

test('admin/ sits between broker.ts and transport/: it may read the rooms below, never the composition root', () => {
  const bad = arrows.violations([
    ['admin/view.ts', ['../session/log-session.js', '../transport/tcp.js', '../protocol/context.js']],
    ['admin/index.ts', ['../broker.js']],
    ['broker.ts', ['./admin/index.js']],
    ['transport/tcp.ts', ['../admin/view.js']],
  ]);
  assert.deepEqual(
    bad.map(([from, to]) => `${from} → ${to}`),
    ['admin/index.ts → broker.ts', 'transport/tcp.ts → admin/view.ts'],
  );
});
