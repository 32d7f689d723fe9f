/**
 * The stack configuration (`shardworks:*` keys of `Pulumi.<stack>.yaml`) as a zod schema.
 *
 * `parseStackConfig` is pure (plain object in, typed config out) so that every rule can be
 * table-tested; `loadStackConfig` reads the Pulumi config and calls it before the program
 * registers any resource, so a bad stack fails with one line per problem, each naming the key
 * path and what is allowed.
 */
import * as pulumi from "@pulumi/pulumi";
import { z } from "zod";
import { MAX_SHARD_TTL_SECONDS, dnsLabel, routingKeySchema } from "../contract/model";
import { parseDuration } from "./duration";
import { METAL_INSTANCE_TYPE, NodeGroupRole } from "../components/common";
import { MAX_JIT_CEILING_MS } from "../components/access-control";
import {
  DEFAULT_READY_TIMEOUT_SECONDS,
  MAX_READY_TIMEOUT_SECONDS,
  quantityValue,
  READINESS_PATH,
} from "../components/dev-shard";
import { platformComponentIssues, shardComponentIssues } from "./component-checks";

/** The Pulumi config namespace of every key. */
export const CONFIG_NAMESPACE = "shardworks";

/** What a stack builds. */
export const StackKind = { Platform: "platform", Shard: "shard" } as const;
/** One of {@link StackKind}. */
export type StackKind = (typeof StackKind)[keyof typeof StackKind];

/** Where a platform stack runs. */
export const PlatformTarget = { Aws: "aws", Local: "local" } as const;
/** One of {@link PlatformTarget}. */
export type PlatformTarget = (typeof PlatformTarget)[keyof typeof PlatformTarget];

/** Longest TTL a shard may ask for: 7 days. */
export const MAX_SHARD_TTL_MS = MAX_SHARD_TTL_SECONDS * 1000;
/** Longest JIT grant maximum a platform may configure: 24 hours (the components' ceiling). */
export { MAX_JIT_CEILING_MS };

const EC2_INSTANCE_TYPE = /^[a-z][a-z0-9-]*\.[a-z0-9-]+$/;

const AWS_REGION = /^[a-z]{2}(-gov)?-[a-z]+-\d$/;
const IAM_ROLE_ARN = /^arn:aws[a-z-]*:iam::\d{12}:role\/[\w+=,.@/-]+$/;
const QUANTITY = /^\d+(\.\d+)?(m|k|M|G|T|Ki|Mi|Gi|Ti)?$/;
const VERSION = /^v?\d+\.\d+\.\d+(-[0-9A-Za-z.-]+)?$/;
const IMAGE = /^[a-z0-9]([a-z0-9._\-/:@]*[a-z0-9])?$/i;
const STACK_NAME = /^([A-Za-z0-9_.-]+\/){0,2}[A-Za-z0-9_.-]+$/;
const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

const port = z.number().int().min(1).max(65535);
/** `name@sha256:<64 hex>` (a tag before the digest is allowed and ignored by the kubelet). */
export const PINNED_IMAGE = /^[a-z0-9]([a-z0-9._\-/:]*[a-z0-9])?@sha256:[0-9a-f]{64}$/;
/** An image pinned by digest; the message says how the images script makes one. */
function pinnedImage(what: "runtime" | "gateway") {
  return z.string().regex(PINNED_IMAGE, {
    message: `must be pinned by digest, "<name>@sha256:<64 hex>"; \`npm run images -- build ${what}\` builds it, pushes it (--registry <host[/prefix]> for yours) and prints the reference`,
  });
}
const LABEL_KEY =
  /^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*\/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$/;
const LABEL_VALUE = /^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$/;
/** A label selector (`matchLabels`): at least one label, each key and value as Kubernetes allows. */
const labelSelector = z
  .record(
    z.string().regex(LABEL_KEY, {
      message: 'must be a label key, e.g. "app" or "app.kubernetes.io/name"',
    }),
    z.string().regex(LABEL_VALUE, {
      message: "must be a label value: at most 63 letters, digits, '-', '_' or '.'",
    }),
  )
  .refine((labels) => Object.keys(labels).length > 0, {
    message: "is empty; give the labels of the service's pods, e.g. {app: checkout}",
  });
