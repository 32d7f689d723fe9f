/**
 * Envoy's admin interface can reconfigure and stop the proxy, so it stays inside the pod: bound
 * to loopback in the bootstrap, and no container port or Service port leads to it.
 */
import * as k8s from "@pulumi/kubernetes";
import type {
  PolicyResource,
  ReportViolation,
  StackValidationArgs,
  StackValidationPolicy,
} from "@pulumi/policy";
import { containersOf, namespaceOf, podTemplateOf } from "./workloads";

/** Envoy's usual admin port, assumed when a namespace runs Envoy without a bootstrap we can read. */
export const DEFAULT_ENVOY_ADMIN_PORT = 9901;
const LOOPBACK = /^(127\.\d+\.\d+\.\d+|::1|localhost)$/;
/** An image whose repository is Envoy's (`envoyproxy/envoy`, `envoyproxy/envoy-distroless`, …). */
const ENVOY_IMAGE = /(^|\/)envoy(-[a-z0-9]+)?(:[^/]*)?(@sha256:[0-9a-f]+)?$/;

interface EnvoyAdmin {
  address?: string;
  port?: number;
}

/** The admin section of an Envoy bootstrap in JSON, or undefined when `text` is not one. */
export function envoyAdminOf(text: string): EnvoyAdmin | undefined {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    return undefined;
  }
  if (parsed === null || typeof parsed !== "object") return undefined;
  const bootstrap = parsed as Record<string, unknown>;
  const isBootstrap = ["static_resources", "dynamic_resources", "node"].some((k) => k in bootstrap);
  if (!isBootstrap || typeof bootstrap["admin"] !== "object" || bootstrap["admin"] === null)
    return undefined;
  const socket = (bootstrap["admin"] as { address?: { socket_address?: Record<string, unknown> } })
    .address?.socket_address;
  const address = socket?.["address"];
  const port = socket?.["port_value"];
  return {
    address: typeof address === "string" ? address : undefined,
    port: typeof port === "number" ? port : undefined,
  };
}

/** Report every way the stack exposes an Envoy admin interface. */
export function checkEnvoyAdmin(resources: PolicyResource[], report: ReportViolation): void {
  // Admin ports per namespace, from the bootstraps in ConfigMaps.
  const adminPorts = new Map<string, Set<number>>();
  for (const r of resources) {
    const configMap = r.asType(k8s.core.v1.ConfigMap);
    if (configMap === undefined) continue;
    const namespace = namespaceOf(configMap.metadata);
    for (const [key, text] of Object.entries(configMap.data ?? {})) {
      const admin = envoyAdminOf(text);
      if (admin === undefined) continue;
      if (admin.address !== undefined && !LOOPBACK.test(admin.address))
        report(
          `data["${key}"]: Envoy admin.address.socket_address.address is "${admin.address}"; bind the admin interface to 127.0.0.1`,
          r.urn,
        );
      if (admin.port !== undefined)
        adminPorts.set(namespace, (adminPorts.get(namespace) ?? new Set()).add(admin.port));
    }
  }
  const portsIn = (namespace: string) =>
    adminPorts.get(namespace) ?? new Set([DEFAULT_ENVOY_ADMIN_PORT]);

  const envoyNamespaces = new Set<string>();
  for (const r of resources) {
    const template = podTemplateOf(r);
    if (template === undefined) continue;
    const namespace = namespaceOf(template.metadata);
    for (const { path, container } of containersOf(template)) {
      if (!ENVOY_IMAGE.test(container.image ?? "")) continue;
      envoyNamespaces.add(namespace);
      (container.ports ?? []).forEach((port, i) => {
        if (port.name === "admin" || portsIn(namespace).has(port.containerPort))
          report(
            `${path}.ports[${i}]: port ${port.containerPort}${port.name ? ` ("${port.name}")` : ""} is Envoy's admin port; do not declare it, admin must stay inside the pod`,
            r.urn,
          );
      });
    }
  }
  for (const r of resources) {
    const service = r.asType(k8s.core.v1.Service);
    if (service === undefined) continue;
    const namespace = namespaceOf(service.metadata);
    if (!envoyNamespaces.has(namespace)) continue;
    (service.spec?.ports ?? []).forEach((port, i) => {
      const target = port.targetPort ?? port.port;
      if (
        port.name === "admin" ||
        target === "admin" ||
        // What reaches the pod is the target port; the Service's own number may be anything.
        portsIn(namespace).has(Number(target))
      )
        report(
          `spec.ports[${i}]: Service port ${port.port} -> ${target} leads to Envoy's admin port; remove it, admin must stay inside the pod`,
          r.urn,
        );
    });
  }
}

/** The validate function over the whole stack. */
export function validateEnvoyAdmin(
  args: StackValidationArgs,
  reportViolation: ReportViolation,
): void {
  checkEnvoyAdmin(args.resources, reportViolation);
}

/** Policy: Envoy's admin port is not exposed. */
export const envoyAdminNotExposed: StackValidationPolicy = {
  name: "envoy-admin-not-exposed",
  description:
    "Envoy's admin interface can dump its config, drain listeners and shut the gateway down without authentication, so it must be bound to loopback and never published by a container or Service port.",
  enforcementLevel: "mandatory",
  validateStack: validateEnvoyAdmin,
};
