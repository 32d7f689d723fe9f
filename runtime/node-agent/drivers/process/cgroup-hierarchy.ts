/**
 * Where a process sandbox's cgroups go: the host's pids and memory hierarchies (cgroup v1 one per
 * controller, v2 one for both, both roots are `/sys/fs/cgroup`), and the cgroup v2 delegation
 * that lets a node agent in a container of its own give sandboxes cgroups below its own.
 */
import {
  accessSync,
  constants as fsConstants,
  existsSync,
  mkdirSync,
  readFileSync,
  writeFileSync,
} from "node:fs";
import { join } from "node:path";
import { logger } from "../../../lib/logger";

const log = logger.child({ component: "process-driver" });

/** The cgroup controllers the driver puts each sandbox under. */
export type CgroupController = "pids" | "memory";

/** Both of them: cgroup v2 delegation enables them together. */
const sandboxControllers: readonly CgroupController[] = ["memory", "pids"];

/** Where the host's cgroup hierarchies are mounted. */
const cgroupMount = "/sys/fs/cgroup";

/**
 * The cgroup v2 leaf the processes of the root cgroup are moved to when they keep it from
 * enabling controllers for its children (see {@link planUnifiedRoot}).
 */
export const agentLeaf = "agent";

/** The hierarchy sandboxes' cgroups of one controller go in, or why there is none. */
export type CgroupRootLookup =
  | { readonly root: string; readonly reason?: undefined }
  | { readonly root?: undefined; readonly reason: string };

/**
 * The hierarchy of `controller` under `base`: cgroup v1 `<base>/<controller>`, or cgroup v2
 * `<base>` once the controller is enabled for its children (delegating it first if need be, see
 * {@link delegateUnifiedRoot}); the reason when there is none we may write.
 */
export function findCgroupRoot(
  controller: CgroupController,
  base: string = cgroupMount,
): CgroupRootLookup {
  const v1 = join(base, controller);
  if (existsSync(join(v1, "tasks"))) {
    return writable(join(v1, "cgroup.procs"))
      ? { root: v1 }
      : {
          reason: `cgroup v1 ${v1} is not writable (the node agent is not root, or it is mounted read-only)`,
        };
  }
  if (!existsSync(join(base, "cgroup.controllers"))) {
    return { reason: `no ${controller} hierarchy: neither cgroup v1 ${v1} nor cgroup v2 ${base}` };
  }
  if (!writable(join(base, "cgroup.procs"))) {
    return {
      reason: `cgroup v2 ${base} is not writable (the node agent is not root, or it is mounted read-only)`,
    };
  }
  let state: UnifiedCgroupState;
  try {
    state = delegateUnifiedRoot(base, sandboxControllers);
  } catch (error) {
    return {
      reason: `cannot enable the ${controller} controller for sandboxes in cgroup v2 ${base} (${(error as Error).message})`,
    };
  }
  if (!state.enabled.includes(controller)) {
    return {
      reason: `cgroup v2 ${base} has no ${controller} controller (cgroup.controllers: "${state.available.join(" ")}"): its parent cgroup does not delegate it`,
    };
  }
  return { root: base };
}

/** The pids and memory hierarchies of a driver (given ones as they are), and why any is missing. */
export interface SandboxCgroupRoots {
  readonly pids: string | undefined;
  readonly memory: string | undefined;
  /** Why `pids` or `memory` is undefined, one reason each. */
  readonly gaps: readonly string[];
}

/** The driver's hierarchies: `given` ones, else those {@link findCgroupRoot} finds. */
export function sandboxCgroupRoots(given: {
  readonly pids?: string | undefined;
  readonly memory?: string | undefined;
}): SandboxCgroupRoots {
  const pids = given.pids !== undefined ? { root: given.pids } : findCgroupRoot("pids");
  const memory = given.memory !== undefined ? { root: given.memory } : findCgroupRoot("memory");
  return {
    pids: pids.root,
    memory: memory.root,
    gaps: [pids.reason, memory.reason].filter((reason) => reason !== undefined),
  };
}

/**
 * `SHARDWORKS_PROCESS_UNLIMITED=1`: let the driver run sandboxes without a memory cgroup or
 * without a pids cgroup where it finds none (development hosts without cgroup access only);
 * unset, "" or "0": it is not usable then.
 */
export function unlimitedOptOut(value = process.env.SHARDWORKS_PROCESS_UNLIMITED): boolean {
  if (value === undefined || value === "" || value === "0") return false;
  if (value === "1") return true;
  throw new Error(
    `SHARDWORKS_PROCESS_UNLIMITED="${value}" must be "1" (run sandboxes without memory or pids cgroups where there are none: development hosts only) or unset`,
  );
}

