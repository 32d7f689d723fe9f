/**
 * The runtime container image's one entry point: `runtime/main.ts <role> [options]`, where role is
 * `scheduler`, `node-agent` or `routing-controller` (the argument the RuntimeDeployment gives each
 * workload). Every option also comes from the `SHARDWORKS_*` env vars the component sets.
 */
import { z } from "zod";
import { nodeAgentMain } from "./node-agent/main";
import { routingMain } from "./routing/main";
import { schedulerMain } from "./scheduler/main";

/** The processes the runtime image can run. */
const roles = {
  scheduler: schedulerMain,
  "node-agent": nodeAgentMain,
  "routing-controller": routingMain,
} as const;

/** One of the roles above. */
export const roleSchema = z.enum(Object.keys(roles) as [keyof typeof roles], {
  error: (issue) =>
    `unknown role ${JSON.stringify(issue.input)}; the first argument must be one of: ${Object.keys(roles).join(", ")}`,
});

/** Dispatch `argv` (`process.argv` form) to the chosen role's main; exits 2 on a bad role. */
export async function runtimeMain(argv: readonly string[]): Promise<void> {
  const role = roleSchema.safeParse(argv[2]);
  if (!role.success) {
    console.error(`error: ${role.error.issues[0]?.message ?? "bad role"}`);
    process.exit(2);
  }
  const main = roles[role.data];
  // The role's own parser sees `node main.ts [options]`, as if it had been started directly.
  await main([argv[0] ?? process.execPath, argv[1] ?? __filename, ...argv.slice(3)]);
}

if (require.main === module) void runtimeMain(process.argv);
