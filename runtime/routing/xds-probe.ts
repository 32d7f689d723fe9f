/**
 * `node --import tsx runtime/routing/xds-probe.ts '<json>'`: a short-lived REAL
 * `@grpc/grpc-js-xds` client. `@grpc/grpc-js-xds` reads its bootstrap once per process (from
 * `GRPC_XDS_BOOTSTRAP_CONFIG`) and keeps its ADS stream open, so callers run it in its own process.
 * Input: `{ target, requests: [{ headers, expect? }], timeoutMs? }`; each request is retried until
 * it answers (and, with `expect`, until that backend answers) or the time runs out. Output: one
 * JSON line `{ answers: [backend | { error }] }`.
 */
import { z } from "zod";
import { whoClient } from "./who";

const probeSchema = z.strictObject({
  target: z.string().startsWith("xds:///"),
  requests: z
    .array(
      z.strictObject({
        headers: z.record(z.string(), z.string()).default({}),
        expect: z.string().optional(),
      }),
    )
    .min(1),
  timeoutMs: z.number().int().positive().default(20_000),
});
export type ProbeInput = z.input<typeof probeSchema>;

async function main(): Promise<void> {
  const input = probeSchema.parse(JSON.parse(process.argv[2] ?? "{}"));
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  (require("@grpc/grpc-js-xds") as { register(): void }).register();
  const client = whoClient(input.target);
  const answers: (string | { error: string })[] = [];
  for (const request of input.requests) {
    const deadline = Date.now() + input.timeoutMs;
    let answer: string | { error: string } = { error: "no answer" };
    for (;;) {
      try {
        answer = await client.who(request.headers);
        if (request.expect === undefined || answer === request.expect) break;
      } catch (error) {
        answer = { error: error instanceof Error ? error.message : String(error) };
      }
      if (Date.now() > deadline) break;
      await new Promise((r) => setTimeout(r, 200));
    }
    answers.push(answer);
  }
  process.stdout.write(`${JSON.stringify({ answers })}\n`);
  process.exit(0);
}

main().catch((error: unknown) => {
  process.stderr.write(`xds-probe: ${error instanceof Error ? error.message : String(error)}\n`);
  process.exit(1);
});
