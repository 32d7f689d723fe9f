/**
 * The health gates of a rollout, in the order they run. Three ask a platform's scheduler API (the
 * same HTTP API the `shardworks` CLI uses): `/healthz` answers (the scheduler reaches etcd) from
 * a scheduler of the rolled-out version (when it reports one), the
 * expected node agents are registered (their `nodes/<node>` records live only as long as their
 * leases), and a synthetic sandbox runs to completion with exit code 0 within its SLO. The fourth
 * asks the scheduler's `/v1/xds/clients` (every routing controller replica's CSDS) whether the
 * gateway's xDS clients ACKed the current configuration of the rolled-out version.
 */
import type { XdsResourceStatus } from "../contract/api";
import { ApiError, SchedulerClient, unreachableCause } from "../contract/client";
import type { GateContext, GateResult, HealthGate } from "./rollout-engine";
import { targetOf, type RolloutPlan } from "./rollout-plan";

/** Where a stack's scheduler API is and how to call it. */
export interface SchedulerGateOptions {
  /** Bearer token of the scheduler API (platform token). */
  readonly token: string;
  /** The scheduler API base URL of a stack. */
  readonly schedulerUrl: (stack: string) => Promise<string>;
  /** Node agents that must be registered; default: at least one. */
  readonly expectedNodes?: (stack: string) => Promise<number>;
  /** Image and command of the synthetic sandbox (it must exit 0). */
  readonly syntheticSandbox: { readonly image: string; readonly command: readonly string[] };
}

/** How long one gate call may take (beyond a wait it asks the server for). */
const CALL_TIMEOUT_MS = 30_000;

/**
 * The scheduler client of the gates: a scheduler (or port-forward) that accepts and never answers
 * must fail the attempt, not hang the rollout, so every call ends within CALL_TIMEOUT_MS past what
 * it asks the server to wait; one that does not answer is named by its origin and the cause
 * (`fetch failed` says nothing: ENOTFOUND, ECONNREFUSED, … is what a person needs).
 */
export function gateClient(base: string, token: string): SchedulerClient {
  return new SchedulerClient(base, token, {
    timeoutMs: CALL_TIMEOUT_MS,
    unreachable: (at, error) =>
      new Error(`${new URL(at).origin} does not answer (${unreachableCause(error)})`, {
        cause: error,
      }),
  });
}

/**
 * A gate's call: what it answered, or why the gate fails when the scheduler refused it
 * (`<what>: <status>`, with the body when `withBody`). Only an unreachable scheduler throws.
 */
async function answerOf<T>(
  what: string,
  call: Promise<T>,
  withBody = true,
): Promise<{ value: T } | { failed: GateResult }> {
  try {
    return { value: await call };
  } catch (error) {
    if (!(error instanceof ApiError) || error.status === 0) throw error;
    const body = withBody ? ` ${JSON.stringify(error.body)}` : "";
    return { failed: { ok: false, reason: `${what}: ${error.status}${body}` } };
  }
}

