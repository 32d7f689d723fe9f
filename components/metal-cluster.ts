/**
 * An EKS cluster for Shardworks: a VPC (public and private subnets, one NAT gateway), the cluster
 * with API-mode access entries, a system node group, and bare-metal node groups for microVMs,
 * labelled and tainted `shardworks.dev/microvm`, every node IMDSv2-only through its launch
 * template.
 */
import * as aws from "@pulumi/aws";
import * as eks from "@pulumi/eks";
import * as pulumi from "@pulumi/pulumi";
import { MICROVM_KEY } from "../contract";
import { METAL_INSTANCE_TYPE, NodeGroupRole } from "./common";

export { NodeGroupRole } from "./common";

/** One managed node group. */
export interface NodeGroupSpec {
  /** Short name, a DNS label; the EKS node group is `<clusterName>-<name>`. */
  name: string;
  /** `system` for platform pods, `microvm` for sandboxes (must be a `.metal` type). */
  role: NodeGroupRole;
  /** EC2 instance type, e.g. `m6i.large`, `c6i.metal`, `m7i.metal-24xl`. */
  instanceType: string;
  /** Fewest nodes. */
  minSize: number;
  /** Most nodes. */
  maxSize: number;
  /** Initial nodes. Default: `minSize`. */
  desiredSize?: number;
}

/** Arguments of {@link MetalCluster}. */
export interface MetalClusterArgs {
  /** EKS cluster name. */
  clusterName: string;
  /** Kubernetes minor version, e.g. `"1.33"`. */
  kubernetesVersion: string;
  /** Availability zones for the subnets (at least 2), e.g. `["us-east-1a", "us-east-1b"]`. */
  availabilityZones: string[];
  /** VPC CIDR, a /16. Default `10.0.0.0/16`; subnets are /20s of it. */
  vpcCidr?: string;
  /** Node groups: at least one `system` and one `microvm`. */
  nodeGroups: NodeGroupSpec[];
  /** IAM role ARNs given cluster-admin access entries. Default: none. */
  adminRoleArns?: string[];
}

/** Check the node groups: a system and a microvm group, microvm groups on metal, sane sizes. */
export function validateNodeGroups(groups: NodeGroupSpec[]): void {
  for (const role of [NodeGroupRole.System, NodeGroupRole.Microvm]) {
    if (!groups.some((g) => g.role === role)) {
      throw new pulumi.InputPropertyError({
        propertyPath: "nodeGroups",
        reason: `needs at least one group with role "${role}"`,
      });
    }
  }
  groups.forEach((g, i) => {
    if (g.role === NodeGroupRole.Microvm && !METAL_INSTANCE_TYPE.test(g.instanceType)) {
      throw new pulumi.InputPropertyError({
        propertyPath: `nodeGroups[${i}].instanceType`,
        reason: `${JSON.stringify(g.instanceType)} is not a metal instance type; microvm nodes need KVM, e.g. "c6i.metal"`,
      });
    }
    if (g.minSize < 0 || g.maxSize < 1 || g.minSize > g.maxSize) {
      throw new pulumi.InputPropertyError({
        propertyPath: `nodeGroups[${i}]`,
        reason: `sizes must satisfy 0 <= minSize <= maxSize, 1 <= maxSize (got ${g.minSize}..${g.maxSize})`,
      });
    }
  });
}

/** Check the availability zones: at least two, no repeats. */
export function validateAvailabilityZones(zones: string[]): void {
  if (zones.length < 2 || new Set(zones).size !== zones.length) {
    throw new pulumi.InputPropertyError({
      propertyPath: "availabilityZones",
      reason: `needs at least 2 distinct zones (EKS requires it), got ${JSON.stringify(zones)}`,
    });
  }
}

/** What {@link createMetalCluster} made. */
export interface MetalClusterResult {
  vpc: aws.ec2.Vpc;
  cluster: eks.Cluster;
  nodeGroups: eks.ManagedNodeGroup[];
  nodeGroupNames: string[];
}

