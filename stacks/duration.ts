/**
 * Durations as people write them in stack config: `"8h"`, `"30m"`, `"1h30m"`, `"7d"` — the
 * one grammar (`contract/duration.ts`); in config a duration of zero is no duration.
 */
import { parseDurationMs } from "../contract/duration";

/** Milliseconds of a duration like `"1h30m"`, or undefined when it is not one (or is zero). */
export function parseDuration(text: string): number | undefined {
  const ms = parseDurationMs(text);
  return ms !== undefined && ms > 0 ? ms : undefined;
}
