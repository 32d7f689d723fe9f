/**
 * Where the pod spec sits in each kind of Kubernetes workload, so the rules that look at
 * containers read every workload the same way.
 */
import * as k8s from "@pulumi/kubernetes";
import type { PolicyResource, ReportViolation, ResourceValidationArgs } from "@pulumi/policy";
import type * as pulumi from "@pulumi/pulumi";

/** A pod spec as the policy SDK passes it (inputs, resolved). */
export type PodSpec = pulumi.Unwrap<k8s.types.input.core.v1.PodSpec>;
/** A container as the policy SDK passes it. */
export type Container = pulumi.Unwrap<k8s.types.input.core.v1.Container>;
/** Object metadata as the policy SDK passes it. */
export type ObjectMeta = pulumi.Unwrap<k8s.types.input.meta.v1.ObjectMeta>;

/** A workload's pod spec, with the property path that leads to it (for messages). */
export interface PodTemplate {
  /** e.g. `spec.template.spec`. */
  path: string;
  spec: PodSpec;
  metadata: ObjectMeta;
}

/** What both a resource policy's args and a stack policy's resources offer. */
type Args = Pick<ResourceValidationArgs | PolicyResource, "isType" | "props">;
type PodProps = pulumi.Unwrap<k8s.core.v1.PodArgs>;
type DeploymentProps = pulumi.Unwrap<k8s.apps.v1.DeploymentArgs>;
type CronJobProps = pulumi.Unwrap<k8s.batch.v1.CronJobArgs>;

/** The pod spec of a Pod, Deployment, StatefulSet, DaemonSet, ReplicaSet, Job or CronJob. */
export function podTemplateOf(args: Args): PodTemplate | undefined {
  // isType is the SDK's typed check; the props are then those of that class.
  if (args.isType(k8s.core.v1.Pod)) {
    const pod = args.props as PodProps;
    return withMeta("spec", pod.spec, pod.metadata);
  }
  const templated: Parameters<Args["isType"]>[0][] = [
    k8s.apps.v1.Deployment,
    k8s.apps.v1.StatefulSet,
    k8s.apps.v1.DaemonSet,
    k8s.apps.v1.ReplicaSet,
    k8s.batch.v1.Job,
  ];
  if (templated.some((kind) => args.isType(kind))) {
    // The five share `spec.template.spec`.
    const workload = args.props as DeploymentProps;
    return withMeta("spec.template.spec", workload.spec?.template?.spec, workload.metadata);
  }
  if (args.isType(k8s.batch.v1.CronJob)) {
    const cron = args.props as CronJobProps;
    return withMeta(
      "spec.jobTemplate.spec.template.spec",
      cron.spec?.jobTemplate?.spec?.template?.spec,
      cron.metadata,
    );
  }
  return undefined;
}

function withMeta(
  path: string,
  spec: PodSpec | undefined,
  metadata: ObjectMeta | undefined,
): PodTemplate | undefined {
  return spec === undefined ? undefined : { path, spec, metadata: metadata ?? {} };
}

/** Every container of a pod spec (init, regular, ephemeral), each with its property path. */
export function containersOf(template: PodTemplate): { path: string; container: Container }[] {
  const all: { path: string; container: Container }[] = [];
  for (const field of ["initContainers", "containers", "ephemeralContainers"] as const) {
    (template.spec[field] ?? []).forEach((container, i) =>
      all.push({ path: `${template.path}.${field}[${i}]`, container: container }),
    );
  }
  return all;
}

/** Namespace of an object: unset means `default`, as the API server does. */
export function namespaceOf(metadata: { namespace?: string } | undefined): string {
  return metadata?.namespace ?? "default";
}

/**
 * A resource validation that runs `check` on the pod template of every kind of workload (see
 * {@link podTemplateOf}) and passes over every other resource.
 */
export function onEveryPodTemplate(
  check: (template: PodTemplate, report: (message: string) => void) => void,
): (args: ResourceValidationArgs, reportViolation: ReportViolation) => void {
  return (args, reportViolation) => {
    const template = podTemplateOf(args);
    if (template !== undefined) check(template, (message) => reportViolation(message));
  };
}