const image = z.string().regex(IMAGE, { message: 'must be an image reference, e.g. "nginx:1.27"' });
const quantity = z
  .string()
  .regex(QUANTITY, { message: 'must be a Kubernetes quantity, e.g. "500m", "4" or "8Gi"' });
const positiveQuantity = quantity.refine((q) => !(quantityValue(q) <= 0), {
  message: 'must be more than 0, e.g. "500m", "4" or "8Gi"',
});

function duration(maxMs: number, maxText: string) {
  return z.string().superRefine((text, ctx) => {
    const ms = parseDuration(text);
    if (ms === undefined && /^(?:0+[dhms])+$/.test(text)) {
      ctx.addIssue({
        code: "custom",
        message: `${JSON.stringify(text)} must be positive, e.g. "8h"`,
      });
    } else if (ms === undefined) {
      ctx.addIssue({
        code: "custom",
        message: `${JSON.stringify(text)} is not a duration; use e.g. "30m", "8h", "1h30m" or "7d"`,
      });
    } else if (ms > maxMs) {
      ctx.addIssue({
        code: "custom",
        message: `${JSON.stringify(text)} is longer than the maximum of ${maxText}`,
      });
    }
  });
}

/** One EKS managed node group. */
export const nodeGroupSchema = z
  .strictObject({
    name: dnsLabel,
    role: z.enum([NodeGroupRole.System, NodeGroupRole.Microvm]),
    instanceType: z
      .string()
      .regex(EC2_INSTANCE_TYPE, { message: 'must be an EC2 instance type, e.g. "m6i.large"' }),
    minSize: z.number().int().min(0).default(1),
    maxSize: z.number().int().min(1).max(1000).default(3),
    desiredSize: z.number().int().min(0).optional(),
  })
  .superRefine((group, ctx) => {
    if (
      group.role === NodeGroupRole.Microvm &&
      EC2_INSTANCE_TYPE.test(group.instanceType) &&
      !METAL_INSTANCE_TYPE.test(group.instanceType)
    ) {
      ctx.addIssue({
        code: "custom",
        path: ["instanceType"],
        message: `${JSON.stringify(group.instanceType)} is not a metal instance type; microvm nodes need KVM, e.g. "c6i.metal"`,
      });
    }
    if (group.minSize > group.maxSize) {
      ctx.addIssue({
        code: "custom",
        path: ["minSize"],
        message: `${group.minSize} is greater than maxSize (${group.maxSize})`,
      });
    }
    const desired = group.desiredSize;
    if (desired !== undefined && (desired < group.minSize || desired > group.maxSize)) {
      ctx.addIssue({
        code: "custom",
        path: ["desiredSize"],
        message: `${desired} is outside minSize..maxSize (${group.minSize}..${group.maxSize})`,
      });
    }
  });
export type NodeGroupConfig = z.output<typeof nodeGroupSchema>;

/** The Envoy edge gateway. */
export const gatewaySchema = z
  .strictObject({
    namespace: dnsLabel.default("shardworks-gateway"),
    replicas: z.number().int().min(1).max(50).default(2),
    maxReplicas: z.number().int().min(1).max(100).default(10),
    serviceType: z.enum(["LoadBalancer", "NodePort", "ClusterIP"]).default("LoadBalancer"),
    /** Internal NLB (VPC only) instead of internet-facing. */
    internal: z.boolean().default(false),
    /** Envoy image, pinned by digest (`npm run images -- build gateway`). */
    image: pinnedImage("gateway").optional(),
    /** Port of the HTTP listener the routing controller configures over LDS. */
    listenerPort: port.default(8080),
    adminPort: port.default(9901),
  })
  .superRefine((g, ctx) => {
    if (g.maxReplicas < g.replicas) {
      ctx.addIssue({
        code: "custom",
        path: ["maxReplicas"],
        message: `${g.maxReplicas} is less than replicas (${g.replicas})`,
      });
    }
    if (g.adminPort === g.listenerPort) {
      ctx.addIssue({
        code: "custom",
        path: ["adminPort"],
        message: `${g.adminPort} is also the listenerPort; use another port`,
      });
    }
  });
