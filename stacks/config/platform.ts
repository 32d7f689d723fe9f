/** A platform stack's config: its node groups, gateway, runtime, access and baseline services. */
import { z } from "zod";
import { Ports, REGISTRY_HOST_PATTERN } from "../../contract";
import { dnsLabel } from "../../contract/model";
import { METAL_INSTANCE_TYPE, NodeGroupRole } from "../../components/common";
import { MAX_JIT_CEILING_MS } from "../../components/access-control";
import {
  AWS_REGION,
  EC2_INSTANCE_TYPE,
  IAM_ROLE_ARN,
  PlatformTarget,
  StackKind,
  VERSION,
  duration,
  image,
  labelSelector,
  pinnedImage,
  port,
  readinessPath,
} from "./fields";

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
    listenerPort: port.default(Ports.gatewayListener),
    adminPort: port.default(Ports.envoyAdmin),
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
  /** The node agents' sandbox driver (`firecracker` on metal; `process` where there is no KVM). */
  nodeAgentDriver: z
    .enum(["firecracker", "qemu", "process"], {
      error: 'must be "firecracker", "qemu" or "process" (bubblewrap, for nodes without KVM)',
    })
    .default("firecracker"),
  /**
   * Registries (`host[:port]`) the node agents pull platform images from over plain HTTP, e.g. a
   * local testbed's; loopback ones always are. Default none.
   */
  insecureRegistries: z
    .array(
      z.string().regex(REGISTRY_HOST_PATTERN, {
        message: 'must be a registry "host[:port]" without a scheme, e.g. "10.100.0.1:5055"',
      }),
    )
    .default([]),
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
