/**
 * The environment a shop service runs with, validated at startup with zod. Every variable has a
 * default that fits Kubernetes (the services it calls are Service names), so a Deployment only
 * sets what differs; a bad value stops the process with a message that names the variable.
 */
import { hostname } from "node:os";
import { z } from "zod";

/** The one service a shop service calls, and the variable that holds its URL. */
export interface DownstreamSpec {
  /** The called service's name, as it appears in answers and errors (`payments`). */
  readonly name: string;
  /** The environment variable with its base URL (`PAYMENTS_URL`). */
  readonly urlVariable: string;
  /** The URL used when the variable is unset: the Kubernetes Service (`http://payments:8080`). */
  readonly defaultUrl: string;
}

/** What makes one shop service itself: its name and whom it calls. */
export interface ShopServiceSpec {
  /** `frontend`, `checkout`, `payments`: appears in every answer and log line. */
  readonly name: string;
  /** The service this one calls on every request; none for the last hop. */
  readonly calls?: DownstreamSpec;
}

/** A shop service's validated settings. */
export interface ShopConfig {
  readonly service: string;
  /** Interface to listen on (`HOST`, default `0.0.0.0`). */
  readonly host: string;
  /** TCP port (`PORT`, default 8080; 0 asks the kernel for a free one, for local runs and tests). */
  readonly port: number;
  /** What this build calls itself (`SERVICE_VERSION`, default `baseline`); a fork's image sets it. */
  readonly version: string;
  /** Who answered (`HOSTNAME`: the pod name in Kubernetes; default the machine's host name). */
  readonly pod: string;
  /** Budget for the downstream call, in milliseconds (`DOWNSTREAM_TIMEOUT_MS`, default 5000). */
  readonly downstreamTimeoutMs: number;
  /** pino level (`LOG_LEVEL`, default `info`). */
  readonly logLevel: "fatal" | "error" | "warn" | "info" | "debug" | "trace" | "silent";
  /** The called service and its validated URL, when this service calls one. */
  readonly downstream?: { readonly name: string; readonly url: string };
}

/** The environment was unusable: the message lists every bad variable with the fix. */
export class ShopConfigError extends Error {
  constructor(
    readonly service: string,
    readonly problems: readonly string[],
  ) {
    super(`${service}: invalid environment:\n${problems.map((p) => `  ${p}`).join("\n")}`);
    this.name = "ShopConfigError";
  }
}

// Kubernetes and shells often set a variable to "" to mean "not set": treat it as absent so the
// default applies instead of failing on an empty string.
const optional = <T extends z.ZodType>(schema: T) =>
  z.preprocess((value) => (value === "" ? undefined : value), schema.optional());

const port = z
  .string()
  .regex(/^\d{1,5}$/, "must be a TCP port number 0-65535 (0 picks a free port), e.g. 8080")
  .transform(Number)
  .refine((n) => n <= 65535, "must be a TCP port number 0-65535 (0 picks a free port), e.g. 8080");

const milliseconds = z
  .string()
  .regex(/^\d+$/, "must be a whole number of milliseconds greater than 0, e.g. 5000")
  .transform(Number)
  .refine((n) => n > 0 && n <= 600_000, "must be between 1 and 600000 milliseconds, e.g. 5000");

const httpUrl = (example: string) =>
  z
    .string()
    .refine(
      (value) => URL.canParse(value) && /^https?:$/.test(new URL(value).protocol),
      `must be an http:// or https:// URL, e.g. ${example}`,
    );

const logLevel = z.enum(["fatal", "error", "warn", "info", "debug", "trace", "silent"], {
  error: "must be one of fatal, error, warn, info, debug, trace, silent",
});

const commonEnv = z.object({
  HOST: optional(z.string()).default("0.0.0.0"),
  PORT: optional(port).default(8080),
  SERVICE_VERSION: optional(
    z.string().regex(/^[\w.+-]{1,63}$/, "must be 1-63 letters, digits, '.', '_', '+' or '-'"),
  ).default("baseline"),
  HOSTNAME: optional(z.string()),
  DOWNSTREAM_TIMEOUT_MS: optional(milliseconds).default(5000),
  LOG_LEVEL: optional(logLevel).default("info"),
});

/** Reads and validates a shop service's settings from `env`; throws `ShopConfigError`. */
export function loadShopConfig(
  spec: ShopServiceSpec,
  env: NodeJS.ProcessEnv = process.env,
): ShopConfig {
  const common = commonEnv.safeParse(env);
  const calls = spec.calls;
  const downstreamUrl = calls
    ? z.object({ [calls.urlVariable]: optional(httpUrl(calls.defaultUrl)) }).safeParse(env)
    : undefined;
  const issues = [...(common.error?.issues ?? []), ...(downstreamUrl?.error?.issues ?? [])];
  if (!common.success || issues.length > 0) {
    throw new ShopConfigError(
      spec.name,
      issues.map((issue) => {
        const variable = String(issue.path[0] ?? "(environment)");
        return `${variable}=${JSON.stringify(env[variable] ?? "")}: ${issue.message}`;
      }),
    );
  }
  const settings = common.data;
  return {
    service: spec.name,
    host: settings.HOST,
    port: settings.PORT,
    version: settings.SERVICE_VERSION,
    pod: settings.HOSTNAME ?? hostname(),
    downstreamTimeoutMs: settings.DOWNSTREAM_TIMEOUT_MS,
    logLevel: settings.LOG_LEVEL,
    ...(calls
      ? {
          downstream: {
            name: calls.name,
            url: downstreamUrl?.data?.[calls.urlVariable] ?? calls.defaultUrl,
          },
        }
      : {}),
  };
}