export type GatewayConfig = z.output<typeof gatewaySchema>;

/** Versions and images of the runtime services. */
export const runtimeSchema = z.strictObject({
  /** Version tag of the Shardworks runtime image (scheduler, node agent, routing controller). */
  version: z
    .string()
    .regex(VERSION, { message: 'must be a version like "0.1.0"' })
    .default("0.1.0"),
  /**
   * The runtime image, pinned by digest (`npm run images -- build runtime`). Required unless
   * `skipAwait` (a cluster where nothing runs), where `<imageRepository>:<version>` stands in.
   */
  image: pinnedImage("runtime").optional(),
  imageRepository: image.default("ghcr.io/shardworks/runtime"),
  etcdImage: image.default("quay.io/coreos/etcd:v3.5.21"),
  schedulerReplicas: z.number().int().min(2).max(20).default(2),
  /** `persistent` (a PVC per etcd member) or `ephemeral` (emptyDir; clusters without volumes). */
  etcdStorage: z.enum(["persistent", "ephemeral"]).default("persistent"),
  /** Endpoints of an existing etcd (`http(s)://host:port`); absent = a 3-member StatefulSet. */
  etcdEndpoints: z
    .array(z.url({ protocol: /^https?$/, message: 'must be a URL like "https://etcd-0:2379"' }))
    .min(1)
    .optional(),
});
export type RuntimeConfig = z.output<typeof runtimeSchema>;

/** A Kubernetes RBAC subject. */
export const subjectSchema = z.strictObject({
  kind: z.enum(["User", "Group"]),
  name: z.string().min(1).max(253),
});
export type SubjectConfig = z.output<typeof subjectSchema>;

/** Who administers the platform, and how long a just-in-time grant may last. */
export const accessSchema = z.strictObject({
  maxJitDuration: duration(MAX_JIT_CEILING_MS, "24h").default("8h"),
  platformAdmins: z.array(subjectSchema).default([]),
  /** IAM roles given cluster-admin access entries (AWS only). */
  adminRoleArns: z
    .array(
      z.string().regex(IAM_ROLE_ARN, {
        message: 'must be an IAM role ARN, e.g. "arn:aws:iam::123456789012:role/admins"',
      }),
    )
    .default([]),
});
export type AccessConfig = z.output<typeof accessSchema>;

/** An HTTP readiness path, e.g. "/healthz". */
const readinessPath = z.string().regex(READINESS_PATH, {
  message: 'must be an absolute URL path without spaces, e.g. "/healthz"',
});

/** A baseline service that shards may fork. */
export const baselineSchema = z.strictObject({
  image,
  port,
  /** Namespace the baseline runs in. */
  namespace: dnsLabel.default("default"),
  /**
   * Labels of the service's pods: routes calls between services too (ADR 0012), the platform
   * owning Services `<name>` (→ the gateway) and `<name>-baseline` (→ these pods). Absent: the
   * service is routed at the edge only.
   */
  selector: labelSelector.optional(),
  /** Path its pods answer 2xx on once serving (its forks' HTTP readiness probe); absent: TCP. */
  readinessPath: readinessPath.optional(),
});
export type BaselineConfig = z.output<typeof baselineSchema>;

