/** The `process` driver: bubblewrap sandboxes with warm launchers (see `driver.ts`). */
export { createProcessDriver, ProcessDriver } from "./driver";
export {
  defaultHostPorts,
  sandboxUid,
  type HostPortRange,
  type ProcessDriverOptions,
} from "./options";
export { compileSeccompFilter, PREBUILT_SECCOMP_FILTER, seccompFilter } from "./seccomp";
