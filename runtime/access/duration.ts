/** JIT grant lengths as people write them (`90m`, `2h`, `1h30m`), parsed and checked with zod. */
import { z } from "zod";
import { formatDuration, parseDurationMs } from "../../contract/duration";

/** Milliseconds as the shortest `1h30m` form (see `contract/duration.ts`). */
export { formatDuration };

/** A duration string (`90m`, `2h`, `1h30m`, `45s`) as milliseconds. */
export const Duration = z
  .string()
  .trim()
  .transform((text, ctx) => {
    // The one grammar (`contract/duration.ts`) without days: a grant is hours long at most.
    const ms = parseDurationMs(text, ["h", "m", "s"]);
    if (ms === undefined) {
      ctx.addIssue({
        code: "custom",
        message: `${JSON.stringify(text)} is not a duration; write hours, minutes and seconds like 90m, 2h or 1h30m`,
      });
      return z.NEVER;
    }
    return ms;
  });

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
