/**
 * Run by registry-public-only.test.ts inside a mount namespace whose /etc/hosts maps
 * `registry.rebind.example.com` to 127.0.0.1 (a public-looking name whose DNS answer is
 * loopback). Pulls `registry.rebind.example.com:$PROBE_PORT/app:1` the ways a node would and
 * prints what each one answered, one JSON object on stdout.
 */
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { sandboxSpecSchema, type RegistryAccess } from "../../contract/model";
import { createProcessDriver } from "../../runtime/node-agent/drivers/process";
import { ImageStore } from "../../runtime/node-agent/images";

const registry = `registry.rebind.example.com:${process.env.PROBE_PORT}`;
const image = `${registry}/app:1`;
const cacheDir = mkdtempSync(join(tmpdir(), "sw-rebind-"));
const store = new ImageStore({ cacheDir, insecureRegistries: [registry] });

async function outcome(attempt: () => Promise<unknown>): Promise<string> {
  try {
    await attempt();
    return "pulled";
  } catch (error) {
    return (error as Error).message;
  }
}

async function main(): Promise<void> {
  const pull = (access: RegistryAccess) => outcome(() => store.prepare(image, access));
  const driver = createProcessDriver({ imageStore: { cacheDir, insecureRegistries: [registry] } });
  const run = (registryAccess: RegistryAccess) =>
    outcome(() =>
      driver.run({
        id: `rebind-${registryAccess}`,
        spec: sandboxSpecSchema.parse({ image, command: ["true"], registryAccess }),
        workDir: mkdtempSync(join(cacheDir, "work-")),
        logFile: join(cacheDir, `${registryAccess}.log`),
      }),
    );
  const result = {
    platform: await pull("any"),
    shard: await pull("public"),
    shardLiteral: await outcome(() =>
      store.prepare(`127.0.0.1:${process.env.PROBE_PORT}/app:1`, "public"),
    ),
    shardLayout: await outcome(() => store.prepare(`oci:${cacheDir}`, "public")),
    driverShard: await run("public"),
    driverPlatform: await run("any"),
  };
  await driver.close();
  process.stdout.write(JSON.stringify(result));
}

void main();
