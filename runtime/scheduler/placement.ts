/**
 * Placement as pure functions: filter the nodes a sandbox may run on, score them, pick the best.
 * The placer feeds them its view of nodes and allocations and binds the result in etcd.
 */
import type { NodeRecord, Resources, SandboxRecord, SandboxSpec } from "../../contract/model";
import { ACTIVE_PHASES } from "../lib/store";

/** How to choose among feasible nodes. */
export const PlacementStrategy = { BinPack: "binpack", Spread: "spread" } as const;
/** One of {@link PlacementStrategy}. */
export type PlacementStrategy = (typeof PlacementStrategy)[keyof typeof PlacementStrategy];

/** CPU and memory already allocated on each node, by node name. */
export type Allocations = ReadonlyMap<string, Resources>;

const ZERO: Resources = { cpuMillis: 0, memoryMiB: 0 };

/** Sum of two resource amounts. */
export function addResources(a: Resources, b: Resources): Resources {
  return { cpuMillis: a.cpuMillis + b.cpuMillis, memoryMiB: a.memoryMiB + b.memoryMiB };
}

/** What the active (bound, not yet finished) sandboxes hold on each node, by node name. */
export function allocationsOf(sandboxes: Iterable<SandboxRecord>): Map<string, Resources> {
  const allocations = new Map<string, Resources>();
  for (const { spec, status } of sandboxes) {
    if (!ACTIVE_PHASES.has(status.phase) || status.node === undefined) continue;
    allocations.set(
      status.node,
      addResources(allocations.get(status.node) ?? ZERO, spec.resources),
    );
  }
  return allocations;
}

/** Why a node cannot take a sandbox, or undefined when it can. */
export function unfitReason(
  node: NodeRecord,
  spec: SandboxSpec,
  allocated: Resources = ZERO,
): string | undefined {
  if (spec.driver !== undefined && spec.driver !== node.driver) {
    return `driver ${node.driver}, sandbox asks for ${spec.driver}`;
  }
  for (const [key, value] of Object.entries(spec.nodeSelector)) {
    if (node.labels[key] !== value) return `label ${key}=${value} missing`;
  }
  for (const taint of node.taints) {
    if (taint.effect !== "NoSchedule") continue;
    const tolerated = spec.tolerations.some(
      (t) => t.key === taint.key && (t.value === undefined || t.value === taint.value),
    );
    if (!tolerated) return `taint ${taint.key}=${taint.value} not tolerated`;
  }
  if (allocated.cpuMillis + spec.resources.cpuMillis > node.capacity.cpuMillis) {
    return "not enough CPU";
  }
  if (allocated.memoryMiB + spec.resources.memoryMiB > node.capacity.memoryMiB) {
    return "not enough memory";
  }
  return undefined;
}

/**
 * Score of a feasible node, higher is better. Bin-pack prefers the fullest node after placement
 * (frees whole nodes for the autoscaler); spread prefers the emptiest. PreferNoSchedule taints
 * that are not tolerated cost a point.
 */
export function scoreNode(
  node: NodeRecord,
  spec: SandboxSpec,
  allocated: Resources,
  strategy: PlacementStrategy,
): number {
  const after = addResources(allocated, spec.resources);
  const used =
    (after.cpuMillis / node.capacity.cpuMillis + after.memoryMiB / node.capacity.memoryMiB) / 2;
  const soft = node.taints.filter(
    (taint) =>
      taint.effect === "PreferNoSchedule" && !spec.tolerations.some((t) => t.key === taint.key),
  ).length;
  return (strategy === PlacementStrategy.BinPack ? used : 1 - used) - soft;
}

/** The best node for a sandbox, or the reasons no node fits (for the sandbox's status). */
export function placeSandbox(
  spec: SandboxSpec,
  nodes: readonly NodeRecord[],
  allocations: Allocations,
  strategy: PlacementStrategy = PlacementStrategy.BinPack,
): { node: NodeRecord } | { node?: undefined; reason: string } {
  let best: { node: NodeRecord; score: number } | undefined;
  const reasons = new Map<string, number>();
  for (const node of nodes) {
    const allocated = allocations.get(node.name) ?? ZERO;
    const reason = unfitReason(node, spec, allocated);
    if (reason !== undefined) {
      reasons.set(reason, (reasons.get(reason) ?? 0) + 1);
      continue;
    }
    const score = scoreNode(node, spec, allocated, strategy);
    // Ties break by name so that two runs over the same state choose the same node.
    if (!best || score > best.score || (score === best.score && node.name < best.node.name)) {
      best = { node, score };
    }
  }
  if (best) return { node: best.node };
  const summary = [...reasons].map(([r, n]) => `${n} node(s): ${r}`).join("; ");
  return { reason: nodes.length === 0 ? "no nodes registered" : `no node fits (${summary})` };
}
