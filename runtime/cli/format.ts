/** How the CLI shows what it got: JSON, or tables and summaries. */
import type { SandboxView, XdsClientsReport, XdsResourceStatus } from "../../contract/api";
import { timeLeft, type Grant } from "../access";
import { age, table } from "./table";

export function print(json: boolean, value: unknown, text: () => string): void {
  console.log(json ? JSON.stringify(value, null, 2) : text());
}

export function sandboxRows(items: readonly SandboxView[]): string {
  return table(
    ["ID", "PHASE", "NODE", "IMAGE", "START", "EXIT", "AGE"],
    items.map((s) => [
      s.id,
      s.status.phase,
      s.status.node ?? "-",
      s.spec.image,
      s.status.start ? `${s.status.start} ${Math.round(s.status.startMillis ?? 0)}ms` : "-",
      s.status.exitCode !== undefined ? String(s.status.exitCode) : "-",
      age(s.createdAt),
    ]),
  );
}

export function sandboxDetail(s: SandboxView): string {
  const lines = [
    `id:        ${s.id}`,
    `phase:     ${s.status.phase}`,
    `node:      ${s.status.node ?? "-"}`,
    `image:     ${s.spec.image}`,
    `command:   ${JSON.stringify(s.spec.command)}`,
    `resources: ${s.spec.resources.cpuMillis}m CPU, ${s.spec.resources.memoryMiB} MiB`,
  ];
  if (s.spec.shard) lines.push(`shard:     ${s.spec.shard}`);
  if (s.status.start)
    lines.push(`start:     ${s.status.start} in ${Math.round(s.status.startMillis ?? 0)} ms`);
  if (s.status.exitCode !== undefined) lines.push(`exit code: ${s.status.exitCode}`);
  if (s.status.reason) lines.push(`reason:    ${s.status.reason}`);
  for (const [port, at] of Object.entries(s.status.endpoints)) lines.push(`port ${port}:  ${at}`);
  return lines.join("\n");
}

/** One row per replica × client × resource type: how many resources, in which states. */
export function xdsRows(report: XdsClientsReport): string {
  const rows: string[][] = [];
  for (const router of report.routers) {
    // A replica that registered no version (a dev build) is named alone, not "version ?".
    const where = router.version === undefined ? router.name : `${router.name} (${router.version})`;
    if ("error" in router) {
      rows.push([where, "-", "-", "-", `did not answer: ${router.error}`]);
      continue;
    }
    if (router.clients.length === 0) rows.push([where, "-", "-", "-", "no clients"]);
    for (const c of router.clients) {
      const byType = new Map<string, XdsResourceStatus[]>();
      for (const r of c.resources) byType.set(r.type, [...(byType.get(r.type) ?? []), r]);
      for (const [type, resources] of byType) {
        const counts = new Map<string, number>();
        for (const r of resources) {
          const state = r.client === "DOES_NOT_EXIST" ? r.client : r.status;
          counts.set(state, (counts.get(state) ?? 0) + 1);
        }
        const errors = resources.flatMap((r) => (r.error === undefined ? [] : [r.error]));
        rows.push([
          where,
          c.node.id,
          type,
          resources[0]?.version || "-",
          [
            [...counts].map(([state, n]) => `${n} ${state}`).join(", "),
            ...[...new Set(errors)].map((e) => `NACK: ${e}`),
          ].join("; "),
        ]);
      }
    }
  }
  if (report.routers.length === 0) {
    return "no routing controller is registered (routers/ in etcd is empty): is one running?";
  }
  return table(["ROUTER", "NODE ID", "TYPE", "VERSION", "RESOURCES"], rows);
}

export function grantRows(grants: readonly Grant[]): string {
  return table(
    ["NAME", "WHERE", "ROLE", "SUBJECTS", "EXPIRES AT", "TIME LEFT"],
    grants.map((g) => [
      g.name,
      g.namespace ?? "cluster-wide",
      g.role,
      g.subjects.join(","),
      g.expiresAt || "-",
      timeLeft(g),
    ]),
  );
}
