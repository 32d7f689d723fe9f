/**
 * What every part of a {@link RuntimeDeployment} builds with: the `shardworks-system` namespace,
 * and the metadata, selectors and ServiceAccounts of the objects in it.
 */
import * as k8s from "@pulumi/kubernetes";
import type * as pulumi from "@pulumi/pulumi";
import { SYSTEM_NAMESPACE } from "../../contract";
import { appLabels, awaitAnnotations } from "../common";
import type { RuntimeDeploymentArgs } from "./args";

/** The namespace of the runtime services. */
export const ns = SYSTEM_NAMESPACE;
/** The in-cluster DNS name of a Service in {@link ns}. */
export const fqdn = (service: string) => `${service}.${ns}.svc.cluster.local`;

/** The component being built, shared by its parts. */
export interface RuntimeScope {
  /** The component's name: children are `${name}-<role>`. */
  readonly name: string;
  readonly args: RuntimeDeploymentArgs;
  readonly parent: pulumi.Resource;
  readonly namespace: k8s.core.v1.Namespace;
  /** Options of a child in the namespace. */
  readonly inNs: pulumi.CustomResourceOptions;
  /** The `skipAwait` annotations of workloads and Services. */
  readonly skip: Record<string, string>;
}

/** Create the namespace (the component's first child) and the scope of the other parts. */
export function createRuntimeScope(
  name: string,
  args: RuntimeDeploymentArgs,
  parent: pulumi.Resource,
): RuntimeScope {
  const skip = awaitAnnotations(args.skipAwait);
  const namespace = new k8s.core.v1.Namespace(
    `${name}-namespace`,
    {
      metadata: {
        name: ns,
        labels: {
          ...appLabels(name, "runtime"),
          // The node agent needs /dev/kvm; nothing else here is privileged.
          "pod-security.kubernetes.io/enforce": "privileged",
        },
        annotations: skip,
      },
    },
    { parent },
  );
  return { name, args, parent, namespace, inNs: { parent, dependsOn: [namespace] }, skip };
}

/** Metadata of a component's object in the namespace. */
export function metaOf(scope: RuntimeScope, component: string, extra: { name: string }) {
  return {
    ...extra,
    namespace: ns,
    labels: appLabels(scope.name, component),
    annotations: scope.skip,
  };
}

/** The labels selecting a component's pods. */
export function selectorOf(scope: RuntimeScope, component: string) {
  return {
    "app.kubernetes.io/name": component,
    "app.kubernetes.io/instance": scope.name,
  };
}

/** A component's ServiceAccount `shardworks-<component>`. */
export function serviceAccountOf(
  scope: RuntimeScope,
  component: string,
  automount: boolean,
): k8s.core.v1.ServiceAccount {
  return new k8s.core.v1.ServiceAccount(
    `${scope.name}-${component}-sa`,
    {
      metadata: {
        name: `shardworks-${component}`,
        namespace: ns,
        labels: appLabels(scope.name, component),
      },
      automountServiceAccountToken: automount,
    },
    scope.inNs,
  );
}
