export type {
  DriverCapabilities,
  ProbeResult,
  RunRequest,
  SandboxExit,
  RunningSandbox,
  MigrationTarget,
  SandboxDriver,
  MigratingDriver,
} from "./driver";
export { isMigratingDriver } from "./driver";
export { NodeAgent } from "./agent";
export type { NodeAgentConfig, NodeAgentEvents } from "./config";
export { spawnNodeAgent, type SpawnNodeAgentOptions, type SpawnedNodeAgent } from "./spawn";
