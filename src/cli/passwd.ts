/**
 * `stratamq passwd [-c] [-b] [-D] FILE USER [PASSWORD]`: manage a password file, with
 * mosquitto_passwd's flags. -c creates (or overwrites) FILE, -b takes the password from the
 * command line, -D deletes USER. Without -b the password is asked twice on the terminal (no
 * echo), or read as one line from standard input when that is not a terminal. New hashes are
 * argon2id (src/auth/password-file.ts); the file's other lines are kept.
 *
 * Exit codes: 0 done, 1 failed (cannot read or write the file, user not found, passwords
 * differ), 2 wrong usage.
 */
import type { Command } from 'commander';
import { createInterface } from 'node:readline';
import { checkUsername, deleteEntry, writeEntry } from '../auth/password-file.js';

class Usage extends Error {}

/** Read a password from the terminal without echo (raw mode: Enter ends, Backspace erases, Ctrl-C/Ctrl-D abort). */
function promptHidden(prompt: string): Promise<string> {
  const stdin = process.stdin;
  process.stderr.write(prompt);
  return new Promise((resolve, reject) => {
    let text = '';
    const done = (err: Error | null): void => {
      stdin.off('data', onData);
      stdin.setRawMode(false);
      stdin.pause();
      process.stderr.write('\n');
      if (err) reject(err);
      else resolve(text);
    };
    const onData = (chunk: Buffer): void => {
      for (const ch of chunk.toString('utf8')) {
        if (ch === '\r' || ch === '\n') return done(null);
        if (ch === '\u0003' || ch === '\u0004') return done(new Error('aborted'));
        if (ch === '\u007f' || ch === '\b') text = [...text].slice(0, -1).join('');
        else if (ch >= ' ') text += ch;
      }
    };
    stdin.setRawMode(true);
    stdin.resume();
    stdin.on('data', onData);
  });
}

/** The first line of standard input (without its line ending). */
function readLine(): Promise<string> {
  return new Promise((resolve, reject) => {
    const rl = createInterface({ input: process.stdin, terminal: false });
    let got: string | undefined;
    rl.once('line', (line) => {
      got = line;
      rl.close();
    });
    rl.once('close', () => (got === undefined ? reject(new Error('no password on standard input')) : resolve(got)));
  });
}

async function askPassword(): Promise<string> {
  if (!process.stdin.isTTY) return readLine();
  const first = await promptHidden('Password: ');
  const again = await promptHidden('Reenter password: ');
  if (first !== again) throw new Error('passwords do not match');
  return first;
}

export interface PasswdOptions {
  create?: boolean;
  batch?: boolean;
  delete?: boolean;
}

/** The command's work, apart from commander (exit code and message). */
export async function passwd(file: string, user: string, password: string | undefined, opts: PasswdOptions): Promise<void> {
  if (opts.create && opts.delete) throw new Usage('-c and -D cannot be used together');
  if (opts.delete) {
    if (password !== undefined) throw new Usage('-D takes no password');
    if (!(await deleteEntry(file, user))) throw new Error(`user ${JSON.stringify(user)} not found in ${file}`);
    return;
  }
  if (opts.batch && password === undefined) throw new Usage('-b needs the password on the command line');
  if (!opts.batch && password !== undefined) throw new Usage('a password on the command line needs -b');
  try {
    checkUsername(user);
  } catch (e) {
    throw new Usage((e as Error).message);
  }
  const pw = password ?? (await askPassword());
  if (pw === '') throw new Error('empty password');
  await writeEntry(file, user, pw, { create: opts.create === true });
}

export function registerPasswd(program: Command): void {
  program
    .command('passwd')
    .description('add, change (-c: in a new file) or delete (-D) a user in a Mosquitto-format password file (argon2id hashes)')
    .argument('<file>', 'password file')
    .argument('<user>', 'username')
    .argument('[password]', 'the password (with -b)')
    .option('-c, --create', 'create the file, overwriting any existing one')
    .option('-b, --batch', 'take the password from the command line')
    .option('-D, --delete', 'delete the user')
    .action(async (file: string, user: string, password: string | undefined, opts: PasswdOptions) => {
      try {
        await passwd(file, user, password, opts);
      } catch (e) {
        process.stderr.write(`stratamq passwd: ${(e as Error).message}\n`);
        process.exitCode = e instanceof Usage ? 2 : 1;
      }
    });
}
