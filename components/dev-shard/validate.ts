/**
 * The checks of a `DevShard`'s arguments, run synchronously at the top of its constructor (they
 * throw `pulumi.InputPropertyError` naming the property), and the readiness probe of a fork.
 */
import type * as k8s from "@pulumi/kubernetes";
import * as pulumi from "@pulumi/pulumi";
import { MAX_SHARD_TTL_SECONDS, dnsLabel } from "../../contract/model";
import type { ProbeCheck } from "../common";
import type { BaselineService, ForkSpec } from "./args";

/** Check the shard name: a DNS label short enough for `shard-<name>`. */
export function validateShardName(shardName: string): void {
  if (!dnsLabel.max(57).safeParse(shardName).success) {
    throw new pulumi.InputPropertyError({
      propertyPath: "shardName",
      reason: `${JSON.stringify(shardName)} must be a DNS label (lowercase letters, digits, '-') of at most 57 characters`,
    });
  }
}

/** Check the TTL: positive, whole seconds, at most 7 days. */
export function validateTtl(ttlSeconds: number): void {
  if (!Number.isInteger(ttlSeconds) || ttlSeconds <= 0 || ttlSeconds > MAX_SHARD_TTL_SECONDS) {
    throw new pulumi.InputPropertyError({
      propertyPath: "ttlSeconds",
      reason: `${ttlSeconds} must be whole seconds between 1 and ${MAX_SHARD_TTL_SECONDS} (7 days)`,
    });
  }
}

/** The default of {@link DevShardArgs.readyTimeoutSeconds}. */
export const DEFAULT_READY_TIMEOUT_SECONDS = 300;
/** The most {@link DevShardArgs.readyTimeoutSeconds} allows: one hour. */
export const MAX_READY_TIMEOUT_SECONDS = 3600;

/** Check the readiness timeout: whole seconds, 1 to an hour. */
export function validateReadyTimeout(seconds: number): void {
  if (!Number.isInteger(seconds) || seconds <= 0 || seconds > MAX_READY_TIMEOUT_SECONDS) {
    throw new pulumi.InputPropertyError({
      propertyPath: "readyTimeoutSeconds",
      reason: `${seconds} must be whole seconds between 1 and ${MAX_READY_TIMEOUT_SECONDS} (1 hour)`,
    });
  }
}

/** A readiness path: absolute, printable, no spaces (what kubelet can GET). */
export const READINESS_PATH = /^\/[\x21-\x7e]{0,1023}$/;

/** The readiness probe of a fork: an HTTP GET of `path`, else a TCP connect to its port. */
export function forkReadiness(
  path: string | undefined,
  port: pulumi.Input<number>,
): k8s.types.input.core.v1.Probe {
  const check: ProbeCheck =
    path === undefined ? { tcpSocket: { port } } : { httpGet: { path, port } };
  // Checked every second: a fork's first routed request waits on this.
  return { ...check, periodSeconds: 1, failureThreshold: 3 };
}

/** Check fork names and ports (what can be checked before the baseline is known). */
export function validateForks(forks: Record<string, ForkSpec>): void {
  for (const [service, fork] of Object.entries(forks)) {
    if (!dnsLabel.safeParse(service).success) {
      throw new pulumi.InputPropertyError({
        propertyPath: `forks.${service}`,
        reason: "the service name must be a DNS label (lowercase letters, digits, '-', at most 63)",
      });
    }
    if (
      fork.port !== undefined &&
      (!Number.isInteger(fork.port) || fork.port < 1 || fork.port > 65535)
    ) {
      throw new pulumi.InputPropertyError({
        propertyPath: `forks.${service}.port`,
        reason: `${fork.port} is not a port (1-65535)`,
      });
    }
    if (fork.readinessPath !== undefined && !READINESS_PATH.test(fork.readinessPath)) {
      throw new pulumi.InputPropertyError({
        propertyPath: `forks.${service}.readinessPath`,
        reason: `${JSON.stringify(fork.readinessPath)} is not a URL path; write it like "/healthz"`,
      });
    }
  }
}

/** The baseline service a fork overrides; throws when the platform has no such service. */
export function baselineOf(
  service: string,
  baseline: Record<string, BaselineService>,
): BaselineService {
  const found = baseline[service];
  if (found === undefined) {
    const known = Object.keys(baseline);
    throw new pulumi.InputPropertyError({
      propertyPath: `forks.${service}`,
      reason: `the platform has no baseline service ${JSON.stringify(service)}; known: ${known.length ? known.join(", ") : "(none)"}`,
    });
  }
  return found;
}

/** Check every fork against the platform's baseline services (see {@link baselineOf}). */
export function validateForksAgainstBaseline(
  forks: Record<string, ForkSpec>,
  baseline: Record<string, BaselineService>,
): void {
  for (const service of Object.keys(forks)) baselineOf(service, baseline);
}
