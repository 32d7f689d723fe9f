/**
 * Health gates that ask a platform's scheduler API (the same HTTP API the `shardworks` CLI uses):
 * `/healthz` answers (the scheduler reaches etcd), the expected node agents are registered
 * (their `nodes/<node>` records live only as long as their leases), and a synthetic sandbox runs
 * to completion with exit code 0 within its SLO. The xDS ACK gate is not here (see
 * docs/readme/rollout.md: not done).
 */
import { z } from "zod";
import type { GateContext, GateResult, HealthGate } from "./rollout-engine";

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
    async check({ stack, signal }: GateContext): Promise<GateResult> {
      const base = await options.schedulerUrl(stack);
      const { status, body } = await call(`${base}/healthz`, token, { signal });
      return status === 200
        ? { ok: true }
        : { ok: false, reason: `GET /healthz: ${status} ${JSON.stringify(body)}` };
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
