/** The two seams of the rollout: Pulumi behind `StackUpdater`, the health checks behind `HealthGate`. */
import type { Release } from "./release";

/** Sets a stack's runtime release and deploys it (`pulumi up`). */
export interface StackUpdater {
  /** The runtime release the stack is configured with now (no `image` when it pins none). */
  currentRelease(stack: string): Promise<Release>;
  /**
   * Configure exactly `release` (its version, and its image, or no image when it has none) and
   * deploy; rejects when the deployment fails, or is cancelled when `signal` aborts (Ctrl-C: the
   * rollout is then interrupted, not failed).
   */
  deploy(stack: string, release: Release, signal?: AbortSignal): Promise<void>;
}

/** What a gate is told about the stack it checks. */
export interface GateContext {
  readonly stack: string;
  /** The version the stack should now run. */
  readonly version: string;
  /** SLO of the synthetic sandbox, ms. */
  readonly syntheticSandboxSloMs: number;
  readonly signal: AbortSignal;
}

/** Result of one attempt of a gate. */
export type GateResult = { readonly ok: true } | { readonly ok: false; readonly reason: string };

/** One health check of a deployed stack; retried until it passes or the gate timeout. */
export interface HealthGate {
  /** Short name shown in progress lines, e.g. `scheduler-healthz`. */
  readonly name: string;
  check(context: GateContext): Promise<GateResult>;
}
