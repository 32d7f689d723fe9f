/**
 * The access reaper on its own, for local use: `npx tsx runtime/access/main.ts [--kubeconfig f]`.
 * In a cluster it runs inside the routing controller instead. Stops on SIGINT/SIGTERM.
 */
import { Command } from "commander";
import { logger } from "../lib/logger";
import { loadKubeConfig } from "./kubeconfig";
import { createAccessReaper } from "./reaper";

function main(): void {
  const options = new Command("access-reaper")
    .description("delete RBAC bindings whose shardworks.dev/expires-at has passed")
    .option("--kubeconfig <file>", "kubeconfig (default: KUBECONFIG, then ~/.kube/config)")
    .parse()
    .opts<{ kubeconfig?: string }>();
  const reaper = createAccessReaper(loadKubeConfig(options.kubeconfig));
  reaper.events.on("synced", (s) => logger.info(s, "access reaper: listed bindings"));
  reaper.start();
  const stop = (): void => {
    void reaper.close().then(() => process.exit(0));
  };
  process.once("SIGINT", stop);
  process.once("SIGTERM", stop);
}

try {
  main();
} catch (error) {
  console.error(`error: ${(error as Error).message}`);
  process.exitCode = 1;
}
