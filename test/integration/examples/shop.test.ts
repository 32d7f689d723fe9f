/**
 * The example shop as its users run it: frontend → checkout → payments as three real processes
 * on loopback, called by an OpenTelemetry client that puts a routing key and an unrelated member
 * in the W3C baggage. Every hop must answer, say who it is, and have received the whole baggage
 * and the same trace; a request without baggage works too; bad environment stops a service with
 * a message naming the variable.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { createInterface } from "node:readline";
import {
  baggageEntryMetadataFromString,
  defaultTextMapGetter,
  defaultTextMapSetter,
  propagation,
  ROOT_CONTEXT,
  trace,
  TraceFlags,
  type Baggage,
  type Context,
} from "@opentelemetry/api";
import {
  CompositePropagator,
  W3CBaggagePropagator,
  W3CTraceContextPropagator,
} from "@opentelemetry/core";
import test from "ava";
import {
  loadShopConfig,
  shopServiceEntry,
  shopServices,
  type ShopAnswer,
  type ShopServiceName,
} from "../../../examples/shop";
import { freePort } from "../../../runtime/lib/ports";

const START_TIMEOUT_MS = 30_000;
const STOP_TIMEOUT_MS = 10_000;

// The client side of the test is an OpenTelemetry client too: the same W3C propagators, used
// directly so nothing global is assumed about the test process.
const propagator = new CompositePropagator({
  propagators: [new W3CTraceContextPropagator(), new W3CBaggagePropagator()],
});

interface RunningService {
  readonly name: ShopServiceName;
  readonly url: string;
  readonly child: ChildProcess;
  readonly exited: Promise<number | null>;
  readonly output: () => string;
}

const running: RunningService[] = [];

/** The environment of a spawned service: only what it needs, so the host's PORT etc. cannot leak in. */
function serviceEnv(extra: Record<string, string>): NodeJS.ProcessEnv {
  return { PATH: process.env.PATH, HOME: process.env.HOME, HOST: "127.0.0.1", PORT: "0", ...extra };
}

function spawnService(name: ShopServiceName, env: Record<string, string>) {
  const child = spawn(process.execPath, ["--import", "tsx", shopServiceEntry(name)], {
    cwd: process.cwd(),
    env: serviceEnv(env),
    stdio: ["ignore", "pipe", "pipe"],
  });
  let output = "";
  child.stderr.on("data", (chunk: Buffer) => (output += chunk.toString()));
  const exited = new Promise<number | null>((resolve) =>
    child.once("exit", (code) => resolve(code)),
  );
  return { child, exited, output: () => output };
}

/** Starts one service on a kernel-chosen loopback port and waits for its `listening` line. */
async function startService(
  name: ShopServiceName,
  env: Record<string, string>,
): Promise<RunningService> {
  const { child, exited, output } = spawnService(name, env);
  const lines = createInterface({ input: child.stdout });
  let logged = "";
  const port = await new Promise<number>((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`${name} did not log "listening" within ${START_TIMEOUT_MS} ms`)),
      START_TIMEOUT_MS,
    );
    lines.on("line", (line) => {
      logged += `${line}\n`;
      try {
        const entry = JSON.parse(line) as { msg?: string; port?: number };
        if (entry.msg === "listening" && typeof entry.port === "number") {
          clearTimeout(timer);
          resolve(entry.port);
        }
      } catch {
        // Not a log line of ours; keep reading.
      }
    });
    void exited.then((code) => {
      clearTimeout(timer);
      reject(new Error(`${name} exited with ${code} before listening:\n${output()}`));
    });
  });
  const service: RunningService = {
    name,
    url: `http://127.0.0.1:${port}`,
    child,
    exited,
    output: () => logged + output(),
  };
  running.push(service);
  return service;
}

