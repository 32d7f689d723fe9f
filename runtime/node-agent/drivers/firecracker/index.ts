/** The `firecracker` sandbox driver: Firecracker microVMs with snapshot warm starts. */
export { createFirecrackerDriver, FirecrackerDriver } from "./driver";
export type { FirecrackerDriverOptions } from "./driver";
export { firecrackerAbsence } from "./host";
export {
  FirecrackerApi,
  FirecrackerApiError,
  bootMicroVm,
  restoreMicroVm,
  snapshotMicroVm,
} from "./api";
