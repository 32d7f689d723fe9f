export { SchedulerClient, ApiError, type NodeView } from "./client";
export { buildProgram, runCli } from "./main";
export { buildBusyboxImage } from "./demo-image";
