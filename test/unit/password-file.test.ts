/**
 * Mosquitto password files (src/auth/password-file.ts): files written by the real
 * `mosquitto_passwd` verify ($7$ PBKDF2-SHA512 and $6$ SHA-512), fixed lines it wrote verify
 * without it, argon2id in our own and in Mosquitto 2.1's layout, malformed lines name file and
 * line, and writing keeps every other line.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash, pbkdf2Sync, randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { Algorithm, hashRaw } from '@node-rs/argon2';
import { deleteEntry, hashPassword, PasswordFile, PasswordFileError, writeEntry } from '../../src/auth/password-file.js';
import { ConfigError } from '../../src/config.js';

const dir = mkdtempSync(join(tmpdir(), 'strata-passwd-'));
after(() => rmSync(dir, { recursive: true, force: true }));
let n = 0;
const fresh = (): string => join(dir, `pw-${++n}`);
function file(text: string): string {
  const p = fresh();
  writeFileSync(p, text);
  return p;
}
const pw = (s: string): Buffer => Buffer.from(s);

const MOSQUITTO_PASSWD = '/usr/bin/mosquitto_passwd';
const noMosquittoPasswd = existsSync(MOSQUITTO_PASSWD) ? false : `${MOSQUITTO_PASSWD} is not installed (apt-get install mosquitto)`;

function mosquittoPasswd(...args: string[]): void {
  const r = spawnSync(MOSQUITTO_PASSWD, args, { encoding: 'utf8', timeout: 10000 });
  assert.equal(r.status, 0, `mosquitto_passwd ${args.join(' ')}: ${r.stderr}${r.stdout}`);
}

describe('files written by mosquitto_passwd', { skip: noMosquittoPasswd }, () => {
  test('-c -b: a $7$ (PBKDF2-HMAC-SHA512) entry verifies; a wrong password, another user and no password do not', async () => {
    const p = fresh();
    mosquittoPasswd('-c', '-b', p, 'alice', 'correct horse');
    assert.match(readFileSync(p, 'utf8'), /^alice:\$7\$\d+\$[A-Za-z0-9+/=]+\$[A-Za-z0-9+/=]+\n$/);
    const f = await PasswordFile.load(p);
    assert.equal(f.size, 1);
    assert.equal(await f.verify('alice', pw('correct horse')), true);
    assert.equal(await f.verify('alice', pw('correct horse ')), false);
    assert.equal(await f.verify('alice', pw('')), false);
    assert.equal(await f.verify('alice', undefined), false);
    assert.equal(await f.verify('bob', pw('correct horse')), false);
  });

  test('several users, $7$ and -H sha512 ($6$) mixed, UTF-8 passwords', async () => {
    const p = fresh();
    mosquittoPasswd('-c', '-b', p, 'alice', 'a-pass');
    mosquittoPasswd('-b', p, 'bob', 'b-pass');
    mosquittoPasswd('-H', 'sha512', '-b', p, 'carol', 'c-pass');
    mosquittoPasswd('-b', p, 'dave', 'pässwörd ✓');
    mosquittoPasswd('-b', p, 'alice', 'a-pass-2'); // changed in place
    const text = readFileSync(p, 'utf8');
    assert.match(text, /^carol:\$6\$/m);
    const f = await PasswordFile.load(p);
    assert.deepEqual(f.usernames().sort(), ['alice', 'bob', 'carol', 'dave']);
    assert.equal(await f.verify('alice', pw('a-pass')), false);
    assert.equal(await f.verify('alice', pw('a-pass-2')), true);
    assert.equal(await f.verify('bob', pw('b-pass')), true);
    assert.equal(await f.verify('carol', pw('c-pass')), true);
    assert.equal(await f.verify('carol', pw('b-pass')), false);
    assert.equal(await f.verify('dave', pw('pässwörd ✓')), true);
  });

  test('a file mosquitto_passwd keeps working on: our argon2id entries and its own side by side', async () => {
    const p = fresh();
    await writeEntry(p, 'ours', 'argon-pass', { create: true });
    mosquittoPasswd('-b', p, 'theirs', 'pbkdf2-pass');
    const f = await PasswordFile.load(p);
    assert.equal(await f.verify('ours', pw('argon-pass')), true);
    assert.equal(await f.verify('theirs', pw('pbkdf2-pass')), true);
  });
});

describe('fixed Mosquitto lines (mosquitto_passwd 2.0.11 output, checked without the binary)', () => {
  const text = [
    '# written by mosquitto_passwd -c -b FILE alice secret, then -H sha512 -b FILE bob hunter2',
    'alice:$7$101$ph2lO0Jkq+L2iwY0$iudd0YHQ7HyvICz9l8y/FVBEGiUCwXblFYwz9olR+6N5+4OB2OrmnE/ZQbVbTpaF75I8xIKQOTbfmWfwzrcdNw==',
    'bob:$6$Eec2ysR/znrrgYZQ$f0qVnFgmYY8E/NfqK1djRzXlA6ktHDMOgaujNF7gN9WJwDwCZ+R/MxI486Ke78wYFfoghZGw82qBYbAL88Apqg==',
    '',
  ].join('\n');

  test('$7$ and $6$ verify; wrong passwords do not', async () => {
    const f = PasswordFile.parse(text, 'fixed');
    assert.equal(await f.verify('alice', pw('secret')), true);
    assert.equal(await f.verify('alice', pw('Secret')), false);
    assert.equal(await f.verify('bob', pw('hunter2')), true);
    assert.equal(await f.verify('bob', pw('hunter3')), false);
  });

  test('$6$ is SHA-512(password ‖ base64-decoded salt), $7$ PBKDF2-HMAC-SHA512 with the decoded salt', () => {
    const [, , s6, h6] = 'bob:$6$Eec2ysR/znrrgYZQ$f0qVnFgmYY8E/NfqK1djRzXlA6ktHDMOgaujNF7gN9WJwDwCZ+R/MxI486Ke78wYFfoghZGw82qBYbAL88Apqg=='.split('$') as string[];
    const salt6 = Buffer.from(s6 as string, 'base64');
    assert.equal(salt6.length, 12);
    assert.equal(createHash('sha512').update('hunter2').update(salt6).digest('base64'), h6);
    const salt7 = Buffer.from('ph2lO0Jkq+L2iwY0', 'base64');
    assert.equal(
      pbkdf2Sync('secret', salt7, 101, 64, 'sha512').toString('base64'),
      'iudd0YHQ7HyvICz9l8y/FVBEGiUCwXblFYwz9olR+6N5+4OB2OrmnE/ZQbVbTpaF75I8xIKQOTbfmWfwzrcdNw==',
    );
  });
});

describe('hashes built the way Mosquitto builds them', () => {
  test('$6$ with a 12-byte and a 64-byte (Mosquitto 2.1) salt', async () => {
    const lines: string[] = [];
    for (const [user, len] of [
      ['short', 12],
      ['long', 64],
    ] as const) {
      const salt = randomBytes(len);
      const hash = createHash('sha512').update(`pw-${user}`).update(salt).digest();
      lines.push(`${user}:$6$${salt.toString('base64')}$${hash.toString('base64')}`);
    }
    const f = PasswordFile.parse(lines.join('\n'), 'built');
    assert.equal(await f.verify('short', pw('pw-short')), true);
    assert.equal(await f.verify('long', pw('pw-long')), true);
    assert.equal(await f.verify('long', pw('pw-short')), false);
  });

  test('$7$ with 1000 iterations and a 64-byte salt (Mosquitto 2.1 defaults)', async () => {
    const salt = randomBytes(64);
    const hash = pbkdf2Sync('pw', salt, 1000, 64, 'sha512');
    const f = PasswordFile.parse(`u:$7$1000$${salt.toString('base64')}$${hash.toString('base64')}\n`, 'built');
    assert.equal(await f.verify('u', pw('pw')), true);
    assert.equal(await f.verify('u', pw('pw2')), false);
  });

  test("argon2id in Mosquitto 2.1's layout (libargon2 PHC string: t=1, m=47104, p=1, 64-byte salt and hash)", async () => {
    const salt = randomBytes(64);
    const raw = await hashRaw('pw', { algorithm: Algorithm.Argon2id, salt, timeCost: 1, memoryCost: 47104, parallelism: 1, outputLen: 64 });
    const b64 = (b: Buffer): string => b.toString('base64').replace(/=+$/, '');
    const f = PasswordFile.parse(`m:$argon2id$v=19$m=47104,t=1,p=1$${b64(salt)}$${b64(raw)}\n`, 'built');
    assert.equal(await f.verify('m', pw('pw')), true);
    assert.equal(await f.verify('m', pw('px')), false);
  });
});

describe('argon2id, our write format', () => {
  test('hashPassword → verify round trip; binary passwords too', async () => {
    const h = await hashPassword('s3cret');
    assert.match(h, /^\$argon2id\$v=19\$m=19456,t=2,p=1\$[A-Za-z0-9+/]+\$[A-Za-z0-9+/]+$/);
    const bin = randomBytes(40);
    const f = PasswordFile.parse(`a:${h}\nb:${await hashPassword(bin)}\n`, 'ours');
    assert.equal(await f.verify('a', pw('s3cret')), true);
    assert.equal(await f.verify('a', pw('s3cre')), false);
    assert.equal(await f.verify('b', bin), true);
    assert.notEqual(await hashPassword('s3cret'), h, 'a fresh salt each time');
  });

  test('a verified password is cached per user and stored hash; a reloaded file starts empty', async () => {
    const p = file(`a:${await hashPassword('one')}\n`);
    const f = await PasswordFile.load(p);
    assert.equal(f.verifyCached('a', pw('one')), undefined);
    assert.equal(await f.verify('a', pw('one')), true);
    assert.equal(f.verifyCached('a', pw('one')), true);
    assert.equal(f.verifyCached('a', pw('two')), undefined);
    assert.equal(f.verifyCached('b', pw('one')), undefined);
    assert.equal(await f.verify('a', pw('one')), true);
    f.clearCache();
    assert.equal(f.verifyCached('a', pw('one')), undefined);
    await f.verify('a', pw('one'));
    // The password changes on disk: the new file knows nothing of the old password.
    await writeEntry(p, 'a', 'two');
    const g = await PasswordFile.load(p);
    assert.equal(g.verifyCached('a', pw('one')), undefined);
    assert.equal(await g.verify('a', pw('one')), false);
    assert.equal(await g.verify('a', pw('two')), true);
  });
});

describe('malformed files', () => {
  const bad: [string, string, number, RegExp][] = [
    ['no colon', 'alice:$6$Eec2ysR/znrrgYZQ$f0qVnFgmYY8E/NfqK1djRzXlA6ktHDMOgaujNF7gN9WJwDwCZ+R/MxI486Ke78wYFfoghZGw82qBYbAL88Apqg==\njustaname\n', 2, /no ":"/],
    ['plain text password', '# c\n\nbob:hunter2\n', 3, /not a hashed password/],
    ['unknown hash type', 'bob:$5$abc$def\n', 1, /unsupported hash type "\$5\$"/],
    ['bad base64 salt', 'bob:$6$Eec2ys*/znrrgYZQ$f0qVnFgmYY8E/NfqK1djRzXlA6ktHDMOgaujNF7gN9WJwDwCZ+R/MxI486Ke78wYFfoghZGw82qBYbAL88Apqg==\n', 1, /salt is not base64/],
    ['short hash', 'bob:$6$Eec2ysR/znrrgYZQ$f0qVnFgmYY8E\n', 1, /hash is 9 bytes, not 64/],
    ['salt length', 'bob:$7$101$AAAA$f0qVnFgmYY8E/NfqK1djRzXlA6ktHDMOgaujNF7gN9WJwDwCZ+R/MxI486Ke78wYFfoghZGw82qBYbAL88Apqg==\n', 1, /salt is 3 bytes/],
    ['zero iterations', 'bob:$7$0$ph2lO0Jkq+L2iwY0$iudd0YHQ7HyvICz9l8y/FVBEGiUCwXblFYwz9olR+6N5+4OB2OrmnE/ZQbVbTpaF75I8xIKQOTbfmWfwzrcdNw==\n', 1, /bad iteration count/],
    ['missing $7$ part', 'bob:$7$101$ph2lO0Jkq+L2iwY0\n', 1, /expected \$7\$<iterations>/],
    ['bad argon2id', 'x:$argon2id$v=19$m=oops\n', 1, /argon2id hash/],
    ['empty username', ':$6$x$y\n', 1, /empty username/],
    ['duplicate user', `# one\nbob:$6$Eec2ysR/znrrgYZQ$f0qVnFgmYY8E/NfqK1djRzXlA6ktHDMOgaujNF7gN9WJwDwCZ+R/MxI486Ke78wYFfoghZGw82qBYbAL88Apqg==\nbob:$6$Eec2ysR/znrrgYZQ$f0qVnFgmYY8E/NfqK1djRzXlA6ktHDMOgaujNF7gN9WJwDwCZ+R/MxI486Ke78wYFfoghZGw82qBYbAL88Apqg==\n`, 3, /also on line 2/],
  ];
  for (const [what, text, line, why] of bad) {
    test(`${what}: the error names the file and line ${line}`, async () => {
      const p = file(text);
      await assert.rejects(PasswordFile.load(p), (e: unknown) => {
        assert.ok(e instanceof PasswordFileError);
        assert.ok(e instanceof ConfigError, 'a bad password file is a configuration error');
        assert.equal(e.path, p);
        assert.equal(e.line, line);
        assert.ok(e.message.startsWith(`${p}:${line}: `), e.message);
        assert.match(e.message, why);
        return true;
      });
      assert.throws(() => PasswordFile.loadSync(p), PasswordFileError);
    });
  }

  test('a missing file names the path', async () => {
    const p = join(dir, 'nope');
    await assert.rejects(PasswordFile.load(p), (e: Error) => e instanceof PasswordFileError && e.message.startsWith(`${p}: cannot read`));
  });

  test('comments, blank lines, CRLF and blanks around the fields are fine', async () => {
    const h = await hashPassword('x');
    const f = PasswordFile.parse(`# header\r\n\r\n   # indented comment\n  alice : ${h} \r\n\n`, 'ok');
    assert.equal(f.size, 1);
    assert.equal(f.has('alice'), true);
    assert.equal(await f.verify('alice', pw('x')), true);
  });

  test('an empty file has no users and refuses everyone', async () => {
    const f = PasswordFile.parse('', 'empty');
    assert.equal(f.size, 0);
    assert.equal(await f.verify('anyone', pw('x')), false);
  });
});

