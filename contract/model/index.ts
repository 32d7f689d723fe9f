/**
 * The records the runtime keeps in etcd, as zod schemas. They are the contract between the
 * scheduler, the node agents and the routing controller: each process parses what it reads with
 * these schemas, so a record written by one is understood by all.
 */
export {
  driverChoiceSchema,
  driverSchema,
  Driver,
  resourcesSchema,
  type Resources,
} from "./compute";
export {
  dnsLabel,
  hasControlCharacter,
  labelKeyProblem,
  labelKeySchema,
  labelValueProblem,
  labelValueSchema,
  nodeName,
} from "./names";
export { nodeRecordSchema, taintSchema, type NodeRecord } from "./node";
export { routerRecordSchema, type RouterRecord } from "./router";
export {
  baselineServiceSchema,
  DEFAULT_SERVICE_PROTOCOL,
  destinationSchema,
  MAX_ROUTING_KEY_LENGTH,
  routingKeySchema,
  serviceProtocolSchema,
  type BaselineService,
  type ServiceProtocol,
} from "./routing";
export {
  assignmentRecordSchema,
  MAX_SELECTOR_ENTRIES,
  registryAccessOf,
  registryAccessSchema,
  SandboxPhase,
  sandboxPhaseSchema,
  sandboxRecordSchema,
  sandboxSpecSchema,
  sandboxStatusSchema,
  tolerationSchema,
  type AssignmentRecord,
  type RegistryAccess,
  type SandboxRecord,
  type SandboxSpec,
  type SandboxStatus,
} from "./sandbox";
export { MAX_SHARD_TTL_SECONDS, shardRecordSchema, shardUidOf, type ShardRecord } from "./shard";