const NODE_POLICIES = [
  "arn:aws:iam::aws:policy/AmazonEKSWorkerNodePolicy",
  "arn:aws:iam::aws:policy/AmazonEKS_CNI_Policy",
  "arn:aws:iam::aws:policy/AmazonEC2ContainerRegistryReadOnly",
];

/** Build the VPC, cluster and node groups as children of `parent`. */
export function createMetalCluster(
  name: string,
  args: MetalClusterArgs,
  parent: pulumi.Resource,
): MetalClusterResult {
  const cidr = args.vpcCidr ?? "10.0.0.0/16";
  const [a, b] = cidr.split(".");
  const subnetCidr = (index: number) => `${a}.${b}.${index * 16}.0/20`;
  const tags = { "shardworks.dev/cluster": args.clusterName };

  const vpc = new aws.ec2.Vpc(
    `${name}-vpc`,
    { cidrBlock: cidr, enableDnsHostnames: true, enableDnsSupport: true, tags },
    { parent },
  );
  const igw = new aws.ec2.InternetGateway(`${name}-igw`, { vpcId: vpc.id, tags }, { parent });
  const publicRt = new aws.ec2.RouteTable(
    `${name}-public-rt`,
    { vpcId: vpc.id, routes: [{ cidrBlock: "0.0.0.0/0", gatewayId: igw.id }], tags },
    { parent },
  );
  // A tier's subnets: one per availability zone, from the `firstBlock`-th /20 of the VPC on,
  // each routed by the tier's route table.
  const subnetsOf = (
    tier: "public" | "private",
    routeTable: aws.ec2.RouteTable,
    firstBlock: number,
    extra: Pick<aws.ec2.SubnetArgs, "mapPublicIpOnLaunch" | "tags">,
  ) =>
    args.availabilityZones.map((az, i) => {
      const subnet = new aws.ec2.Subnet(
        `${name}-${tier}-${i}`,
        { vpcId: vpc.id, availabilityZone: az, cidrBlock: subnetCidr(firstBlock + i), ...extra },
        { parent },
      );
      new aws.ec2.RouteTableAssociation(
        `${name}-${tier}-${i}-rta`,
        { subnetId: subnet.id, routeTableId: routeTable.id },
        { parent },
      );
      return subnet;
    });
  const publicSubnets = subnetsOf("public", publicRt, 0, {
    mapPublicIpOnLaunch: false,
    tags: { ...tags, "kubernetes.io/role/elb": "1" },
  });
  const natIp = new aws.ec2.Eip(`${name}-nat-ip`, { domain: "vpc", tags }, { parent });
  const nat = new aws.ec2.NatGateway(
    `${name}-nat`,
    { allocationId: natIp.id, subnetId: publicSubnets[0]!.id, tags },
    { parent, dependsOn: [igw] },
  );
  const privateRt = new aws.ec2.RouteTable(
    `${name}-private-rt`,
    { vpcId: vpc.id, routes: [{ cidrBlock: "0.0.0.0/0", natGatewayId: nat.id }], tags },
    { parent },
  );
  const privateSubnets = subnetsOf("private", privateRt, 8, {
    tags: { ...tags, "kubernetes.io/role/internal-elb": "1" },
  });

  const nodeRole = new aws.iam.Role(
    `${name}-node-role`,
    {
      assumeRolePolicy: JSON.stringify({
        Version: "2012-10-17",
        Statement: [
          {
            Effect: "Allow",
            Action: "sts:AssumeRole",
            Principal: { Service: "ec2.amazonaws.com" },
          },
        ],
      }),
      tags,
    },
    { parent },
  );
  const attachments = NODE_POLICIES.map(
    (policyArn, i) =>
      new aws.iam.RolePolicyAttachment(
        `${name}-node-policy-${i}`,
        { role: nodeRole.name, policyArn },
        { parent },
      ),
  );

  const accessEntries: Record<string, eks.types.input.AccessEntryArgs> = {};
  (args.adminRoleArns ?? []).forEach((principalArn, i) => {
    accessEntries[`admin-${i}`] = {
      principalArn,
      accessPolicies: {
        admin: {
          policyArn: "arn:aws:eks::aws:cluster-access-policy/AmazonEKSClusterAdminPolicy",
          accessScope: { type: "cluster" },
        },
      },
    };
  });
  const cluster = new eks.Cluster(
    `${name}-eks`,
    {
      name: args.clusterName,
      version: args.kubernetesVersion,
      vpcId: vpc.id,
      publicSubnetIds: publicSubnets.map((s) => s.id),
      privateSubnetIds: privateSubnets.map((s) => s.id),
      nodeAssociatePublicIpAddress: false,
      skipDefaultNodeGroup: true,
      authenticationMode: eks.AuthenticationMode.Api,
      accessEntries,
      endpointPrivateAccess: true,
      createOidcProvider: true,
      tags,
    },
    { parent },
  );

  const nodeGroupNames: string[] = [];
  const nodeGroups = args.nodeGroups.map((group) => {
    const microvm = group.role === NodeGroupRole.Microvm;
    // IMDSv2 only, hop limit 1: pods cannot reach the node's instance credentials.
    const launchTemplate = new aws.ec2.LaunchTemplate(
      `${name}-${group.name}-lt`,
      {
        metadataOptions: {
          httpEndpoint: "enabled",
          httpTokens: "required",
          httpPutResponseHopLimit: 1,
        },
        tags,
      },
      { parent },
    );
    const nodeGroupName = `${args.clusterName}-${group.name}`;
    nodeGroupNames.push(nodeGroupName);
    return new eks.ManagedNodeGroup(
      `${name}-${group.name}`,
      {
        cluster,
        nodeGroupName,
        nodeRole,
        instanceTypes: [group.instanceType],
        subnetIds: privateSubnets.map((s) => s.id),
        scalingConfig: {
          minSize: group.minSize,
          maxSize: group.maxSize,
          desiredSize: group.desiredSize ?? group.minSize,
        },
        launchTemplate: {
          id: launchTemplate.id,
          version: launchTemplate.latestVersion.apply(String),
        },
        labels: microvm
          ? { "shardworks.dev/role": group.role, [MICROVM_KEY]: "true" }
          : { "shardworks.dev/role": group.role },
        taints: microvm ? [{ key: MICROVM_KEY, value: "true", effect: "NO_SCHEDULE" }] : [],
        tags,
      },
      { parent, dependsOn: attachments },
    );
  });
  return { vpc, cluster, nodeGroups, nodeGroupNames };
}

/** An EKS cluster with system and bare-metal microVM node groups. */
export class MetalCluster extends pulumi.ComponentResource {
  /** Kubeconfig of the cluster (JSON), a secret. */
  readonly kubeconfig: pulumi.Output<string>;
  /** EKS names of the node groups. */
  readonly nodeGroupNames: pulumi.Output<string[]>;
  /** The VPC's id. */
  readonly vpcId: pulumi.Output<string>;

  constructor(name: string, args: MetalClusterArgs, opts?: pulumi.ComponentResourceOptions) {
    super("shardworks:components:MetalCluster", name, {}, opts);
    validateAvailabilityZones(args.availabilityZones);
    validateNodeGroups(args.nodeGroups);
    const result = createMetalCluster(name, args, this);
    this.kubeconfig = pulumi.secret(result.cluster.kubeconfigJson);
    this.nodeGroupNames = pulumi.output(result.nodeGroupNames);
    this.vpcId = result.vpc.id;
    this.registerOutputs({
      kubeconfig: this.kubeconfig,
      nodeGroupNames: this.nodeGroupNames,
      vpcId: this.vpcId,
    });
  }
}