/** SIGTERM, as the kubelet sends it; the exit code of a graceful stop is 0. */
async function stopService(service: RunningService): Promise<number | null> {
  if (service.child.exitCode === null && service.child.signalCode === null) {
    service.child.kill("SIGTERM");
  }
  const timer = setTimeout(() => service.child.kill("SIGKILL"), STOP_TIMEOUT_MS);
  const code = await service.exited;
  clearTimeout(timer);
  return code;
}

/** The answer of each hop, outermost first, following `downstream`. */
function hops(answer: ShopAnswer): ShopAnswer[] {
  const chain: ShopAnswer[] = [];
  let hop: ShopAnswer | undefined = answer;
  while (hop) {
    chain.push(hop);
    hop = hop.downstream as ShopAnswer | undefined;
  }
  return chain;
}

/** The baggage entries a `baggage` header carries, as OpenTelemetry reads them. */
function entriesOf(header: string | null): Record<string, { value: string; metadata?: string }> {
  if (header === null) return {};
  const ctx = propagator.extract(ROOT_CONTEXT, { baggage: header }, defaultTextMapGetter);
  const bag: Baggage | undefined = propagation.getBaggage(ctx);
  return Object.fromEntries(
    (bag?.getAllEntries() ?? []).map(([key, entry]) => [
      key,
      { value: entry.value, ...(entry.metadata ? { metadata: entry.metadata.toString() } : {}) },
    ]),
  );
}

function headersFor(ctx: Context): Record<string, string> {
  const headers: Record<string, string> = {};
  propagator.inject(ctx, headers, defaultTextMapSetter);
  return headers;
}

let frontend: RunningService;
const services: Partial<Record<ShopServiceName, RunningService>> = {};

test.before(async () => {
  // Started last hop first: each one's URL is known before its caller starts.
  services.payments = await startService("payments", { HOSTNAME: "payments-pod-1" });
  services.checkout = await startService("checkout", {
    HOSTNAME: "checkout-pod-1",
    // A fork's image differs from the baseline by this one variable.
    SERVICE_VERSION: "alice-fork",
    PAYMENTS_URL: services.payments.url,
  });
  frontend = services.frontend = await startService("frontend", {
    HOSTNAME: "frontend-pod-1",
    CHECKOUT_URL: services.checkout.url,
  });
});

test.after.always(async () => {
  await Promise.all(running.map(stopService));
});

test("baggage set by an OpenTelemetry client reaches every hop whole, with the same trace", async (t) => {
  const traceId = randomBytes(16).toString("hex");
  const bag = propagation.createBaggage({
    "shardworks-routing-key": { value: "alice" },
    // An unrelated member whose value needs percent-encoding and carries metadata: services
    // must carry members they do not understand, unchanged.
    "cart.note": {
      value: "2 items; gift wrap, please",
      metadata: baggageEntryMetadataFromString("source=cart"),
    },
    tenant: { value: "acme" },
  });
  let ctx = propagation.setBaggage(ROOT_CONTEXT, bag);
  ctx = trace.setSpanContext(ctx, {
    traceId,
    spanId: randomBytes(8).toString("hex"),
    traceFlags: TraceFlags.SAMPLED,
  });
  const headers = headersFor(ctx);
  t.truthy(headers.baggage, "the client's propagator wrote a baggage header");

  const response = await fetch(frontend.url, { headers, signal: AbortSignal.timeout(15_000) });
  t.is(response.status, 200);
  const chain = hops((await response.json()) as ShopAnswer);

  t.deepEqual(
    chain.map((hop) => [hop.service, hop.version, hop.pod]),
    [
      ["frontend", "baseline", "frontend-pod-1"],
      ["checkout", "alice-fork", "checkout-pod-1"],
      ["payments", "baseline", "payments-pod-1"],
    ],
  );
  const sent = entriesOf(headers.baggage!);
  t.deepEqual(Object.keys(sent).sort(), ["cart.note", "shardworks-routing-key", "tenant"]);
  for (const hop of chain) {
    t.deepEqual(entriesOf(hop.baggage), sent, `${hop.service} received the whole baggage`);
    t.is(hop.traceparent?.split("-")[1], traceId, `${hop.service} is in the client's trace`);
  }
  t.is(entriesOf(chain.at(-1)!.baggage)["shardworks-routing-key"]?.value, "alice");
});

