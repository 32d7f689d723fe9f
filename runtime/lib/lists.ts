/** Comparing a list with its next version. */

/** Where `after` differs from `before`: `before[start, endBefore)` became `after[start, endAfter)`. */
export interface ChangedMiddle {
  readonly start: number;
  readonly endBefore: number;
  readonly endAfter: number;
}

/**
 * The part of two lists between the start and the end they share (by identity): what an edit of
 * one place in a long list changed, found by comparing references, without a map of either.
 */
export function changedMiddle<T>(before: readonly T[], after: readonly T[]): ChangedMiddle {
  let start = 0;
  while (start < before.length && start < after.length && before[start] === after[start]) start++;
  let endBefore = before.length;
  let endAfter = after.length;
  while (endBefore > start && endAfter > start && before[endBefore - 1] === after[endAfter - 1]) {
    endBefore--;
    endAfter--;
  }
  return { start, endBefore, endAfter };
}
