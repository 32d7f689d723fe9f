/** The xDS control plane: Snapshot, SnapshotCache, Server, and Envoy's protos. */
export {
  ExtensionTypeUrl,
  PROTO_INCLUDE_DIRS,
  PUSH_ORDER,
  TypeUrl,
  adsClientConstructor,
  adsService,
  envoyRoot,
  fromProtoJson,
  messageType,
  pack,
  unpack,
  type AnyMessage,
} from "./protos";
export {
  makeResource,
  makeResourceFromParts,
  type SnapshotResources,
  type XdsResource,
} from "./resource";
export { Snapshot } from "./snapshot";
export {
  SnapshotCache,
  type ConfigWatcher,
  type SnapshotCacheOptions,
  type WatchRequest,
  type WatchResponse,
  type XdsNode,
} from "./cache";
export {
  ClientResourceStatus,
  ConfigStatus,
  clientStatusClientConstructor,
  fetchClientStatus,
  type ClientStatusQuery,
  type ClientConfig,
  type GenericXdsConfig,
} from "./csds";
export { XdsServer, type XdsServerOptions } from "./server";
export type { TypeState } from "./sotw";
export type { AckEvent, NackEvent, StreamClient, XdsServerEvents } from "./stream";
