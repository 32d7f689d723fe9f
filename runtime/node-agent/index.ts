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
export { NodeAgent, type NodeAgentConfig, type NodeAgentEvents } from "./agent";
export { spawnNodeAgent, type SpawnNodeAgentOptions, type SpawnedNodeAgent } from "./spawn";