describe('writeEntry / deleteEntry', () => {
  const other = 'bob:$6$Eec2ysR/znrrgYZQ$f0qVnFgmYY8E/NfqK1djRzXlA6ktHDMOgaujNF7gN9WJwDwCZ+R/MxI486Ke78wYFfoghZGw82qBYbAL88Apqg==';

  test('add, change in place and delete keep comments, blank lines and other users; mode 0600', async () => {
    const p = file(['# users of the plant', '', other, '# the end'].join('\n') + '\n');
    await writeEntry(p, 'alice', 'a1');
    let lines = readFileSync(p, 'utf8').split('\n');
    assert.deepEqual(lines.slice(0, 4), ['# users of the plant', '', other, '# the end']);
    assert.match(lines[4] as string, /^alice:\$argon2id\$/);
    assert.equal(lines[5], '');
    assert.equal(statSync(p).mode & 0o777, 0o600);

    await writeEntry(p, 'bob', 'b2'); // replaced where it stands
    lines = readFileSync(p, 'utf8').split('\n');
    assert.equal(lines[0], '# users of the plant');
    assert.match(lines[2] as string, /^bob:\$argon2id\$/);
    assert.equal(lines[3], '# the end');
    let f = await PasswordFile.load(p);
    assert.equal(await f.verify('bob', pw('b2')), true);
    assert.equal(await f.verify('bob', pw('hunter2')), false);
    assert.equal(await f.verify('alice', pw('a1')), true);

    assert.equal(await deleteEntry(p, 'bob'), true);
    assert.equal(await deleteEntry(p, 'bob'), false);
    lines = readFileSync(p, 'utf8').split('\n');
    assert.deepEqual(lines.slice(0, 3), ['# users of the plant', '', '# the end']);
    f = await PasswordFile.load(p);
    assert.deepEqual(f.usernames(), ['alice']);
    assert.equal(statSync(p).mode & 0o777, 0o600);
    // No temporary files are left behind.
    assert.deepEqual(
      readdirSync(dir).filter((x) => x.endsWith('.tmp')),
      [],
    );
  });

  test('create overwrites; without create a missing file is an error; bad usernames are refused', async () => {
    const p = file(`${other}\n`);
    await writeEntry(p, 'carol', 'c', { create: true });
    const f = await PasswordFile.load(p);
    assert.deepEqual(f.usernames(), ['carol']);
    await assert.rejects(writeEntry(join(dir, 'missing'), 'x', 'y'), /no such password file/);
    for (const u of ['', 'a:b', 'a\nb', '#a', ' a']) await assert.rejects(writeEntry(p, u, 'y'), PasswordFileError, JSON.stringify(u));
    await assert.rejects(deleteEntry(join(dir, 'missing'), 'x'), /no such password file/);
  });
});
