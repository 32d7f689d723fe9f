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
