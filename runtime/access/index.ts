/** JIT access: the access reaper and the grant library behind `shardworks access`. */
export {
  AccessReaper,
  createAccessReaper,
  type AccessReaperEvents,
  type AccessReaperOptions,
  type BindingKind,
  type BindingRef,
} from "./reaper";
export {
  GrantRole,
  GrantShard,
  GrantUser,
  MANAGED_BY,
  checkGrantRequest,
  grantAccess,
  grantName,
  listGrants,
  revokeGrant,
  timeLeft,
  type CheckedGrant,
  type Grant,
  type GrantRequest,
} from "./grants";
export {
  AccessError,
  Duration,
  formatDuration,
  jitDurationProblem,
  parseGrantDuration,
} from "./duration";
export { loadKubeConfig } from "./kubeconfig";