test("a request without baggage goes through the whole chain and no hop invents any", async (t) => {
  const response = await fetch(frontend.url, { signal: AbortSignal.timeout(15_000) });
  t.is(response.status, 200);
  const chain = hops((await response.json()) as ShopAnswer);
  t.deepEqual(
    chain.map((hop) => [hop.service, hop.baggage, hop.traceparent]),
    [
      ["frontend", null, null],
      ["checkout", null, null],
      ["payments", null, null],
    ],
  );
});

test("every service answers /healthz for readiness probes", async (t) => {
  for (const service of Object.values(services)) {
    const response = await fetch(`${service.url}/healthz`, { signal: AbortSignal.timeout(5000) });
    t.is(response.status, 200, service.name);
    t.is(await response.text(), "ok\n");
  }
});

test("a caller whose downstream is down answers 502 naming the service and its URL, then stops cleanly on SIGTERM", async (t) => {
  const closed = `http://127.0.0.1:${await freePort()}`;
  const lonely = await startService("frontend", {
    CHECKOUT_URL: closed,
    DOWNSTREAM_TIMEOUT_MS: "3000",
  });
  const response = await fetch(lonely.url, { signal: AbortSignal.timeout(15_000) });
  t.is(response.status, 502);
  const answer = (await response.json()) as ShopAnswer;
  t.is(answer.service, "frontend");
  t.regex(answer.error ?? "", new RegExp(`^checkout at ${closed} did not answer: .*ECONNREFUSED`));

  t.is(await stopService(lonely), 0, lonely.output());
  t.regex(lonely.output(), /"signal":"SIGTERM".*"msg":"shutting down"/);
  t.regex(lonely.output(), /"msg":"stopped"/);
});

test("bad environment stops the service with exit 1 and names each variable and the fix", async (t) => {
  const { exited, output } = spawnService("checkout", { PORT: "http", PAYMENTS_URL: "payments" });
  t.is(await exited, 1);
  t.is(
    output(),
    [
      "checkout: invalid environment:",
      '  PORT="http": must be a TCP port number 0-65535 (0 picks a free port), e.g. 8080',
      '  PAYMENTS_URL="payments": must be an http:// or https:// URL, e.g. http://payments:8080',
      "",
    ].join("\n"),
  );
});

test("unset variables get the in-cluster defaults; empty means unset; bad values are all named", (t) => {
  const { pod, ...defaults } = loadShopConfig(shopServices.checkout, { SERVICE_VERSION: "" });
  t.true(pod.length > 0, "the pod name defaults to the host name");
  t.deepEqual(defaults, {
    service: "checkout",
    host: "0.0.0.0",
    port: 8080,
    version: "baseline",
    downstreamTimeoutMs: 5000,
    logLevel: "info",
    downstream: { name: "payments", url: "http://payments:8080" },
  });
  t.is(loadShopConfig(shopServices.payments, {}).downstream, undefined);

  const error = t.throws(() =>
    loadShopConfig(shopServices.frontend, {
      PORT: "65536",
      CHECKOUT_URL: "ftp://checkout",
      DOWNSTREAM_TIMEOUT_MS: "0",
      LOG_LEVEL: "loud",
      SERVICE_VERSION: "alice fork",
    }),
  );
  t.deepEqual(
    error.message.split("\n").map((line) => line.trim().split("=")[0]),
    [
      "frontend: invalid environment:",
      "PORT",
      "SERVICE_VERSION",
      "DOWNSTREAM_TIMEOUT_MS",
      "LOG_LEVEL",
      "CHECKOUT_URL",
    ],
  );
});
