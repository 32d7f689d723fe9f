export {
  createApi,
  sandboxesApp,
  nodesApp,
  authMiddleware,
  assertSandboxAccess,
  type ApiOptions,
} from "./api";
export { AgentClient } from "./agent-client";
export { migrateSandbox } from "./migration";
export {
  startScheduler,
  schedulerConfigSchema,
  type SchedulerConfig,
  type RunningScheduler,
  type SchedulerExtras,
} from "./server";
export { Placer, type PlacerConfig, type PlacerEvents } from "./placer";
export {
  placeSandbox,
  scoreNode,
  unfitReason,
  PlacementStrategy,
  type Allocations,
} from "./placement";
export { imageReferenceSchema, createSandboxBodySchema } from "./validation";
export { registry as metricsRegistry } from "./metrics";
export {
  Autoscaler,
  desiredNodeCount,
  type NodeActuator,
  type AutoscalerConfig,
} from "./autoscaler";
export { LocalNodeActuator, type LocalNodeActuatorConfig } from "./local-actuator";
