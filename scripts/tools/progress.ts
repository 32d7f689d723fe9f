/** How the installer reports progress: one `tools:` line on stderr per step. */

/** A duration since `startMs` as `42s` or `3m07s`. */
export function elapsed(startMs: number): string {
  const s = Math.round((Date.now() - startMs) / 1000);
  return s >= 60 ? `${Math.floor(s / 60)}m${String(s % 60).padStart(2, "0")}s` : `${s}s`;
}

/** One progress line. */
export function say(message: string): void {
  process.stderr.write(`tools: ${message}\n`);
}
