/**
 * Nothing privileged outside `shardworks-system`; inside it, host paths only for the node agent.
 */
import type { ResourceValidationPolicy } from "@pulumi/policy";
import { NODE_AGENT_HOST_PATHS, SYSTEM_NAMESPACE } from "../../contract";
import { type PodTemplate, containersOf, namespaceOf, onEveryPodTemplate } from "./workloads";

const NODE_AGENT_PATHS: readonly string[] = Object.values(NODE_AGENT_HOST_PATHS);

/** Report every privileged setting of one pod template. */
export function checkPodPrivileges(template: PodTemplate, report: (message: string) => void): void {
  const namespace = namespaceOf(template.metadata);
  const system = namespace === SYSTEM_NAMESPACE;
  const where = `only pods in ${SYSTEM_NAMESPACE} may`;
  if (!system) {
    for (const field of ["hostPID", "hostIPC", "hostNetwork"] as const) {
      if (template.spec[field] === true)
        report(
          `${template.path}.${field} is true in namespace "${namespace}"; ${where} share the node's namespaces`,
        );
    }
  }
  (template.spec.volumes ?? []).forEach((volume, i) => {
    const path = volume.hostPath?.path;
    if (path === undefined) return;
    const at = `${template.path}.volumes[${i}].hostPath.path`;
    if (!system)
      report(`${at} is "${path}" in namespace "${namespace}"; ${where} mount host paths`);
    else if (!NODE_AGENT_PATHS.includes(path))
      report(
        `${at} is "${path}"; only the node agent's host paths (${NODE_AGENT_PATHS.join(", ")}) may be mounted`,
      );
  });
  if (system) return;
  for (const { path, container } of containersOf(template)) {
    const sc = container.securityContext;
    const name = `${path} ("${container.name}")`;
    if (sc?.privileged === true)
      report(
        `${name}: securityContext.privileged is true in namespace "${namespace}"; ${where} run privileged`,
      );
    if (sc?.allowPrivilegeEscalation === true)
      report(
        `${name}: securityContext.allowPrivilegeEscalation is true in namespace "${namespace}"; set it to false`,
      );
    const added = sc?.capabilities?.add ?? [];
    if (added.length > 0)
      report(
        `${name}: securityContext.capabilities.add is ${JSON.stringify(added)} in namespace "${namespace}"; ${where} add capabilities`,
      );
  }
}

/** The validate function: applies to every kind of workload. */
export const validateNoPrivileged = onEveryPodTemplate(checkPodPrivileges);

/** Policy: no privileged workload outside `shardworks-system`. */
export const noPrivilegedWorkloads: ResourceValidationPolicy = {
  name: "no-privileged-workloads",
  description:
    "A privileged pod (privileged, privilege escalation, added capabilities, host namespaces or host paths) can take over its node and every shard on it, so only the node agent in shardworks-system may have one.",
  enforcementLevel: "mandatory",
  validateResource: validateNoPrivileged,
};