/** `kind: platform`: one per cluster. */
export const platformConfigSchema = z
  .strictObject({
    kind: z.literal(StackKind.Platform),
    target: z.enum([PlatformTarget.Aws, PlatformTarget.Local]),
    clusterName: dnsLabel,
    region: z
      .string()
      .regex(AWS_REGION, { message: 'must be an AWS region, e.g. "us-east-1"' })
      .optional(),
    availabilityZones: z.array(z.string().min(1)).min(2).optional(),
    /** Path of the kubeconfig of the cluster to deploy into (target local). */
    kubeconfig: z.string().min(1).optional(),
    kubernetesVersion: z
      .string()
      .regex(/^1\.\d+$/, { message: 'must be a minor version, e.g. "1.33"' })
      .default("1.33"),
    nodeGroups: z.array(nodeGroupSchema).default([]),
    gateway: gatewaySchema.default(gatewaySchema.parse({})),
    runtime: runtimeSchema.default(runtimeSchema.parse({})),
    access: accessSchema.default(accessSchema.parse({})),
    baseline: z.record(dnsLabel, baselineSchema).default({}),
    /** Bearer token of the scheduler API (a secret). */
    platformToken: z
      .string()
      .min(32, {
        message: 'must be at least 32 characters, e.g. "$(openssl rand -base64 32)"',
      })
      .refine((token) => token.trim() !== "", {
        message: 'must not be only whitespace; e.g. "$(openssl rand -base64 32)"',
      }),
    /** Do not wait for workloads to become ready (a cluster without kubelets, e.g. the testbed). */
    skipAwait: z.boolean().default(false),
  })
  .superRefine((p, ctx) => {
    if (p.target === PlatformTarget.Aws) {
      if (p.region === undefined) {
        ctx.addIssue({ code: "custom", path: ["region"], message: "is required for target aws" });
      }
      if (p.kubeconfig !== undefined) {
        ctx.addIssue({
          code: "custom",
          path: ["kubeconfig"],
          message: "is only for target local; target aws builds its own cluster",
        });
      }
      for (const role of [NodeGroupRole.System, NodeGroupRole.Microvm]) {
        if (!p.nodeGroups.some((g) => g.role === role)) {
          ctx.addIssue({
            code: "custom",
            path: ["nodeGroups"],
            message: `needs at least one group with role "${role}" for target aws`,
          });
        }
      }
    } else {
      if (p.kubeconfig === undefined) {
        ctx.addIssue({
          code: "custom",
          path: ["kubeconfig"],
          message: "is required for target local (path of the cluster's kubeconfig)",
        });
      }
      for (const key of ["region", "availabilityZones"] as const) {
        if (p[key] !== undefined) {
          ctx.addIssue({
            code: "custom",
            path: [key],
            message: "is only for target aws; target local deploys into an existing cluster",
          });
        }
      }
      if (p.nodeGroups.length > 0) {
        ctx.addIssue({
          code: "custom",
          path: ["nodeGroups"],
          message: "is only for target aws; target local deploys into an existing cluster",
        });
      }
    }
    if (!p.skipAwait) {
      // Pods that must become ready need images that exist; a tag could move under a rollout.
      if (p.runtime.image === undefined) {
        ctx.addIssue({
          code: "custom",
          path: ["runtime", "image"],
          message:
            'is required: the runtime image pinned by digest, "<name>@sha256:<64 hex>"; `npm run images -- build runtime` builds it, pushes it (--registry <host[/prefix]> for yours) and prints the reference',
        });
      }
      if (p.gateway.image === undefined) {
        ctx.addIssue({
          code: "custom",
          path: ["gateway", "image"],
          message:
            'is required: the Envoy image pinned by digest, "<name>@sha256:<64 hex>"; `npm run images -- build gateway` builds it, pushes it (--registry <host[/prefix]> for yours) and prints the reference',
        });
      }
    }
    const seen = new Set<string>();
    p.nodeGroups.forEach((g, i) => {
      if (seen.has(g.name)) {
        ctx.addIssue({
          code: "custom",
          path: ["nodeGroups", i, "name"],
          message: `${JSON.stringify(g.name)} is used by another node group`,
        });
      }
      seen.add(g.name);
    });
  });
export type PlatformConfig = z.output<typeof platformConfigSchema>;

