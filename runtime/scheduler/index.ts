export {
  createApi,
  sandboxesApp,
  nodesApp,
  authMiddleware,
  assertSandboxAccess,
  type ApiOptions,
} from "./api";
export {
  startScheduler,
  schedulerConfigSchema,
  type SchedulerConfig,
  type RunningScheduler,
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
