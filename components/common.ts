/**
 * Labels, annotations and small builders the components share. The names the runtime reads too
 * (label and annotation keys, ports, env vars) are in `contract/names.ts`.
 */
import type * as k8s from "@pulumi/kubernetes";

/** Pulumi's annotation to not wait for readiness (see the `skipAwait` args). */
export const SKIP_AWAIT_ANNOTATION = "pulumi.com/skipAwait";
/** Pulumi's annotation: how long the Kubernetes provider waits for an object to become ready. */
export const TIMEOUT_SECONDS_ANNOTATION = "pulumi.com/timeoutSeconds";
/**
 * Pulumi's annotation: the condition the Kubernetes provider waits for instead of its built-in
 * awaiter (a `jsonpath=` or `condition=` expression, as `kubectl wait --for`).
 */
export const WAIT_FOR_ANNOTATION = "pulumi.com/waitFor";

/** The role of a node group: system pods, or microVM sandboxes (needs KVM, so bare metal). */
export const NodeGroupRole = { System: "system", Microvm: "microvm" } as const;
/** One of {@link NodeGroupRole}. */
export type NodeGroupRole = (typeof NodeGroupRole)[keyof typeof NodeGroupRole];

/** `.metal` and `.metal-24xl`-style EC2 sizes: the ones that expose /dev/kvm. */
export const METAL_INSTANCE_TYPE = /^[a-z][a-z0-9-]*\.metal(-\d+xl)?$/;

/** Recommended labels for an object of a component. */
export function appLabels(instance: string, component: string): Record<string, string> {
  return {
    "app.kubernetes.io/name": component,
    "app.kubernetes.io/instance": instance,
    "app.kubernetes.io/part-of": "shardworks",
    "app.kubernetes.io/managed-by": "pulumi",
  };
}

/** Labels that make Pod Security admission enforce `level` in a namespace, and warn at it. */
export function podSecurityLabels(level: "baseline" | "restricted"): Record<string, string> {
  return {
    "pod-security.kubernetes.io/enforce": level,
    "pod-security.kubernetes.io/warn": level,
  };
}

/** The skipAwait annotation when asked for, else nothing. */
export function awaitAnnotations(skipAwait: boolean | undefined): Record<string, string> {
  return skipAwait ? { [SKIP_AWAIT_ANNOTATION]: "true" } : {};
}

/** A container that can do nothing beyond its own process: no privilege, no capabilities. */
export const restrictedContainer: k8s.types.input.core.v1.SecurityContext = {
  privileged: false,
  allowPrivilegeEscalation: false,
  readOnlyRootFilesystem: true,
  runAsNonRoot: true,
  capabilities: { drop: ["ALL"] },
  seccompProfile: { type: "RuntimeDefault" },
};

/** What a probe checks: an HTTP GET, a gRPC health check or a TCP connect. */
export type ProbeCheck = Pick<k8s.types.input.core.v1.Probe, "httpGet" | "grpc" | "tcpSocket">;

/**
 * The startup, readiness and liveness probes every platform container uses. Liveness starts only
 * once the startup probe passed (within `startupSeconds`, checked every 2 s): a slow start on a
 * loaded node is waited for, not killed and restarted. Then ready is checked every 5 s, live
 * every 10 s, with `livenessCheck` when it differs from the readiness check.
 */
export function probes(
  check: ProbeCheck,
  startupSeconds: number,
  livenessCheck: ProbeCheck = check,
): Pick<k8s.types.input.core.v1.Container, "startupProbe" | "readinessProbe" | "livenessProbe"> {
  return {
    startupProbe: {
      ...livenessCheck,
      periodSeconds: 2,
      failureThreshold: Math.max(1, Math.ceil(startupSeconds / 2)),
    },
    readinessProbe: { ...check, periodSeconds: 5 },
    livenessProbe: { ...livenessCheck, periodSeconds: 10 },
  };
}
