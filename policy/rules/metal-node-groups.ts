/** Node groups that carry microVMs run on bare metal: only `.metal` EC2 types expose /dev/kvm. */
import * as aws from "@pulumi/aws";
import type {
  ReportViolation,
  ResourceValidationArgs,
  ResourceValidationPolicy,
} from "@pulumi/policy";
import { validateResourceOfType } from "@pulumi/policy";
import { MICROVM_KEY } from "../../contract";
import { METAL_INSTANCE_TYPE } from "../../components/common";

/** Type token of `@pulumi/eks`'s ManagedNodeGroup (a remote component, so no class to match on). */
export const EKS_MANAGED_NODE_GROUP = "eks:index:ManagedNodeGroup";

/** The parts of a node group the rule reads (same names on aws.eks.NodeGroup and eks.ManagedNodeGroup). */
export interface NodeGroupProps {
  labels?: Record<string, string>;
  taints?: { key?: string }[];
  instanceTypes?: string[];
}

/** Report a microvm node group (labelled or tainted `shardworks.dev/microvm`) not on metal. */
export function checkNodeGroup(group: NodeGroupProps, report: (message: string) => void): void {
  const microvm =
    group.labels?.[MICROVM_KEY] !== undefined ||
    (group.taints ?? []).some((taint) => taint.key === MICROVM_KEY);
  if (!microvm) return;
  const types = group.instanceTypes ?? [];
  if (types.length === 0) {
    report(
      `instanceTypes is not set on a microvm node group (EKS would pick t3.medium); set a metal type, e.g. "c6i.metal"`,
    );
    return;
  }
  types.forEach((type, i) => {
    if (!METAL_INSTANCE_TYPE.test(type))
      report(
        `instanceTypes[${i}]: ${JSON.stringify(type)} is not a metal instance type; microvm nodes need KVM, e.g. "c6i.metal"`,
      );
  });
}

/** The validate functions: the AWS node group, and @pulumi/eks's component around it. */
export const validateMetalNodeGroups = [
  validateResourceOfType(aws.eks.NodeGroup, (group, _args, reportViolation) =>
    checkNodeGroup(group, (message) => reportViolation(message)),
  ),
  (args: ResourceValidationArgs, reportViolation: ReportViolation): void => {
    if (args.type !== EKS_MANAGED_NODE_GROUP) return;
    checkNodeGroup(args.props as NodeGroupProps, (message) => reportViolation(message));
  },
];

/** Policy: microvm node groups use metal instance types. */
export const microvmNodeGroupsOnMetal: ResourceValidationPolicy = {
  name: "microvm-node-groups-on-metal",
  description:
    "MicroVM sandboxes need /dev/kvm, which EC2 only exposes on .metal instance types, so a microvm node group on any other type would never run a sandbox.",
  enforcementLevel: "mandatory",
  validateResource: validateMetalNodeGroups,
};