/** What a cgroup v2 directory says about itself (its files' contents). */
export interface UnifiedCgroupState {
  /** `cgroup.controllers`: what its parent lets it give its children. */
  readonly available: readonly string[];
  /** `cgroup.subtree_control`: what its children get. */
  readonly enabled: readonly string[];
  /** `cgroup.procs`: the processes in it (not in its children). */
  readonly procs: readonly number[];
  /**
   * The kernel's root cgroup (it has no `cgroup.type`), exempt from the no-internal-process rule.
   * The root of a cgroup namespace (a container's `/sys/fs/cgroup`) is not.
   */
  readonly kernelRoot: boolean;
}

/** Reads the {@link UnifiedCgroupState} of cgroup v2 directory `dir`. */
export function readUnifiedCgroup(dir: string): UnifiedCgroupState {
  const words = (file: string) =>
    readFileSync(join(dir, file), "utf8")
      .split(/\s+/)
      .filter((word) => word !== "");
  return {
    available: words("cgroup.controllers"),
    enabled: words("cgroup.subtree_control"),
    procs: words("cgroup.procs").map(Number),
    kernelRoot: !existsSync(join(dir, "cgroup.type")),
  };
}

/** What to do to a cgroup v2 directory so its children get `wanted` controllers. */
export type UnifiedRootPlan =
  /** Every wanted controller it has is enabled for its children already. */
  | { readonly kind: "ready"; readonly missing: readonly string[] }
  /** Write `+<controller>` for each of `enable` to its `cgroup.subtree_control`. */
  | {
      readonly kind: "enable";
      readonly enable: readonly string[];
      readonly missing: readonly string[];
    }
  /**
   * First move `move` (its processes) into the leaf {@link agentLeaf}: a non-root cgroup with
   * processes of its own cannot enable controllers for its children (EBUSY).
   */
  | {
      readonly kind: "delegate";
      readonly move: readonly number[];
      readonly enable: readonly string[];
      readonly missing: readonly string[];
    };

/**
 * The plan for `state`: nothing, enable the wanted controllers it has (`missing`: those it has
 * not, its parent does not delegate them), or first move its processes out of the way. Pure.
 */
export function planUnifiedRoot(
  state: UnifiedCgroupState,
  wanted: readonly string[],
): UnifiedRootPlan {
  const missing = wanted.filter((c) => !state.available.includes(c));
  const enable = wanted.filter((c) => state.available.includes(c) && !state.enabled.includes(c));
  if (enable.length === 0) return { kind: "ready", missing };
  if (state.procs.length === 0 || state.kernelRoot) return { kind: "enable", enable, missing };
  return { kind: "delegate", move: state.procs, enable, missing };
}

/**
 * Makes cgroup v2 directory `dir` enable the `wanted` controllers it has for its children, the
 * standard delegation pattern: a container with its own cgroup namespace (the node agent's
 * DaemonSet) sees its own cgroup as `/sys/fs/cgroup`, holding its processes, so its processes are
 * moved into the leaf `<dir>/agent` first. Returns the state it leaves; throws if it cannot.
 */
export function delegateUnifiedRoot(
  dir: string,
  wanted: readonly string[],
  leaf: string = agentLeaf,
): UnifiedCgroupState {
  let lastError: Error | undefined;
  // A process that forks meanwhile puts its child in `dir` again: re-read and retry, a few times.
  for (let round = 0; round < 10; round += 1) {
    const state = readUnifiedCgroup(dir);
    const plan = planUnifiedRoot(state, wanted);
    if (plan.kind === "ready") return state;
    if (plan.kind === "delegate") {
      const target = join(dir, leaf);
      mkdirSync(target, { recursive: true });
      for (const pid of plan.move) {
        try {
          writeFileSync(join(target, "cgroup.procs"), String(pid), { flag: "r+" });
        } catch (error) {
          // Exited meanwhile; anything else is a real failure.
          if ((error as NodeJS.ErrnoException).code !== "ESRCH") throw error;
        }
      }
      log.info(
        { cgroup: dir, leaf: target, moved: plan.move },
        "moved the processes of the cgroup v2 root into a leaf, so sandboxes can have their own memory and pids cgroups",
      );
      continue;
    }
    try {
      const line = plan.enable.map((c) => `+${c}`).join(" ");
      writeFileSync(join(dir, "cgroup.subtree_control"), line, { flag: "r+" });
    } catch (error) {
      // EBUSY: a process appeared in `dir` meanwhile; the next round moves it.
      if ((error as NodeJS.ErrnoException).code !== "EBUSY") throw error;
      lastError = error as Error;
    }
  }
  throw new Error(
    `${dir}/cgroup.subtree_control stays busy (${lastError?.message ?? "processes keep appearing in it"})`,
  );
}

function writable(file: string): boolean {
  try {
    accessSync(file, fsConstants.W_OK);
    return true;
  } catch {
    return false;
  }
}
