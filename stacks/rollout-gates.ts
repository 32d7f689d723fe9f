/**
 * The health gates of a rollout, in the order they run. Three ask a platform's scheduler API (the
 * same HTTP API the `shardworks` CLI uses): `/healthz` answers (the scheduler reaches etcd) from
 * a scheduler of the rolled-out version (when it reports one), the
 * expected node agents are registered (their `nodes/<node>` records live only as long as their
 * leases), and a synthetic sandbox runs to completion with exit code 0 within its SLO. The fourth
 * asks the routing controller's CSDS whether the gateway's xDS clients ACKed the current
 * configuration (every resource SYNCED).
 */
import { z } from "zod";
import { ConfigStatus, fetchClientStatus, type GenericXdsConfig } from "../runtime/routing/xds";
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

const healthzSchema = z.object({ version: z.string().optional() });
const nodesSchema = z.object({ items: z.array(z.object({ name: z.string() })) });
const sandboxSchema = z.object({
  id: z.string(),
  status: z.object({ phase: z.string(), exitCode: z.number().optional() }),
});

async function call(
  url: string,
  token: string,
  init: RequestInit & { signal: AbortSignal },
): Promise<{ status: number; body: unknown }> {
  const response = await fetch(url, {
    ...init,
    headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
  });
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
      const { status, body } = await call(`${base}/healthz`, token, { signal });
      if (status !== 200) {
        return { ok: false, reason: `GET /healthz: ${status} ${JSON.stringify(body)}` };
      }
      // A scheduler that reports its version must run the one rolled out: until it does, the
      // answer came from a pod of the old version that is still serving.
      const reported = healthzSchema.safeParse(body);
      const running = reported.success ? reported.data.version : undefined;
      return running === undefined || running === version
        ? { ok: true }
        : { ok: false, reason: `the scheduler answering runs ${running}, not ${version} yet` };
    },
  };
  const nodes: HealthGate = {
    name: "node-agents-registered",
    async check({ stack, signal }: GateContext): Promise<GateResult> {
      const base = await options.schedulerUrl(stack);
      const want = (await options.expectedNodes?.(stack)) ?? 1;
      const { status, body } = await call(`${base}/v1/nodes`, token, { signal });
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
      const { status, body } = await call(
        `${base}/v1/sandboxes?wait=exited&timeout=${timeout}`,
        token,
        {
          method: "POST",
          signal,
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
      await call(`${base}/v1/sandboxes/${sandbox.id}`, token, { method: "DELETE", signal }).catch(
        () => undefined,
      );
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
  /** The routing controller's ADS/CSDS `host:port` of a stack. */
  readonly xdsAddress: (stack: string) => Promise<string>;
  /** Node id of the clients that must ACK (the gateway's, `shardworks-gateway`, in production). */
  readonly nodeId: string;
  /** How many such clients must be connected; default 1. */
  readonly expectedClients?: (stack: string) => number;
}

/** `type.googleapis.com/envoy.config.cluster.v3.Cluster` → `Cluster`. */
function typeName(typeUrl: string): string {
  return typeUrl.slice(typeUrl.lastIndexOf(".") + 1);
}

/** Why one resource is not SYNCED, in words. */
function notSynced(entry: GenericXdsConfig): string {
  const what = `${typeName(entry.type_url)}${entry.name === "" ? "" : ` "${entry.name}"`}`;
  switch (entry.config_status) {
    case ConfigStatus.Error:
      return `${what} NACKed (version ${entry.version_info}: ${entry.error_state?.details ?? "no reason given"})`;
    case ConfigStatus.Stale:
      return `${what} sent at version ${entry.version_info}, not ACKed yet`;
    case ConfigStatus.NotSent:
      return entry.version_info === ""
        ? `${what} requested, nothing sent yet`
        : `${what} holds version ${entry.version_info}, the current one is not sent yet`;
    default:
      return `${what} ${entry.config_status}`;
  }
}

/**
 * The gateway's xDS clients took the current configuration: the routing controller's CSDS lists at
 * least the expected number of clients with the node id, and every resource each holds is SYNCED
 * (sent at the current snapshot version and ACKed).
 */
export function xdsAckedGate(options: XdsGateOptions): HealthGate {
  return {
    name: "xds-acked",
    async check({ stack, signal }: GateContext): Promise<GateResult> {
      const address = await options.xdsAddress(stack);
      const want = options.expectedClients?.(stack) ?? 1;
      let clients;
      try {
        clients = await fetchClientStatus(address, { nodeId: options.nodeId, signal });
      } catch (error) {
        return { ok: false, reason: `CSDS at ${address}: ${(error as Error).message}` };
      }
      if (clients.length < want) {
        return {
          ok: false,
          reason: `${clients.length} of ${want} xDS client(s) with node id "${options.nodeId}" connected to ${address}`,
        };
      }
      const problems = clients.flatMap((client, i) => {
        const who = clients.length > 1 ? `client ${i + 1}: ` : "";
        if (client.generic_xds_configs.length === 0) return [`${who}has requested nothing yet`];
        return client.generic_xds_configs
          .filter((entry) => entry.config_status !== ConfigStatus.Synced)
          .map((entry) => `${who}${notSynced(entry)}`);
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

/** Where the gates find a stack's runtime when the plan does not say: the stack's outputs. */
export interface StackOutputs {
  /** `runtimeApiUrl`. */
  schedulerUrl(stack: string): Promise<string>;
  /** `routingXdsAddress`. */
  xdsAddress(stack: string): Promise<string>;
}

/** Options of {@link rolloutGates}. */
export interface RolloutGateOptions {
  /** Bearer token of the scheduler API (platform token). */
  readonly token: string;
  readonly outputs: StackOutputs;
  /** Image and command of the synthetic sandbox (it must exit 0). */
  readonly syntheticSandbox: SchedulerGateOptions["syntheticSandbox"];
}

/** Every gate of a plan: the plan's `targets` first, the stack's outputs where they say nothing. */
export function rolloutGates(plan: RolloutPlan, options: RolloutGateOptions): HealthGate[] {
  const { outputs } = options;
  return [
    ...schedulerGates({
      token: options.token,
      schedulerUrl: async (stack) =>
        targetOf(plan, stack).schedulerUrl ?? outputs.schedulerUrl(stack),
      expectedNodes: (stack) => Promise.resolve(targetOf(plan, stack).nodeAgents),
      syntheticSandbox: options.syntheticSandbox,
    }),
    xdsAckedGate({
      xdsAddress: async (stack) => targetOf(plan, stack).xdsAddress ?? outputs.xdsAddress(stack),
      nodeId: plan.gates.xdsNodeId,
      expectedClients: (stack) => targetOf(plan, stack).xdsClients,
    }),
  ];
}
