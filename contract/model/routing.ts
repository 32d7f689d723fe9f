/**
 * What routing reads: routing keys, fork destinations (`host:port`), the protocols the gateway
 * speaks upstream, and the baseline services shards fork.
 */
import { isIPv4 } from "node:net";
import { z } from "zod";
import { dnsLabel } from "./names";

/**
 * Longest routing key. Envoy refuses a regex whose RE2 program size exceeds
 * `re2.max_program_size.error_level` (default 100) and the baggage route's regex grows by one
 * instruction per key character (68 + length, see test/unit/routing/re2-program-size.test.ts): at
 * 32 characters it is exactly 100, so every key stays within Envoy's default.
 */
export const MAX_ROUTING_KEY_LENGTH = 32;

/**
 * A routing key: sent by clients in a header or a baggage member, so it is kept to characters that
 * are safe in both and cannot inject into a header or a regular expression.
 */
export const routingKeySchema = z
  .string()
  .min(4)
  .max(MAX_ROUTING_KEY_LENGTH, {
    message: `must be at most ${MAX_ROUTING_KEY_LENGTH} characters (the gateway's regex size limit)`,
  })
  .regex(/^[a-z0-9][a-z0-9-]*$/, {
    message: "must be lowercase letters, digits and '-' (it travels in headers and baggage)",
  });

/**
 * Why the host of a destination is not one a resolver or URL parser reads as written, or
 * undefined. A name whose last label is numeric is read as an IPv4 address (`a.1`, `999.1.1.1`,
 * `1.2.3.4.5` are no host at all), and `2852039166` or `0xa9.0xfe.0xa9.0xfe` are 169.254.169.254:
 * only a dotted-quad IPv4 or a DNS name is a destination.
 */
function destinationHostProblem(host: string): string | undefined {
  let hostname: string;
  try {
    hostname = new URL(`http://${host}`).hostname;
  } catch {
    return `"${host}" is neither a DNS name nor an IPv4 address a.b.c.d (each 0-255); e.g. api.shard-alice.svc or 10.0.0.7`;
  }
  if (isIPv4(hostname) && hostname !== host.toLowerCase()) {
    return `"${host}" is an IPv4 address in a non-canonical form; write it as ${hostname}`;
  }
  const labels = host.replace(/\.$/, "").split(".");
  if (!labels.every((l) => /^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$/.test(l))) {
    return `"${host}" is not a DNS name: dot-separated labels of 1-63 letters, digits and '-', not starting or ending with '-'`;
  }
  return undefined;
}

/** host:port of a fork's backend. */
export const destinationSchema = z
  .string()
  .regex(/^[A-Za-z0-9.-]+:[0-9]{1,5}$/, {
    message: 'must be "host:port", e.g. "api.shard-alice.svc:8080"',
  })
  .refine((d) => {
    const port = Number(d.slice(d.lastIndexOf(":") + 1));
    return port >= 1 && port <= 65535;
  }, "port must be 1-65535")
  .superRefine((d, ctx) => {
    const problem = destinationHostProblem(d.slice(0, d.lastIndexOf(":")));
    if (problem !== undefined) ctx.addIssue({ code: "custom", message: problem });
  });

/**
 * How the gateway talks to a service upstream: `http1` (HTTP/1.1, also WebSocket upgrades),
 * `http2` (HTTP/2 cleartext, prior knowledge) or `grpc` (HTTP/2, what gRPC needs).
 */
export const serviceProtocolSchema = z.enum(["http1", "http2", "grpc"], {
  message: 'must be "http1", "http2" or "grpc"',
});
export type ServiceProtocol = z.infer<typeof serviceProtocolSchema>;
/** The protocol of a service that declares none. */
export const DEFAULT_SERVICE_PROTOCOL: ServiceProtocol = "http1";

/** A baseline service that shards may fork: what the routing controller routes by default. */
export const baselineServiceSchema = z.strictObject({
  name: dnsLabel,
  /** host:port of the shared baseline. */
  destination: destinationSchema,
  /**
   * More `Host` names the service's virtual host answers besides `<name>`, e.g.
   * `checkout.shop.svc.cluster.local`: the names callers inside the cluster use when the
   * baseline Service name resolves to the gateway (ADR 0012). Default none.
   */
  hosts: z
    .array(
      z.string().regex(/^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/, {
        message: 'must be a DNS name, e.g. "checkout.shop.svc.cluster.local"',
      }),
    )
    .optional(),
  /** How the gateway talks to it (and to its forks, unless a fork says otherwise). */
  protocol: serviceProtocolSchema.default(DEFAULT_SERVICE_PROTOCOL),
});
/** A baseline service; `protocol` may be left out (it defaults to http1). */
export type BaselineService = z.input<typeof baselineServiceSchema>;
