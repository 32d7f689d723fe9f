/** Kubernetes CPU and memory quantities: the shard's container defaults, capped by its quota. */
import type { ShardQuota } from "./args";

/** The smaller of two CPU or memory quantities (`"500m"` vs `"250m"`); see {@link quantityValue}. */
export function minQuantity(a: string, b: string): string {
  return quantityValue(b) < quantityValue(a) ? b : a;
}

const QUANTITY_SUFFIX: Record<string, number> = {
  "": 1,
  m: 1e-3,
  k: 1e3,
  M: 1e6,
  G: 1e9,
  T: 1e12,
  Ki: 2 ** 10,
  Mi: 2 ** 20,
  Gi: 2 ** 30,
  Ti: 2 ** 40,
};

/**
 * The value of a Kubernetes quantity in base units, for comparison only. Hand-written: the
 * `@kubernetes/client-node` parser would pull the whole client in for this one function.
 */
export function quantityValue(quantity: string): number {
  const match = /^(\d+(?:\.\d+)?)(m|k|M|G|T|Ki|Mi|Gi|Ti)?$/.exec(quantity);
  if (match === null) return Number.NaN;
  return Number(match[1]) * (QUANTITY_SUFFIX[match[2] ?? ""] ?? Number.NaN);
}

/** Default limits of a shard container: 500m CPU and 512Mi, or the quota if it is smaller. */
export function containerLimits(quota: ShardQuota): { cpu: string; memory: string } {
  return { cpu: minQuantity("500m", quota.cpu), memory: minQuantity("512Mi", quota.memory) };
}

/** Default requests of a shard container: 100m CPU and 128Mi, or the quota if it is smaller. */
export function containerRequests(quota: ShardQuota): { cpu: string; memory: string } {
  return { cpu: minQuantity("100m", quota.cpu), memory: minQuantity("128Mi", quota.memory) };
}
