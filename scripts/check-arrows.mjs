#!/usr/bin/env node
// The house's arrows (docs/architecture.md): every import in src/ points down, never up.
// Type-only imports count. Run by `npm run lint`; test/unit/house.test.ts checks the rule itself.
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/** Rooms from the top of the house down; a file may import its own room or any room below. */
export const LAYERS = [
  ['cli'],
  ['index.ts'],
  ['broker.ts'],
  ['broker-options.ts'],
  ['admin'],
  ['backends'],
  ['transport'],
  ['protocol'],
  ['lifecycle'],
  ['msglog'],
  ['routing'],
  ['session'],
  ['persistence'],
  ['auth'],
  ['hooks'],
  ['wire', 'native.ts', 'config.ts', 'log.ts', 'timers.ts', 'idle-gc.ts', 'crypto.ts'],
];

/** The room of a path relative to src/ ('session/delivery.ts' → 'session'). */
export function roomOf(rel) {
  return rel.includes('/') ? rel.slice(0, rel.indexOf('/')) : rel;
}

export function layerOf(rel) {
  const room = roomOf(rel);
  const i = LAYERS.findIndex((l) => l.includes(room));
  return i;
}

/** Relative import specifiers of a TypeScript source (import, import type, export … from, import()). */
export function importsOf(source) {
  const out = [];
  const re = /(?:^|\n)\s*(?:import|export)\s[^'";]*?from\s*['"](\.[^'"]+)['"]|import\(\s*['"](\.[^'"]+)['"]\s*\)/g;
  for (let m = re.exec(source); m; m = re.exec(source)) out.push(m[1] ?? m[2]);
  return out;
}

/** Every import that points up the house or into a room no layer names: [from, to, why]. */
export function violations(files) {
  const bad = [];
  for (const [from, specs] of files) {
    const lf = layerOf(from);
    if (lf < 0) bad.push([from, '', `room ${roomOf(from)} is not in the house`]);
    for (const spec of specs) {
      const to = relative('.', join(dirname(from), spec)).replace(/\.js$/, '.ts');
      if (to.startsWith('..')) continue; // outside src/ (the generated binding)
      if (roomOf(to) === roomOf(from)) continue;
      const lt = layerOf(to);
      if (lt < 0) bad.push([from, to, `room ${roomOf(to)} is not in the house`]);
      else if (lt <= lf) bad.push([from, to, `${roomOf(from)} may not import ${roomOf(to)} (arrows point down)`]);
    }
  }
  return bad;
}

function walk(dir, out = []) {
  for (const n of readdirSync(dir)) {
    const p = join(dir, n);
    if (statSync(p).isDirectory()) walk(p, out);
    else if (p.endsWith('.ts')) out.push(p);
  }
  return out;
}

export function scan(srcDir) {
  return walk(srcDir).map((f) => [relative(srcDir, f), importsOf(readFileSync(f, 'utf8'))]);
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const src = resolve(dirname(fileURLToPath(import.meta.url)), '..', 'src');
  const bad = violations(scan(src));
  for (const [from, to, why] of bad) console.error(`src/${from} → src/${to}: ${why}`);
  if (bad.length > 0) process.exit(1);
  console.log('arrows: every import in src/ points down the house');
}
