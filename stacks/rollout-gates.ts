/**
 * The health gates of a rollout, in the order they run. Three ask a platform's scheduler API (the
 * same HTTP API the `shardworks` CLI uses): `/healthz` answers (the scheduler reaches etcd) from
 * a scheduler of the rolled-out version (when it reports one), the
 * expected node agents are registered (their `nodes/<node>` records live only as long as their
 * leases), and a synthetic sandbox runs to completion with exit code 0 within its SLO. The fourth
 * asks the scheduler's `/v1/xds/clients` (every routing controller replica's CSDS) whether the
 * gateway's xDS clients ACKed the current configuration of the rolled-out version.
 */
import { z } from "zod";
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

const healthzSchema = z.object({ version: z.string().optional() });
const nodesSchema = z.object({ items: z.array(z.object({ name: z.string() })) });
const sandboxSchema = z.object({
  id: z.string(),
  status: z.object({ phase: z.string(), exitCode: z.number().optional() }),
});

/** `fetch failed` says nothing: the cause (ENOTFOUND, ECONNREFUSED, …) is what a person needs. */
function fetchError(url: string, error: unknown): Error {
  const cause = (error as { cause?: { code?: string; message?: string } }).cause;
  const why = cause?.code ?? cause?.message ?? (error as Error).message;
  return new Error(`${new URL(url).origin} does not answer (${why})`, { cause: error });
}

/** One authenticated call of the scheduler API, bounded in time; the body parsed when JSON. */
export async function schedulerCall(
  url: string,
  token: string,
  init: RequestInit & { signal: AbortSignal; timeoutMs?: number },
): Promise<{ status: number; body: unknown }> {
  let response: Response;
  // A scheduler (or port-forward) that accepts and never answers must fail the attempt, not hang
  // the rollout: every call ends within CALL_TIMEOUT_MS past what it asks the server to wait.
  const signal = AbortSignal.any([
    init.signal,
    AbortSignal.timeout(init.timeoutMs ?? CALL_TIMEOUT_MS),
  ]);
  try {
    response = await fetch(url, {
      ...init,
      signal,
      headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
    });
  } catch (error) {
    throw fetchError(url, error);
  }
  const text = await response.text();
  let body: unknown = text;
  try {
    body = JSON.parse(text);
  } catch {
    // not JSON: keep the text for the reason
  }
  return { status: response.status, body };
}

/** The three scheduler-API gates, in the order they run. */
export function schedulerGates(options: SchedulerGateOptions): HealthGate[] {
  const { token } = options;
  const healthz: HealthGate = {
    name: "scheduler-healthz",
    async check({ stack, version, signal }: GateContext): Promise<GateResult> {
      const base = await options.schedulerUrl(stack);
      const { status, body } = await schedulerCall(`${base}/healthz`, token, { signal });
      if (status !== 200) {
        return { ok: false, reason: `GET /healthz: ${status} ${JSON.stringify(body)}` };
      }
      // The scheduler must run the version rolled out: until it does, the answer came from a pod
      // of the old version that is still serving (RuntimeDeployment sets the version it reports).
      const reported = healthzSchema.safeParse(body);
      const running = reported.success ? reported.data.version : undefined;
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
      const base = await options.schedulerUrl(stack);
      const want = (await options.expectedNodes?.(stack)) ?? 1;
      const { status, body } = await schedulerCall(`${base}/v1/nodes`, token, { signal });
      if (status !== 200) return { ok: false, reason: `GET /v1/nodes: ${status}` };
      const have = nodesSchema.parse(body).items.length;
      return have >= want
        ? { ok: true }
        : { ok: false, reason: `${have} of ${want} node agent(s) registered` };
    },
  };
  const synthetic: HealthGate = {
    name: "synthetic-sandbox",
    async check({ stack, signal, syntheticSandboxSloMs }: GateContext): Promise<GateResult> {
      const base = await options.schedulerUrl(stack);
      const started = Date.now();
      const timeout = Math.max(1, Math.ceil(syntheticSandboxSloMs / 1000));
      const { status, body } = await schedulerCall(
        `${base}/v1/sandboxes?wait=exited&timeout=${timeout}`,
        token,
        {
          method: "POST",
          signal,
          timeoutMs: timeout * 1000 + CALL_TIMEOUT_MS,
          body: JSON.stringify({
            image: options.syntheticSandbox.image,
            command: options.syntheticSandbox.command,
          }),
        },
      );
      const took = Date.now() - started;
      if (status !== 201) {
        return { ok: false, reason: `POST /v1/sandboxes: ${status} ${JSON.stringify(body)}` };
      }
      const sandbox = sandboxSchema.parse(body);
      // The sandbox is only a probe: delete it whatever happened (best effort).
      await schedulerCall(`${base}/v1/sandboxes/${sandbox.id}`, token, {
        method: "DELETE",
        signal,
      }).catch(() => undefined);
      if (sandbox.status.phase !== "exited" || sandbox.status.exitCode !== 0) {
        return {
          ok: false,
          reason: `synthetic sandbox ${sandbox.id} ended ${sandbox.status.phase} (exit ${sandbox.status.exitCode ?? "none"}) after ${took} ms`,
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

const resourceSchema = z.object({
  type: z.string(),
  name: z.string(),
  version: z.string(),
  status: z.string(),
  client: z.string(),
  error: z.string().optional(),
});
const reportSchema = z.object({
  routers: z.array(
    z.object({
      name: z.string(),
      address: z.string(),
      version: z.string().optional(),
      clients: z
        .array(z.object({ node: z.object({ id: z.string() }), resources: z.array(resourceSchema) }))
        .optional(),
      error: z.string().optional(),
    }),
  ),
});

/** Why one resource is not taken, in words. */
function notSynced(entry: z.infer<typeof resourceSchema>): string {
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
      const base = await options.schedulerUrl(stack);
      const want = (await options.expectedClients?.(stack)) ?? 1;
      const query = new URLSearchParams({ nodeId: options.nodeId });
      const { status, body } = await schedulerCall(
        `${base}/v1/xds/clients?${query.toString()}`,
        options.token,
        {
          signal,
        },
      );
      if (status !== 200) {
        return { ok: false, reason: `GET /v1/xds/clients: ${status} ${JSON.stringify(body)}` };
      }
      const { routers } = reportSchema.parse(body);
      if (routers.length === 0) {
        return { ok: false, reason: "no routing controller is registered with the scheduler" };
      }
      for (const router of routers) {
        if (router.error !== undefined) {
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
      const clients = routers.flatMap((r) => r.clients ?? []);
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