/** One forked service of a shard: overrides of a baseline service. */
export const forkSchema = z.strictObject({
  /** Image of the fork; absent = the baseline's image (a fork that only changes env). */
  image: image.optional(),
  env: z
    .record(
      z.string().regex(ENV_NAME, { message: "must be an environment variable name" }),
      z.string(),
    )
    .default({}),
  /** Container port; absent = the baseline's port. */
  port: port.optional(),
  replicas: z.number().int().min(1).max(5).default(1),
  /** Readiness path of the fork; absent = the baseline's (see `baselineSchema.readinessPath`). */
  readinessPath: readinessPath.optional(),
});
export type ForkConfig = z.output<typeof forkSchema>;

/** `kind: shard`: one per developer. */
export const shardConfigSchema = z
  .strictObject({
    kind: z.literal(StackKind.Shard),
    /** Kubernetes user name of the owner (gets `shardworks:shard-owner` in the shard). */
    owner: z.string().min(1).max(253).regex(/^\S+$/, { message: "must not contain spaces" }),
    /** Shard name (namespace `shard-<name>`); absent = the owner, if it is a DNS label. */
    name: dnsLabel.max(57, { message: "must be at most 57 characters" }).optional(),
    /** The platform stack, e.g. `organization/shardworks/platform-local`. */
    platformStack: z.string().regex(STACK_NAME, {
      message: 'must be a stack name, e.g. "organization/shardworks/platform-local"',
    }),
    /** Routing key carried by requests; absent = `shard-<name>`. */
    routingKey: routingKeySchema.optional(),
    ttl: duration(MAX_SHARD_TTL_MS, "7d").default("24h"),
    quota: z
      .strictObject({
        cpu: positiveQuantity.default("4"),
        memory: positiveQuantity.default("8Gi"),
        pods: z.number().int().min(1).max(500).default(20),
      })
      .default({ cpu: "4", memory: "8Gi", pods: 20 }),
    forks: z.record(dnsLabel, forkSchema).default({}),
    /**
     * Runtime API URL as reachable from where `pulumi up` runs (the platform exports the
     * in-cluster URL, which a laptop cannot reach). Absent = the platform's `runtimeApiUrl`.
     */
    runtimeApiUrl: z
      .url({ protocol: /^https?$/, error: 'must be an http(s) URL, e.g. "http://127.0.0.1:8080"' })
      .optional(),
    /** Platform token (a secret) to register the shard with; absent = the platform's output. */
    platformToken: z
      .string()
      .min(32, { message: "must be at least 32 characters (the platform stack's platformToken)" })
      .optional(),
    /**
     * How long `pulumi up` waits for each fork's pods to become Ready before it fails, naming the
     * fork and the reason (e.g. an image that cannot be pulled). Shards always wait: a fork that
     * never runs is a failed deploy, not a success.
     */
    readyTimeout: duration(MAX_READY_TIMEOUT_SECONDS * 1000, "1h").default(
      `${DEFAULT_READY_TIMEOUT_SECONDS / 60}m`,
    ),
  })
  .superRefine((s, ctx) => {
    if (s.name === undefined && !dnsLabel.max(57).safeParse(s.owner).success) {
      ctx.addIssue({
        code: "custom",
        path: ["name"],
        message: `is required because owner ${JSON.stringify(s.owner)} is not a DNS label; e.g. "alice"`,
      });
    }
  })
  .transform((s) => ({ ...s, name: s.name ?? s.owner }));
export type ShardConfig = z.output<typeof shardConfigSchema>;

/**
 * Any stack's config. Once the schema's own rules pass, the components' validators run on it
 * too (`component-checks.ts`): config that a component would reject fails here, not after
 * resources were registered.
 */
export const stackConfigSchema = z
  .discriminatedUnion("kind", [platformConfigSchema, shardConfigSchema])
  .superRefine((config, ctx) => {
    // Only a config that passed the schema's own rules: the same mistake is not reported twice.
    if (ctx.issues.length > 0) return;
    const issues =
      config.kind === StackKind.Platform
        ? platformComponentIssues(config)
        : shardComponentIssues(config);
    for (const issue of issues) ctx.addIssue({ code: "custom", ...issue });
  });
export type StackConfig = z.output<typeof stackConfigSchema>;

