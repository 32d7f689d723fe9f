/** A shard namespace has an expiry at most 7 days ahead: shards are for work in progress. */
import * as k8s from "@pulumi/kubernetes";
import type {
  ReportViolation,
  ResourceValidationArgs,
  ResourceValidationPolicy,
} from "@pulumi/policy";
import { MAX_SHARD_TTL_SECONDS } from "../../components/dev-shard";
import {
  EXPIRES_AT_ANNOTATION,
  parseRfc3339,
  SHARD_LABEL,
  SHARD_NAMESPACE_PREFIX,
} from "../../contract";
import type { ObjectMeta } from "./workloads";

const ANNOTATION_PATH = `metadata.annotations["${EXPIRES_AT_ANNOTATION}"]`;
const MAX_DAYS = MAX_SHARD_TTL_SECONDS / 86_400;

/** A namespace is a shard's when it is named `shard-…` or labelled with a shard. */
export function isShardNamespace(metadata: ObjectMeta | undefined): boolean {
  return (
    metadata?.labels?.[SHARD_LABEL] !== undefined ||
    (metadata?.name?.startsWith(SHARD_NAMESPACE_PREFIX) ?? false)
  );
}

/** Report what is wrong with a shard namespace's TTL. */
export function checkShardTtl(
  metadata: ObjectMeta | undefined,
  now: Date,
  report: (message: string) => void,
): void {
  if (!isShardNamespace(metadata)) return;
  const expiresAt = metadata?.annotations?.[EXPIRES_AT_ANNOTATION];
  if (expiresAt === undefined) {
    report(
      `${ANNOTATION_PATH} is missing on shard namespace; every shard needs a TTL of at most ${MAX_DAYS} days`,
    );
    return;
  }
  const at = parseRfc3339(expiresAt);
  if (at === undefined) {
    report(
      `${ANNOTATION_PATH}: ${JSON.stringify(expiresAt)} is not an RFC 3339 time, e.g. "2026-11-29T17:00:00Z"`,
    );
    return;
  }
  if (at.getTime() - now.getTime() > MAX_SHARD_TTL_SECONDS * 1000) {
    report(
      `${ANNOTATION_PATH}: ${expiresAt} is more than ${MAX_DAYS} days ahead; the longest shard TTL is ${MAX_DAYS} days`,
    );
  }
}

/** The policy with its clock (tests pass a fixed one). */
export function createShardTtlPolicy(now: () => Date): ResourceValidationPolicy {
  const validate = (args: ResourceValidationArgs, reportViolation: ReportViolation): void => {
    const namespace = args.asType(k8s.core.v1.Namespace);
    if (namespace === undefined) return;
    checkShardTtl(namespace.metadata, now(), (message) => reportViolation(message));
  };
  return {
    name: "shard-ttl-at-most-7-days",
    description: `A shard must expire within ${MAX_DAYS} days, so forgotten shards are reaped instead of holding cluster capacity forever.`,
    enforcementLevel: "mandatory",
    validateResource: validate,
  };
}

/** Policy: shard namespaces expire within 7 days. */
export const shardTtl = createShardTtlPolicy(() => new Date());
