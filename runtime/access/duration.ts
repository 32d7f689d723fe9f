/** JIT grant lengths as people write them (`90m`, `2h`, `1h30m`), parsed and checked with zod. */
import { z } from "zod";

const UNIT_MS = { h: 3_600_000, m: 60_000, s: 1_000 } as const;
// Each unit at most once, in h-m-s order, so "1h30m" has one meaning and "30m1h" is refused.
const DURATION = /^(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$/;

/** A duration string (`90m`, `2h`, `1h30m`, `45s`) as milliseconds. */
export const Duration = z
  .string()
  .trim()
  .transform((text, ctx) => {
    const match = DURATION.exec(text);
    if (text === "" || match === null) {
      ctx.addIssue({
        code: "custom",
        message: `${JSON.stringify(text)} is not a duration; write hours, minutes and seconds like 90m, 2h or 1h30m`,
      });
      return z.NEVER;
    }
    const [, h = "0", m = "0", s = "0"] = match;
    return Number(h) * UNIT_MS.h + Number(m) * UNIT_MS.m + Number(s) * UNIT_MS.s;
  });

/** Milliseconds as the shortest `1h30m` form (whole seconds; `0s` for nothing). */
export function formatDuration(ms: number): string {
  const total = Math.max(0, Math.round(ms / 1000));
  const h = Math.floor(total / 3600);
  const m = Math.floor((total % 3600) / 60);
  const s = total % 60;
  const text = `${h > 0 ? `${h}h` : ""}${m > 0 ? `${m}m` : ""}${s > 0 ? `${s}s` : ""}`;
  return text === "" ? "0s" : text;
}

/**
 * Why a grant of `forMs` is refused under a ceiling of `maxMs`, or undefined when it is fine.
 * The message starts with the flag (`--for`) and says what to ask for instead.
 */
export function jitDurationProblem(
  forMs: number,
  maxMs: number,
  flag = "--for",
): string | undefined {
  if (!Number.isFinite(forMs) || forMs <= 0) {
    return `${flag}: a grant must last more than 0s; ask for e.g. 1h`;
  }
  if (forMs > maxMs) {
    const max = formatDuration(maxMs);
    return `${flag}: ${formatDuration(forMs)} is longer than the maximum ${max}; ask for at most ${max}`;
  }
  return undefined;
}

/** Parse a `--for` value into milliseconds, or throw one line naming the flag and the fix. */
export function parseGrantDuration(text: string, maxMs: number, flag = "--for"): number {
  const parsed = Duration.safeParse(text);
  if (!parsed.success) throw new AccessError(`${flag}: ${parsed.error.issues[0]?.message}`);
  const problem = jitDurationProblem(parsed.data, maxMs, flag);
  if (problem !== undefined) throw new AccessError(problem);
  return parsed.data;
}

/** A user error of the access commands: its message is the one line shown, no stack. */
export class AccessError extends Error {
  override name = "AccessError";
}
