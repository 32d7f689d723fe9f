/**
 * The components' own validators, run on a config the zod schema accepted, so that the schema
 * and the components have one source of truth: config that a component would reject fails in
 * the schema, before any resource is registered, with the full `shardworks:` key path.
 *
 * Each check calls a component validator with exactly the value the program passes to that
 * component (`stacks/program.ts`), and maps the validator's property path (relative to the
 * component's arguments) onto the config key.
 */
import * as pulumi from "@pulumi/pulumi";
import {
  validateBaselineRouting,
  validateAvailabilityZones,
  validateEtcdEndpoints,
  validateForks,
  validateGatewayNamespace,
  validateGatewayPorts,
  validateGatewayReplicas,
  validateJitMaxDuration,
  validateNodeGroups,
  validateReadyTimeout,
  validateSchedulerReplicas,
  validateShardName,
  validateSubject,
  validateTtl,
} from "../components";
import { parseDuration } from "./duration";

/** A problem found by a component validator: config key path (zod style) and reason. */
export interface ComponentIssue {
  path: (string | number)[];
  message: string;
}

/** `nodeGroups[1].instanceType` → `["nodeGroups", 1, "instanceType"]`. */
function pathParts(propertyPath: string): (string | number)[] {
  const parts: (string | number)[] = [];
  for (const match of propertyPath.matchAll(/([^.[\]]+)|\[(\d+)\]/g)) {
    if (match[2] !== undefined) parts.push(Number(match[2]));
    else if (match[1] !== undefined) parts.push(match[1]);
  }
  return parts;
}

/**
 * Run one validator; an `InputPropertyError` becomes an issue at `prefix` + its property path
 * (whose first part `rename` may map onto the config key's name). Other errors are bugs: rethrown.
 */
function check(
  issues: ComponentIssue[],
  prefix: (string | number)[],
  validate: () => void,
  rename: Record<string, string> = {},
): void {
  try {
    validate();
  } catch (error) {
    if (!pulumi.InputPropertyError.isInstance(error)) throw error;
    const [head, ...rest] = pathParts(error.propertyPath);
    const first = typeof head === "string" ? (rename[head] ?? head) : head;
    issues.push({
      path: [...prefix, ...(first === undefined ? [] : [first]), ...rest],
      message: error.reason,
    });
  }
}

/** What the platform stack's components would reject. */
export function platformComponentIssues(config: {
  target: string;
  region?: string;
  availabilityZones?: string[];
  nodeGroups: Parameters<typeof validateNodeGroups>[0];
  gateway: {
    namespace: string;
    replicas: number;
    maxReplicas: number;
    listenerPort: number;
    adminPort: number;
  };
  runtime: { etcdEndpoints?: string[]; schedulerReplicas: number };
  access: { maxJitDuration: string; platformAdmins: Parameters<typeof validateSubject>[0][] };
  baseline: Parameters<typeof validateBaselineRouting>[0];
}): ComponentIssue[] {
  const issues: ComponentIssue[] = [];
  const { gateway, runtime, access } = config;
  check(issues, ["gateway"], () => validateGatewayNamespace(gateway.namespace));
  check(issues, ["gateway"], () => validateGatewayReplicas(gateway.replicas, gateway.maxReplicas));
  check(issues, ["gateway"], () => validateGatewayPorts(gateway.listenerPort, gateway.adminPort));
  check(issues, ["runtime"], () => validateEtcdEndpoints(runtime.etcdEndpoints));
  check(issues, [], () => validateBaselineRouting(config.baseline, gateway.namespace));
  check(issues, ["runtime"], () => validateSchedulerReplicas(runtime.schedulerReplicas));
  check(
    issues,
    ["access"],
    () => validateJitMaxDuration(parseDuration(access.maxJitDuration) ?? 0),
    {
      maxDurationMs: "maxJitDuration",
    },
  );
  access.platformAdmins.forEach((subject, i) =>
    check(issues, ["access"], () => validateSubject(subject, `platformAdmins[${i}]`)),
  );
  if (config.target === "aws") {
    const region = config.region ?? "";
    check(issues, [], () => validateNodeGroups(config.nodeGroups));
    check(issues, [], () =>
      validateAvailabilityZones(config.availabilityZones ?? [`${region}a`, `${region}b`]),
    );
  }
  return issues;
}

/** What the shard stack's DevShard would reject. */
export function shardComponentIssues(config: {
  name: string;
  ttl: string;
  readyTimeout: string;
  forks: Parameters<typeof validateForks>[0];
}): ComponentIssue[] {
  const issues: ComponentIssue[] = [];
  check(issues, [], () => validateShardName(config.name), { shardName: "name" });
  check(issues, [], () => validateTtl(Math.round((parseDuration(config.ttl) ?? 0) / 1000)), {
    ttlSeconds: "ttl",
  });
  check(issues, [], () => validateForks(config.forks));
  check(
    issues,
    [],
    () => validateReadyTimeout(Math.round((parseDuration(config.readyTimeout) ?? 0) / 1000)),
    { readyTimeoutSeconds: "readyTimeout" },
  );
  return issues;
}
