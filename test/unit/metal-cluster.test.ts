// AWS cannot be reached from here: these tests use Pulumi mocks for the AWS/EKS resources
// (allowed for AWS only); the Kubernetes side is checked for real by the testbed.
import test from "ava";
import * as pulumi from "@pulumi/pulumi";
import {
  MICROVM_KEY,
  MetalCluster,
  validateAvailabilityZones,
  validateNodeGroups,
  type NodeGroupSpec,
} from "../../components";
import { installMocks, named, ofType, recorded, settled, unwrap } from "./helpers/pulumi";
import { reasonOf } from "./helpers/component-tests";

const KUBECONFIG = JSON.stringify({
  apiVersion: "v1",
  kind: "Config",
  clusters: [{ name: "dev" }],
});
const groups: NodeGroupSpec[] = [
  { name: "system", role: "system", instanceType: "m6i.large", minSize: 2, maxSize: 4 },
  {
    name: "metal",
    role: "microvm",
    instanceType: "c6i.metal",
    minSize: 1,
    maxSize: 3,
    desiredSize: 2,
  },
  { name: "metal-xl", role: "microvm", instanceType: "m7i.metal-24xl", minSize: 0, maxSize: 2 },
];
let cluster: MetalCluster;

test.before(async () => {
  await installMocks({
    state: {
      "eks:index:Cluster": () => ({ kubeconfigJson: KUBECONFIG }),
      "aws:ec2/launchTemplate:LaunchTemplate": () => ({ latestVersion: 1 }),
      "aws:iam/role:Role": (_inputs, name) => ({
        arn: `arn:aws:iam::123456789012:role/${name}`,
        name,
      }),
    },
  });
  cluster = new MetalCluster("dev", {
    clusterName: "shardworks-dev",
    kubernetesVersion: "1.33",
    availabilityZones: ["us-east-1a", "us-east-1b"],
    nodeGroups: groups,
    adminRoleArns: ["arn:aws:iam::123456789012:role/admins"],
  });
  await settled(cluster.kubeconfig, cluster.nodeGroupNames, cluster.vpcId);
});

test("children are dev-<role>, all parented to the MetalCluster", (t) => {
  const children = recorded.filter((r) => r.parent === "dev");
  t.true(children.length >= 20);
  for (const c of children) t.true(c.name.startsWith("dev-"), c.name);
  t.is(ofType("aws:ec2/subnet:Subnet", "dev").length, 4, "a public and a private subnet per zone");
  t.is(ofType("aws:ec2/natGateway:NatGateway", "dev").length, 1);
  t.is(ofType("eks:index:ManagedNodeGroup", "dev").length, 3);
});

test("EKS: API-mode access entries for the admins, no default node group, private subnets", (t) => {
  const eks = named("dev-eks").inputs;
  t.is(eks["name"], "shardworks-dev");
  t.is(eks["version"], "1.33");
  t.true(eks["skipDefaultNodeGroup"]);
  t.is(eks["authenticationMode"], "API");
  t.deepEqual(eks["accessEntries"], {
    "admin-0": {
      principalArn: "arn:aws:iam::123456789012:role/admins",
      accessPolicies: {
        admin: {
          policyArn: "arn:aws:eks::aws:cluster-access-policy/AmazonEKSClusterAdminPolicy",
          accessScope: { type: "cluster" },
        },
      },
    },
  });
  t.is(eks["privateSubnetIds"].length, 2);
});

test("metal node groups are labelled and tainted shardworks.dev/microvm; the system group is not", (t) => {
  for (const name of ["dev-metal", "dev-metal-xl"]) {
    const ng = named(name).inputs;
    t.is(ng["labels"][MICROVM_KEY], "true", name);
    t.deepEqual(ng["taints"], [{ key: MICROVM_KEY, value: "true", effect: "NO_SCHEDULE" }], name);
  }
  const system = named("dev-system").inputs;
  t.is(system["labels"][MICROVM_KEY], undefined);
  t.deepEqual(system["taints"], []);
  t.deepEqual(named("dev-metal").inputs["instanceTypes"], ["c6i.metal"]);
  t.deepEqual(named("dev-metal").inputs["scalingConfig"], {
    minSize: 1,
    maxSize: 3,
    desiredSize: 2,
  });
  t.is(named("dev-metal").inputs["nodeGroupName"], "shardworks-dev-metal");
});

test("every node group uses a launch template that requires IMDSv2", (t) => {
  for (const g of groups) {
    const lt = named(`dev-${g.name}-lt`);
    t.is(lt.type, "aws:ec2/launchTemplate:LaunchTemplate");
    t.is(lt.inputs["metadataOptions"].httpTokens, "required");
    t.is(lt.inputs["metadataOptions"].httpPutResponseHopLimit, 1);
    t.deepEqual(named(`dev-${g.name}`).inputs["launchTemplate"], {
      id: `dev-${g.name}-lt-id`,
      version: "1",
    });
  }
});

test("outputs: kubeconfig is a secret, node group names", async (t) => {
  t.true(await pulumi.isSecret(cluster.kubeconfig));
  t.is(await unwrap(cluster.kubeconfig), KUBECONFIG);
  t.deepEqual(await unwrap(cluster.nodeGroupNames), [
    "shardworks-dev-system",
    "shardworks-dev-metal",
    "shardworks-dev-metal-xl",
  ]);
  t.is(await unwrap(cluster.vpcId), "dev-vpc-id");
});

const system = groups[0]!;
const metal = groups[1]!;
const bad: [string, () => unknown, string][] = [
  [
    "microvm group on a non-metal type",
    () => validateNodeGroups([system, { ...metal, instanceType: "m5.large" }]),
    'nodeGroups[1].instanceType: "m5.large" is not a metal instance type; microvm nodes need KVM, e.g. "c6i.metal"',
  ],
  [
    "no microvm group",
    () => validateNodeGroups([system]),
    'nodeGroups: needs at least one group with role "microvm"',
  ],
  [
    "no system group",
    () => validateNodeGroups([metal]),
    'nodeGroups: needs at least one group with role "system"',
  ],
  [
    "min above max",
    () => validateNodeGroups([system, { ...metal, minSize: 4, maxSize: 2 }]),
    "nodeGroups[1]: sizes must satisfy 0 <= minSize <= maxSize, 1 <= maxSize (got 4..2)",
  ],
  [
    "one zone",
    () => validateAvailabilityZones(["us-east-1a"]),
    'availabilityZones: needs at least 2 distinct zones (EKS requires it), got ["us-east-1a"]',
  ],
  [
    "repeated zone",
    () => validateAvailabilityZones(["us-east-1a", "us-east-1a"]),
    'availabilityZones: needs at least 2 distinct zones (EKS requires it), got ["us-east-1a","us-east-1a"]',
  ],
];
for (const [title, fn, expected] of bad) {
  test(`validator rejects: ${title}`, (t) => t.is(reasonOf(fn), expected));
}
test("validators accept metal sizes", (t) => {
  t.is(
    reasonOf(() => validateNodeGroups(groups)),
    "no error",
  );
});
