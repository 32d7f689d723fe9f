/**
 * Durations as people write them in stack config: `"8h"`, `"30m"`, `"1h30m"`, `"7d"`.
 *
 * Hand-written rather than a library: the grammar is five units and one regular expression, and
 * `ms` (the usual choice) accepts forms we do not want in config (`"1.5 hours"`, bare numbers).
 */

const UNIT_MS = { s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000 } as const;
const DURATION = /^(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$/;

/** Milliseconds of a duration like `"1h30m"`, or undefined when it is not one (or is zero). */
export function parseDuration(text: string): number | undefined {
  const match = DURATION.exec(text);
  if (!match || text === "") return undefined;
  const [, d, h, m, s] = match;
  const ms =
    Number(d ?? 0) * UNIT_MS.d +
    Number(h ?? 0) * UNIT_MS.h +
    Number(m ?? 0) * UNIT_MS.m +
    Number(s ?? 0) * UNIT_MS.s;
  return ms > 0 ? ms : undefined;
}
