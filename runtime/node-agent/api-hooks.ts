/** What the node agent's HTTP API (`http.ts`) does on the agent: logs and live migration. */
import { mkdir } from "node:fs/promises";
import { ConflictError, ForbiddenError, NotFoundError } from "../lib/errors";
import type { AgentContext } from "./config";
import { isMigratingDriver, type DriverCapabilities } from "./driver";
import type { AgentApiHooks } from "./http";
import type { SandboxRunner } from "./runner";

/** The hooks of one agent's HTTP API; `capabilities` reads what the driver reported when probed. */
export function agentApiHooks(
  ctx: AgentContext,
  runner: SandboxRunner,
  capabilities: () => DriverCapabilities | undefined,
): AgentApiHooks {
  const { sandboxes, store } = ctx;
  const name = ctx.config.name;
  return {
    logFile: (id: string) => runner.logFile(id),
    isRunning: (id: string) => sandboxes.has(id, "local") || sandboxes.has(id, "starting"),
    acceptMigration: async (id: string): Promise<{ port: number }> => {
      const driver = ctx.config.driver;
      if (!isMigratingDriver(driver)) {
        throw new ConflictError(
          "migration_unsupported",
          `driver ${driver.name} of node ${name} cannot live-migrate; migrate between qemu nodes`,
        );
      }
      const found = await store.getSandbox(id);
      if (!found) throw new NotFoundError("not_found", `sandbox ${id} does not exist`);
      const request = runner.runRequest(found.value);
      await mkdir(request.workDir, { recursive: true });
      const { port, sandbox } = await driver.acceptMigration(request);
      sandboxes.set(id, "incoming", sandbox);
      // A failed arrival (the driver already stopped its VM) is forgotten.
      sandbox.catch(() => {
        if (sandboxes.get(id, "incoming") === sandbox) sandboxes.delete(id, "incoming");
      });
      return { port };
    },
    migrateOut: async (id: string, host: string, port: number): Promise<void> => {
      // A sandbox's memory goes only to a node of this cluster: the host must be the address
      // of a registered node (the scheduler asks the target for the port it listens on).
      const nodeHosts = (await store.listNodes()).map((n) =>
        n.address.slice(0, n.address.lastIndexOf(":")),
      );
      if (!nodeHosts.includes(host)) {
        throw new ForbiddenError(
          "migration_target_refused",
          `host ${host} is not the address of a registered node; a sandbox migrates only to nodes of this cluster`,
        );
      }
      const driver = ctx.config.driver;
      const local = sandboxes.get(id, "local");
      if (!local) throw new NotFoundError("not_found", `sandbox ${id} is not running on ${name}`);
      if (!isMigratingDriver(driver)) {
        throw new ConflictError(
          "migration_unsupported",
          `driver ${driver.name} of node ${name} cannot live-migrate`,
        );
      }
      local.detached = true;
      try {
        await driver.migrate(id, { host, port });
      } catch (error) {
        local.detached = false;
        throw error;
      }
      sandboxes.delete(id, "local");
    },
    adopt: async (id: string): Promise<{ endpoints: Record<string, string> }> => {
      const incoming = sandboxes.get(id, "incoming");
      if (!incoming)
        throw new NotFoundError("not_found", `no migration of ${id} is arriving on ${name}`);
      const running = await incoming;
      // Stays incoming (protected from reconcile) until its assignment arrives here, or
      // reconcile / abandonMigration sees the migration is over without it.
      if (sandboxes.get(id, "incoming") !== incoming) {
        throw new ConflictError("abandoned", `the migration of ${id} to ${name} was abandoned`);
      }
      runner.adopt(id, running, undefined);
      return { endpoints: { ...running.endpoints } };
    },
    abandonMigration: async (id: string) => ({ abandoned: await runner.abandonIncoming(id) }),
    capabilities,
  };
}
