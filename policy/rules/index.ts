/** The rules of the Shardworks policy pack, each in its own module so tests can call it directly. */
import type { Policies } from "@pulumi/policy";
import { envoyAdminNotExposed } from "./envoy-admin";
import { jitBindingExpiry } from "./jit-expiry";
import { microvmNodeGroupsOnMetal } from "./metal-node-groups";
import { noPrivilegedWorkloads } from "./no-privileged";
import { platformImagesPinned } from "./pinned-images";
import { shardNamespaceFences } from "./shard-fences";
import { shardTtl } from "./shard-ttl";

export {
  checkEnvoyAdmin,
  envoyAdminNotExposed,
  envoyAdminOf,
  validateEnvoyAdmin,
} from "./envoy-admin";
export { checkJitBinding, createJitExpiryPolicy, jitBindingExpiry } from "./jit-expiry";
export {
  checkNodeGroup,
  microvmNodeGroupsOnMetal,
  validateMetalNodeGroups,
} from "./metal-node-groups";
export { checkPodPrivileges, noPrivilegedWorkloads, validateNoPrivileged } from "./no-privileged";
export { checkPinnedImages, platformImagesPinned, validatePinnedImages } from "./pinned-images";
export {
  checkShardFences,
  isDefaultDenyIngress,
  shardNamespaceFences,
  validateShardFences,
} from "./shard-fences";
export { checkShardTtl, createShardTtlPolicy, isShardNamespace, shardTtl } from "./shard-ttl";

/** Every policy of the pack, mandatory first. */
export const policies: Policies = [
  shardNamespaceFences,
  noPrivilegedWorkloads,
  jitBindingExpiry,
  microvmNodeGroupsOnMetal,
  envoyAdminNotExposed,
  shardTtl,
  platformImagesPinned,
];
