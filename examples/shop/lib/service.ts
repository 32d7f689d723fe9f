/**
 * One shop service: a Hono app that answers who it is, what propagation headers it received, and
 * what the service it calls answered, so a caller sees the whole chain hop by hop. Also the
 * process around it: validated environment, one pino logger, `/healthz`, graceful SIGTERM.
 */
import { serve } from "@hono/node-server";
import { Hono } from "hono";
import pino from "pino";
import { loadShopConfig, ShopConfigError, type ShopConfig, type ShopServiceSpec } from "./config";
import { extractContext, installPropagation, outgoingHeaders, withContext } from "./propagation";

/** What every shop service answers on `GET /`. */
export interface ShopAnswer {
  readonly service: string;
  /** `SERVICE_VERSION`: `baseline`, or whatever a fork's image says. */
  readonly version: string;
  /** `HOSTNAME`: the pod that answered. */
  readonly pod: string;
  /** The `baggage` header exactly as this hop received it; null when there was none. */
  readonly baggage: string | null;
  /** The `traceparent` header as this hop received it; null when there was none. */
  readonly traceparent: string | null;
  /** The called service's answer, for every hop but the last. */
  readonly downstream?: unknown;
  /** Why the downstream call failed (the answer is then a 502). */
  readonly error?: string;
}

/** How long a SIGTERM waits for in-flight requests before giving up (below Kubernetes' 30 s). */
const SHUTDOWN_GRACE_MS = 10_000;

/** The HTTP app of one shop service; `draining()` turns `/healthz` to 503 during shutdown. */
export function createShopApp(
  config: ShopConfig,
  logger: pino.Logger,
  draining: () => boolean = () => false,
): Hono {
  const app = new Hono();

  // The extracted context becomes the active one for the rest of the request, as an OpenTelemetry
  // HTTP instrumentation would make it, so the downstream call below propagates it unchanged.
  app.use((c, next) => withContext(extractContext(c.req.raw.headers), next));

  app.get("/healthz", (c) => (draining() ? c.text("shutting down\n", 503) : c.text("ok\n", 200)));

  app.get("/", async (c) => {
    const self = {
      service: config.service,
      version: config.version,
      pod: config.pod,
      baggage: c.req.header("baggage") ?? null,
      traceparent: c.req.header("traceparent") ?? null,
    };
    if (!config.downstream) return c.json<ShopAnswer>(self);
    const called = await callDownstream(config.downstream, config.downstreamTimeoutMs);
    if ("error" in called) {
      logger.warn({ downstream: config.downstream.name, err: called.error }, "downstream failed");
      return c.json<ShopAnswer>({ ...self, error: called.error }, 502);
    }
    return c.json<ShopAnswer>({ ...self, downstream: called.answer });
  });

  app.notFound((c) => c.json({ service: config.service, error: `no route ${c.req.path}` }, 404));
  app.onError((err, c) => {
    logger.error({ err }, "request failed");
    return c.json({ service: config.service, error: "internal error" }, 500);
  });
  return app;
}

async function callDownstream(
  downstream: NonNullable<ShopConfig["downstream"]>,
  timeoutMs: number,
): Promise<{ answer: unknown } | { error: string }> {
  const where = `${downstream.name} at ${downstream.url}`;
  let response: Response;
  try {
    response = await fetch(downstream.url, {
      headers: { accept: "application/json", ...outgoingHeaders() },
      signal: AbortSignal.timeout(timeoutMs),
    });
  } catch (err) {
    const cause = err instanceof Error ? (err.cause instanceof Error ? err.cause : err) : undefined;
    const reason =
      cause?.name === "TimeoutError"
        ? `no answer within ${timeoutMs} ms`
        : (cause?.message ?? String(err));
    return { error: `${where} did not answer: ${reason}` };
  }
  const body = await response.text();
  let answer: unknown;
  try {
    answer = JSON.parse(body);
  } catch {
    return { error: `${where} answered ${response.status} with non-JSON: ${body.slice(0, 200)}` };
  }
  if (!response.ok) return { error: `${where} answered ${response.status}: ${body.slice(0, 200)}` };
  return { answer };
}

/**
 * A shop service's `main`: validates the environment (a bad variable prints what to fix and exits
 * 1), listens, logs `listening` with the bound port, and on SIGTERM/SIGINT fails `/healthz`,
 * finishes in-flight requests and exits 0.
 */
export function runShopService(spec: ShopServiceSpec): void {
  let config: ShopConfig;
  try {
    config = loadShopConfig(spec);
  } catch (err) {
    if (!(err instanceof ShopConfigError)) throw err;
    process.stderr.write(`${err.message}\n`);
    process.exit(1);
  }
  installPropagation();
  const logger = pino({
    level: config.logLevel,
    base: { service: config.service, version: config.version, pod: config.pod },
  });

  let draining = false;
  const app = createShopApp(config, logger, () => draining);
  const server = serve(
    { fetch: app.fetch, hostname: config.host, port: config.port },
    ({ port }) => {
      logger.info({ host: config.host, port, downstream: config.downstream?.url }, "listening");
    },
  );
  server.on("error", (err) => {
    logger.fatal({ err }, `cannot listen on ${config.host}:${config.port}`);
    process.exit(1);
  });

  const shutdown = (signal: NodeJS.Signals) => {
    if (draining) return;
    draining = true;
    logger.info({ signal }, "shutting down");
    const deadline = setTimeout(() => {
      logger.error(`requests still open after ${SHUTDOWN_GRACE_MS} ms; exiting anyway`);
      process.exit(1);
    }, SHUTDOWN_GRACE_MS);
    deadline.unref();
    server.close(() => {
      logger.info("stopped");
      process.exit(0);
    });
  };
  process.on("SIGTERM", shutdown);
  process.on("SIGINT", shutdown);
}