/** The three scheduler-API gates, in the order they run. */
export function schedulerGates(options: SchedulerGateOptions): HealthGate[] {
  const { token } = options;
  const healthz: HealthGate = {
    name: "scheduler-healthz",
    async check({ stack, version, signal }: GateContext): Promise<GateResult> {
      const api = gateClient(await options.schedulerUrl(stack), token);
      const answer = await answerOf("GET /healthz", api.healthz({ signal }));
      if ("failed" in answer) return answer.failed;
      // The scheduler must run the version rolled out: until it does, the answer came from a pod
      // of the old version that is still serving (RuntimeDeployment sets the version it reports).
      const running = answer.value.version;
      return running === version
        ? { ok: true }
        : {
            ok: false,
            reason: `the scheduler answering runs ${running ?? "an unreported version"}, not ${version} yet`,
          };
    },
  };
  const nodes: HealthGate = {
    name: "node-agents-registered",
    async check({ stack, signal }: GateContext): Promise<GateResult> {
      const api = gateClient(await options.schedulerUrl(stack), token);
      const want = (await options.expectedNodes?.(stack)) ?? 1;
      const answer = await answerOf("GET /v1/nodes", api.listNodes({ signal }), false);
      if ("failed" in answer) return answer.failed;
      const have = answer.value.length;
      return have >= want
        ? { ok: true }
        : { ok: false, reason: `${have} of ${want} node agent(s) registered` };
    },
  };
  const synthetic: HealthGate = {
    name: "synthetic-sandbox",
    async check({ stack, signal, syntheticSandboxSloMs }: GateContext): Promise<GateResult> {
      const api = gateClient(await options.schedulerUrl(stack), token);
      const started = Date.now();
      const timeout = Math.max(1, Math.ceil(syntheticSandboxSloMs / 1000));
      const answer = await answerOf(
        "POST /v1/sandboxes",
        api.createSandbox(
          { image: options.syntheticSandbox.image, command: options.syntheticSandbox.command },
          "exited",
          timeout,
          { signal, timeoutMs: timeout * 1000 + CALL_TIMEOUT_MS },
        ),
      );
      const took = Date.now() - started;
      if ("failed" in answer) return answer.failed;
      const sandbox = answer.value;
      // The sandbox is only a probe: delete it whatever happened (best effort).
      await api.deleteSandbox(sandbox.id, { signal }).catch(() => undefined);
      if (sandbox.status.phase !== "exited" || sandbox.status.exitCode !== 0) {
        return {
          ok: false,
          reason: `synthetic sandbox ${sandbox.id} ended ${sandbox.status.phase} (exit ${sandbox.status.exitCode ?? "none"}) after ${took} ms${sandbox.status.reason ? `: ${sandbox.status.reason}` : ""}`,
        };
      }
      return took <= syntheticSandboxSloMs
        ? { ok: true }
        : {
            ok: false,
            reason: `synthetic sandbox took ${took} ms; SLO ${syntheticSandboxSloMs} ms`,
          };
    },
  };
  return [healthz, nodes, synthetic];
}

/** Options of {@link xdsAckedGate}. */
export interface XdsGateOptions {
  /** Bearer token of the scheduler API (platform token). */
  readonly token: string;
  /** The scheduler API base URL of a stack (it asks every routing controller replica). */
  readonly schedulerUrl: (stack: string) => Promise<string>;
  /** Node id of the clients that must ACK (the gateway's, `shardworks-gateway`, in production). */
  readonly nodeId: string;
  /** How many such clients must be connected (the gateway's replicas); default 1. */
  readonly expectedClients?: (stack: string) => Promise<number>;
}

/** Why one resource is not taken, in words. */
function notSynced(entry: XdsResourceStatus): string {
  const what = `${entry.type}${entry.name === "" ? "" : ` "${entry.name}"`}`;
  if (entry.client === "DOES_NOT_EXIST") return `${what} asked for, does not exist`;
  switch (entry.status) {
    case "ERROR":
      return `${what} NACKed (version ${entry.version}: ${entry.error ?? "no reason given"})`;
    case "STALE":
      return `${what} sent at version ${entry.version}, not ACKed yet`;
    case "NOT_SENT":
      return entry.version === ""
        ? `${what} requested, nothing sent yet`
        : `${what} holds version ${entry.version}, the current one is not sent yet`;
    default:
      return `${what} ${entry.status}`;
  }
}

/** Listeners and clusters: every xDS client needs both before it can route anything. */
const REQUIRED_TYPES = ["Listener", "Cluster"] as const;

/**
 * The gateway's xDS clients took the current configuration of the rolled-out version: the
 * scheduler's `/v1/xds/clients` (every routing controller replica's CSDS) shows every replica
 * answering and running the version, at least the expected number of clients with the node id,
 * and for each client listeners and clusters, every resource SYNCED (sent at the current
 * snapshot's version and ACKed) and none missing.
 */
