/** A node agent's configuration (its defaults, checked), its events, and what its parts share. */
import type { EventEmitter } from "node:events";
import { formatZodIssues } from "../lib/errors";
import {
  nodeRecordSchema,
  type NodeRecord,
  type Resources,
  type SandboxPhase,
} from "../../contract/model";
import type { Store } from "../lib/store";
import type { SandboxDriver } from "./driver";
import type { SandboxStates } from "./sandbox-state";

/** Configuration of a {@link NodeAgent}; defaults are applied in the constructor. */
export interface NodeAgentConfig {
  /** Node name (DNS label). */
  name: string;
  etcdEndpoints: string[];
  driver: SandboxDriver;
  capacity: Resources;
  /** Where sandbox work dirs and log files live. */
  dataDir: string;
  labels?: Record<string, string>;
  taints?: NodeRecord["taints"];
  /** Node lease TTL in seconds: how long a dead agent keeps its sandboxes; default 10. */
  leaseTtlSeconds?: number;
  /** Interface and port of the agent's HTTP API; default 127.0.0.1 and a free port. */
  host?: string;
  port?: number;
  /** Warm starts kept ready per image once that image has been run; default 1. */
  warmPerImage?: number;
  /**
   * An image's warm starts are released after this many seconds without a run of it, so images
   * run once do not hold paused VMs (memory) forever; default 600.
   */
  warmIdleSeconds?: number;
  /**
   * Most images whose warm starts are kept at once (the least recently run is released first), so
   * a caller running many distinct images cannot make the node hold one for each; default 8.
   */
  warmMaxImages?: number;
  /** Safety-net reconcile interval in ms; default 2000. */
  resyncMs?: number;
  /**
   * Bearer token the agent's HTTP API demands (logs, migration); the scheduler sends its agent
   * token (by default the platform token). Unset = an open API: tests on loopback only.
   */
  apiToken?: string;
}

/** Events of a {@link NodeAgent}. */
export interface NodeAgentEvents {
  registered: [NodeRecord];
  started: [{ id: string; start: "warm" | "cold"; startMillis: number }];
  finished: [{ id: string; phase: SandboxPhase }];
  stopped: [{ id: string }];
  error: [Error];
}

/** `options` with the defaults applied (a copy); throws naming a label or taint it refuses. */
export function resolveNodeAgentConfig(options: NodeAgentConfig): Required<NodeAgentConfig> {
  // A copy: the defaults are this agent's, not written into the caller's object.
  const config = { ...options };
  config.labels ??= {};
  config.taints ??= [];
  // Refused here, naming the field, rather than registered and then skipped by every reader
  // of the node record as corrupt.
  const placement = nodeRecordSchema.pick({ labels: true, taints: true }).safeParse({
    labels: config.labels,
    taints: config.taints,
  });
  if (!placement.success) {
    throw new Error(`node agent ${config.name}: ${formatZodIssues(placement.error).join("; ")}`);
  }
  config.leaseTtlSeconds ??= 10;
  config.host ??= "127.0.0.1";
  config.port ??= 0;
  config.warmPerImage ??= 1;
  config.warmIdleSeconds ??= 600;
  config.warmMaxImages ??= 8;
  config.resyncMs ??= 2000;
  return config as Required<NodeAgentConfig>;
}

/** What the parts of one agent (runner, reconcile pass, HTTP API hooks) share. */
export interface AgentContext {
  readonly config: Required<NodeAgentConfig>;
  readonly store: Store;
  /** Aborted when the agent closes. */
  readonly signal: AbortSignal;
  readonly events: EventEmitter<NodeAgentEvents>;
  /** What the agent tracks of each of its sandboxes. */
  readonly sandboxes: SandboxStates;
  /** Ask for a reconcile pass; passes never overlap and requests coalesce. */
  requestReconcile(): void;
}
