/**
 * A shard's image never comes from one of the node's own addresses, however it is spelled (issue
 * 13, B1): not as the literal IPv4 address (a literal is connected to without a DNS lookup), not
 * as its IPv4-mapped IPv6 form, not as a name whose DNS answer is that mapped form. The probe runs
 * in a network namespace this test creates, where the node's address is the public 1.2.3.4.
 */
import { spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import test from "ava";
import { runWithHosts } from "../../helpers/hosts-namespace";

function ip(...args: string[]): void {
  const r = spawnSync("ip", args, { encoding: "utf8" });
  if (r.status !== 0) throw new Error(`ip ${args.join(" ")}: ${r.stderr.trim()}`);
}

test("a shard's image is refused from the node's own public address, literal, IPv4-mapped or by name", async (t) => {
  const ns = `sw-own-${randomBytes(3).toString("hex")}`;
  ip("netns", "add", ns);
  t.teardown(() => spawnSync("ip", ["netns", "del", ns]));
  ip("-n", ns, "link", "set", "lo", "up");
  // On lo: an address of this node's like any other (networkInterfaces lists it).
  ip("-n", ns, "addr", "add", "1.2.3.4/32", "dev", "lo");

  const dir = mkdtempSync(join(tmpdir(), "sw-own-address-test-"));
  const hosts = join(dir, "hosts");
  writeFileSync(hosts, "127.0.0.1 localhost\n::ffff:1.2.3.4 mapped.example.com\n");
  const probe = await runWithHosts(
    hosts,
    join(__dirname, "..", "..", "helpers", "own-address-probe.ts"),
    {
      netns: ns,
      env: { SHARDWORKS_LOG_FILE: join(dir, "node.log") },
      timeoutMs: 60_000,
    },
  );
  t.is(probe.status, 0, probe.stderr);
  const result = JSON.parse(probe.stdout) as Record<string, string | number>;
  t.log(result);
  for (const [registry, answer] of Object.entries(result)) {
    if (registry === "requests") continue;
    t.regex(
      String(answer),
      /an address of this node; only public registries are reached/,
      registry,
    );
  }
  t.is(result.requests, 0, "no pull reached the node's own server");
});