export function xdsAckedGate(options: XdsGateOptions): HealthGate {
  return {
    name: "xds-acked",
    async check({ stack, version, signal }: GateContext): Promise<GateResult> {
      const api = gateClient(await options.schedulerUrl(stack), options.token);
      const want = (await options.expectedClients?.(stack)) ?? 1;
      const answer = await answerOf(
        "GET /v1/xds/clients",
        api.xdsClients(options.nodeId, { signal }),
      );
      if ("failed" in answer) return answer.failed;
      const { routers } = answer.value;
      if (routers.length === 0) {
        return { ok: false, reason: "no routing controller is registered with the scheduler" };
      }
      for (const router of routers) {
        if ("error" in router) {
          return {
            ok: false,
            reason: `routing controller ${router.name} (${router.address}) did not answer: ${router.error}`,
          };
        }
        if (router.version !== version) {
          return {
            ok: false,
            reason: `routing controller ${router.name} runs ${router.version ?? "an unreported version"}, not ${version} yet`,
          };
        }
      }
      const clients = routers.flatMap((r) => ("clients" in r ? r.clients : []));
      if (clients.length < want) {
        return {
          ok: false,
          reason: `${clients.length} of ${want} xDS client(s) with node id "${options.nodeId}" connected to ${routers.length} routing controller(s)`,
        };
      }
      const problems = clients.flatMap((client, i) => {
        const who = clients.length > 1 ? `client ${i + 1}: ` : "";
        const types = new Set(client.resources.map((r) => r.type));
        const missing = REQUIRED_TYPES.filter((t) => !types.has(t)).map(
          (t) => `${who}${t} not requested yet`,
        );
        const bad = client.resources
          .filter((r) => r.status !== "SYNCED" || r.client === "DOES_NOT_EXIST")
          .map((r) => `${who}${notSynced(r)}`);
        return [...missing, ...bad];
      });
      if (problems.length === 0) return { ok: true };
      const shown = problems.slice(0, 3).join("; ");
      const more = problems.length > 3 ? `; and ${problems.length - 3} more` : "";
      return {
        ok: false,
        reason: `"${options.nodeId}" has not ACKed the current configuration: ${shown}${more}`,
      };
    },
  };
}

/** What the gates read from a stack's outputs when the plan does not say. */
export interface StackOutputs {
  /** `runtimeApiUrl`. */
  schedulerUrl(stack: string): Promise<string>;
  /** `gatewayReplicas`: how many gateway xDS clients must ACK (undefined: not exported). */
  gatewayReplicas(stack: string): Promise<number | undefined>;
}

/** Options of {@link rolloutGates}. */
export interface RolloutGateOptions {
  /** Bearer token of the scheduler API (platform token). */
  readonly token: string;
  readonly outputs: StackOutputs;
  /** Image and command of the synthetic sandbox (it must exit 0). */
  readonly syntheticSandbox: SchedulerGateOptions["syntheticSandbox"];
}

/** A stack's scheduler API URL: the plan's target, else the stack's output. */
export async function schedulerUrlOf(
  plan: RolloutPlan,
  outputs: Pick<StackOutputs, "schedulerUrl">,
  stack: string,
): Promise<string> {
  return targetOf(plan, stack).schedulerUrl ?? outputs.schedulerUrl(stack);
}

/** Every gate of a plan: the plan's `targets` first, the stack's outputs where they say nothing. */
export function rolloutGates(plan: RolloutPlan, options: RolloutGateOptions): HealthGate[] {
  const { outputs, token } = options;
  const schedulerUrl = (stack: string) => schedulerUrlOf(plan, outputs, stack);
  return [
    ...schedulerGates({
      token,
      schedulerUrl,
      expectedNodes: (stack) => Promise.resolve(targetOf(plan, stack).nodeAgents),
      syntheticSandbox: options.syntheticSandbox,
    }),
    xdsAckedGate({
      token,
      schedulerUrl,
      nodeId: plan.gates.xdsNodeId,
      expectedClients: async (stack) =>
        targetOf(plan, stack).xdsClients ?? (await outputs.gatewayReplicas(stack)) ?? 1,
    }),
  ];
}
