/**
 * `stratamq passwd` as a user runs it (a child process): -c -b creates a file whose entry
 * verifies, a password read from standard input, -D, mosquitto_passwd's files edited in place,
 * and exit codes (1 failure, 2 wrong usage) with a message on stderr.
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, describe, test } from 'node:test';
import { PasswordFile } from '../../src/auth/password-file.js';

/** dist/test/integration/passwd-cli.test.js → dist/src/cli/main.js */
const CLI = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));
const MOSQUITTO_PASSWD = '/usr/bin/mosquitto_passwd';

const dir = mkdtempSync(join(tmpdir(), 'strata-passwd-cli-'));
after(() => rmSync(dir, { recursive: true, force: true }));
let n = 0;
const fresh = (): string => join(dir, `pw-${++n}`);

/** Run `stratamq passwd …` with `input` on a piped (not a TTY) standard input. */
function passwd(args: string[], input = ''): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI, 'passwd', ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), 20000);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
    child.stdin.end(input);
  });
}

const pw = (s: string): Buffer => Buffer.from(s);

describe('stratamq passwd', () => {
  test('-c -b FILE USER PASSWORD creates a 0600 file whose entry verifies; more users are added', async () => {
    const p = fresh();
    let r = await passwd(['-c', '-b', p, 'alice', 'a-secret']);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(statSync(p).mode & 0o777, 0o600);
    r = await passwd(['-b', p, 'bob', 'b-secret']);
    assert.equal(r.code, 0, r.stderr);
    const f = await PasswordFile.load(p);
    assert.deepEqual(f.usernames(), ['alice', 'bob']);
    assert.equal(await f.verify('alice', pw('a-secret')), true);
    assert.equal(await f.verify('bob', pw('b-secret')), true);
    assert.equal(await f.verify('bob', pw('a-secret')), false);
    // -c again starts over.
    r = await passwd(['-c', '-b', p, 'carol', 'c']);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual((await PasswordFile.load(p)).usernames(), ['carol']);
  });

  test('without -b and without a terminal: one line of standard input is the password', async () => {
    const p = fresh();
    const r = await passwd(['-c', p, 'dave'], 'from stdin\nignored\n');
    assert.equal(r.code, 0, r.stderr);
    const f = await PasswordFile.load(p);
    assert.equal(await f.verify('dave', pw('from stdin')), true);
    const empty = await passwd([p, 'erin'], '');
    assert.equal(empty.code, 1);
    assert.match(empty.stderr, /no password on standard input/);
    const blank = await passwd([p, 'erin'], '\n');
    assert.equal(blank.code, 1);
    assert.match(blank.stderr, /empty password/);
  });

  test('-D deletes a user and keeps the others; an unknown user is exit 1', async () => {
    const p = fresh();
    await passwd(['-c', '-b', p, 'alice', 'a']);
    await passwd(['-b', p, 'bob', 'b']);
    let r = await passwd(['-D', p, 'alice']);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual((await PasswordFile.load(p)).usernames(), ['bob']);
    r = await passwd(['-D', p, 'alice']);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /^stratamq passwd: user "alice" not found in /);
  });

  test('wrong usage is exit 2 with a message; a missing file without -c is exit 1', async () => {
    const p = fresh();
    for (const [args, why] of [
      [['-c', '-D', p, 'u'], /-c and -D cannot be used together/],
      [['-b', p, 'u'], /-b needs the password/],
      [['-c', p, 'u', 'pw'], /needs -b/],
      [['-D', p, 'u', 'pw'], /-D takes no password/],
      [['-c', '-b', p, 'a:b', 'pw'], /cannot contain ":"/],
      [['-c', '-b', p], /missing required argument/],
    ] as [string[], RegExp][]) {
      const r = await passwd(args);
      assert.notEqual(r.code, 0, args.join(' '));
      if (!why.source.includes('missing')) assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
      assert.match(r.stderr, why, args.join(' '));
    }
    assert.equal(existsSync(p), false, 'nothing was written');
    const r = await passwd(['-b', p, 'u', 'pw']);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /no such password file \(create it with -c\)/);
  });

  test("a mosquitto_passwd file: stratamq passwd adds and changes users and keeps mosquitto's entries", { skip: existsSync(MOSQUITTO_PASSWD) ? false : `${MOSQUITTO_PASSWD} is not installed` }, async () => {
    const p = fresh();
    for (const args of [
      ['-c', '-b', p, 'm1', 'one'],
      ['-b', p, 'm2', 'two'],
      ['-H', 'sha512', '-b', p, 'm3', 'three'],
    ]) {
      const m = spawnSync(MOSQUITTO_PASSWD, args, { encoding: 'utf8' });
      assert.equal(m.status, 0, m.stderr);
    }
    const before = readFileSync(p, 'utf8').split('\n');
    let r = await passwd(['-b', p, 's1', 'four']);
    assert.equal(r.code, 0, r.stderr);
    r = await passwd(['-b', p, 'm2', 'two-changed']);
    assert.equal(r.code, 0, r.stderr);
    const after = readFileSync(p, 'utf8').split('\n');
    assert.equal(after[0], before[0]);
    assert.equal(after[2], before[2]);
    assert.match(after[1] as string, /^m2:\$argon2id\$/);
    const f = await PasswordFile.load(p);
    assert.deepEqual(f.usernames(), ['m1', 'm2', 'm3', 's1']);
    assert.equal(await f.verify('m1', pw('one')), true);
    assert.equal(await f.verify('m2', pw('two')), false);
    assert.equal(await f.verify('m2', pw('two-changed')), true);
    assert.equal(await f.verify('m3', pw('three')), true);
    assert.equal(await f.verify('s1', pw('four')), true);
  });
});
