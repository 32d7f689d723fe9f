export { SchedulerClient, ApiError } from "../../contract/client";
export type { NodeView } from "../../contract/api";
export { cliClient } from "./client";
export { buildProgram, runCli } from "./main";
export { buildBusyboxImage } from "./demo-image";
