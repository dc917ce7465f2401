/**
 * The shared registry suite (test/registry-suite.ts) on the embedded store and on a user's own
 * module loaded from its path (test/fixtures/file-registry.ts), and the checks a module meets at start.
 */
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { startBroker, tempDir } from '../helpers.js';
import { registrySuite, withDataDir } from '../registry-suite.js';

const MODULE = fileURLToPath(new URL('../fixtures/file-registry.js', import.meta.url));

registrySuite('embedded', async () => withDataDir({}));
registrySuite('user module', async () => withDataDir({ 'persistence.registry': MODULE }));

test('a registry module that does not implement the interface stops the start, naming what is missing', async () => {
  const tmp = tempDir();
  try {
    const partial = join(tmp.dir, 'partial.mjs');
    writeFileSync(partial, 'export default { open() {}, close() {}, loadSessions() {}, putSession() {} };\n');
    await assert.rejects(startBroker({ dataDir: tmp.dir, config: { 'persistence.registry': partial } }), (e: Error) => {
      assert.equal(e.name, 'RegistryError');
      assert.match(e.message, /persistence\.registry = .*partial\.mjs: not a QueueRegistry, missing methods deleteSession, putSubscription, deleteSubscription, saveSessionMessages, getSessionMessages, setInflight, complete, pinRetained, unpinRetained, addInbound, releaseInbound, saveRetainMessage, getRetainMessage, loadRetained/);
      return true;
    });
    const empty = join(tmp.dir, 'empty.mjs');
    writeFileSync(empty, 'export const nothing = 1;\n');
    await assert.rejects(startBroker({ dataDir: tmp.dir, config: { 'persistence.registry': empty } }), /exports neither createRegistry nor a default export/);
    await assert.rejects(startBroker({ dataDir: tmp.dir, config: { 'persistence.registry': join(tmp.dir, 'missing.mjs') } }), /persistence\.registry = .*missing\.mjs: cannot load/);
    await assert.rejects(startBroker({ config: { 'persistence.registry': 'mongodb' } }), /persistence\.registry must match/);
  } finally {
    tmp.remove();
  }
});
