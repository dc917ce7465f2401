/** Plain-text tables and number formats shared by the bench reports (run.ts, memory.ts). */

export function table(headers: string[], rows: string[][], rightAlign: boolean[]): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]): string =>
    cells
      .map((c, i) => (rightAlign[i] ? c.padStart(widths[i]!) : c.padEnd(widths[i]!)))
      .join('  ')
      .trimEnd();
  return [line(headers), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(line)].join('\n');
}

export function fmtRate(n: number | null | undefined): string {
  if (n === undefined || n === null) return '-';
  if (n >= 1e6) return `${(n / 1e6).toFixed(2)}M`;
  if (n >= 1e3) return `${(n / 1e3).toFixed(1)}k`;
  return n.toFixed(0);
}

export function fmtMs(n: number | null | undefined): string {
  if (n === undefined || n === null) return '-';
  if (n >= 100) return n.toFixed(0);
  if (n >= 10) return n.toFixed(1);
  return n.toFixed(2);
}

export function ratio(a: number | null | undefined, b: number | null | undefined): string {
  if (a === undefined || a === null || b === undefined || b === null || b === 0) return 'n/a';
  return `${(a / b).toFixed(2)}x`;
}