/** Invalid stack config: one line per problem, `shardworks:<path>: <what is wrong and allowed>`. */
export class StackConfigError extends Error {
  constructor(readonly problems: readonly string[]) {
    super(problems.join("\n"));
    this.name = "StackConfigError";
  }
}

/** `nodeGroups[1].instanceType` from a zod path. */
function keyPath(path: readonly PropertyKey[]): string {
  let out = "";
  for (const part of path) {
    if (typeof part === "number") out += `[${part}]`;
    else out += out === "" ? String(part) : `.${String(part)}`;
  }
  return out;
}

/**
 * Messages for zod's generic issues, used where a schema gives none. Written for a person
 * editing YAML: what was found, what is allowed.
 */
const configErrorMap: z.core.$ZodErrorMap = (issue) => {
  switch (issue.code) {
    case "invalid_type":
      return issue.input === undefined
        ? `is required (${issue.expected})`
        : `expected ${issue.expected}, got ${JSON.stringify(issue.input)}`;
    case "invalid_value":
      return `${JSON.stringify(issue.input)} is not allowed; allowed: ${issue.values.map((v) => JSON.stringify(v)).join(", ")}`;
    case "invalid_key":
      return `is not a valid name: ${issue.issues[0]?.message ?? "invalid"}`;
    case "too_small":
      if (issue.origin === "string") return `must be at least ${issue.minimum} characters`;
      if (issue.origin === "array") return `needs at least ${issue.minimum} entries`;
      return `${JSON.stringify(issue.input)} is less than the minimum ${issue.minimum}`;
    case "too_big":
      if (issue.origin === "string") return `must be at most ${issue.maximum} characters`;
      if (issue.origin === "array") return `allows at most ${issue.maximum} entries`;
      return `${JSON.stringify(issue.input)} is more than the maximum ${issue.maximum}`;
    case "invalid_union":
      return `must be "platform" or "shard"`;
    default:
      return undefined;
  }
};

/**
 * Validate a plain object of `shardworks:*` values (keys without the namespace). Pure: throws
 * {@link StackConfigError} listing every problem, returns the config with defaults applied.
 */
export function parseStackConfig(raw: unknown): StackConfig {
  const result = stackConfigSchema.safeParse(raw, { error: configErrorMap, reportInput: true });
  if (result.success) return result.data;
  const problems = result.error.issues.flatMap((issue) =>
    // One line per unknown key, at the key's own path, so the line says exactly what to fix.
    issue.code === "unrecognized_keys"
      ? issue.keys.map(
          (key) =>
            `${CONFIG_NAMESPACE}:${keyPath([...issue.path, key])}: unknown key; check the spelling against docs/readme/components.md`,
        )
      : [`${CONFIG_NAMESPACE}:${keyPath(issue.path)}: ${issue.message}`],
  );
  throw new StackConfigError(problems);
}

/**
 * Turn Pulumi's config values (all strings; objects and lists as JSON) into plain values.
 * Scalars stay strings except `true`/`false` of boolean keys (`skipAwait`), so a version like "1.33" is not read as a number.
 */
export function configValues(all: Record<string, string>): Record<string, unknown> {
  const prefix = `${CONFIG_NAMESPACE}:`;
  const out: Record<string, unknown> = {};
  for (const [key, text] of Object.entries(all)) {
    if (!key.startsWith(prefix)) continue;
    const name = key.slice(prefix.length);
    if (BOOLEAN_KEYS.has(name) && (text === "true" || text === "false"))
      out[name] = text === "true";
    else if (/^\s*[[{]/.test(text)) {
      try {
        out[name] = JSON.parse(text);
      } catch {
        out[name] = text;
      }
    } else out[name] = text;
  }
  return out;
}

/** Top-level keys whose value is a boolean; any other `"true"` (an owner named so) stays a string. */
const BOOLEAN_KEYS = new Set(["skipAwait"]);

/** Read and validate this stack's `shardworks:*` config; call before registering any resource. */
export function loadStackConfig(): StackConfig {
  return parseStackConfig(configValues(pulumi.runtime.allConfig()));
}
