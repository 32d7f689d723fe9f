/**
 * The one duration grammar: `1d`, `8h`, `90m`, `45s`, `1h30m` — whole numbers, each unit at most
 * once, in d-h-m-s order, so `1h30m` has one meaning and `30m1h` is refused. Hand-written rather
 * than a library: `ms` (the usual choice) accepts forms we do not want (`"1.5 hours"`, bare
 * numbers). A caller may narrow the units (JIT grants take no days).
 */

/** A duration unit. */
export type DurationUnit = "d" | "h" | "m" | "s";

const UNIT_MS: Readonly<Record<DurationUnit, number>> = {
  d: 86_400_000,
  h: 3_600_000,
  m: 60_000,
  s: 1_000,
};
const ORDER: readonly DurationUnit[] = ["d", "h", "m", "s"];

/**
 * Milliseconds of a duration written with `units` (default all four), or undefined when `text`
 * is not one. `"0s"` is a duration (0); whether zero is allowed is the caller's rule.
 */
export function parseDurationMs(
  text: string,
  units: readonly DurationUnit[] = ORDER,
): number | undefined {
  if (text === "") return undefined;
  const allowed = ORDER.filter((u) => units.includes(u));
  const match = new RegExp(`^${allowed.map((u) => `(?:(\\d+)${u})?`).join("")}$`).exec(text);
  if (match === null) return undefined;
  return allowed.reduce((ms, unit, i) => ms + Number(match[i + 1] ?? 0) * UNIT_MS[unit], 0);
}

/** Milliseconds as the shortest `1h30m` form (whole seconds, hours at most; `0s` for nothing). */
export function formatDuration(ms: number): string {
  const total = Math.max(0, Math.round(ms / 1000));
  const h = Math.floor(total / 3600);
  const m = Math.floor((total % 3600) / 60);
  const s = total % 60;
  const text = `${h > 0 ? `${h}h` : ""}${m > 0 ? `${m}m` : ""}${s > 0 ? `${s}s` : ""}`;
  return text === "" ? "0s" : text;
}
