/** Parsers of the CLI's option values: each names the flag's fault and its fix. */
import { InvalidArgumentError } from "commander";
import { ApiError } from "../../contract/client";

export function parseKeyValues(values: readonly string[], flag: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const v of values) {
    const eq = v.indexOf("=");
    if (eq <= 0) throw new ApiError(0, "bad_flag", `${flag} ${v}: must be KEY=VALUE`);
    out[v.slice(0, eq)] = v.slice(eq + 1);
  }
  return out;
}

/**
 * A parser for an option taking a whole number from `min` to `max`: commander then names the flag
 * and the value it refused (`--cpu: "lots" …`), instead of the API naming its own field.
 */
export function wholeNumber(what: string, min: number, max: number, example: string) {
  return (value: string): number => {
    const n = Number(value);
    if (!/^\d+$/.test(value.trim()) || !Number.isSafeInteger(n) || n < min || n > max) {
      throw new InvalidArgumentError(`"${value}" is not ${what} (${min}-${max}), e.g. ${example}`);
    }
    return n;
  };
}

/** Repeatable whole-number options (`--port 80 --port 443`). */
export function collectNumbers(parse: (value: string) => number) {
  return (value: string, previous: number[]): number[] => [...previous, parse(value)];
}

export function collect(value: string, previous: string[]): string[] {
  return [...previous, value];
}
