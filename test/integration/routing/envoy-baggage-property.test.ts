/**
 * Property: for any `baggage` header, the real Envoy gateway routes a request to the fork of the
 * shard whose key `@opentelemetry/core`'s parser reads from it (`routingKeyFromBaggage`), and to
 * the baseline when it reads none or one no shard owns. Random member lists with properties,
 * whitespace, percent-encoding (valid and broken), duplicates, and sizes up to Envoy's header
 * limit; 200 cases through one Envoy, loopback only.
 */
import test from "ava";
import fc from "fast-check";
import { freePort } from "../../../runtime/lib/ports";
import { startEtcd } from "../../../runtime/lib/etcd-server";
import { RoutingController } from "../../../runtime/routing/controller";
import { ShardStore } from "../../../runtime/routing/shard-store";
import { routingKeyFromBaggage } from "../../../runtime/routing/translate";
import { eventually } from "../../helpers/grpc-backends";
import { http1Get, startHttpBackend, startTestEnvoy } from "../../helpers/envoy";

const KEYS = ["alice-key", "bob-key", "carol-7", "d-0-d"];
const MEMBER = "shardworks-routing-key";
/** Envoy's default `max_request_headers_kb` is 60; leave room for the other headers. */
const MAX_BAGGAGE = 58 * 1024;

/** Percent-encode some characters of `text` (any of them; keys stay decodable). */
const encoded = (text: string): fc.Arbitrary<string> =>
  fc
    .array(fc.boolean(), { minLength: text.length, maxLength: text.length })
    .map((flags) =>
      [...text]
        .map((c, i) =>
          flags[i] ? `%${c.charCodeAt(0).toString(16).padStart(2, "0").toUpperCase()}` : c,
        )
        .join(""),
    );
const ows = fc.constantFrom("", "", " ", "  ", "\t", " \t ");
const token = fc.stringMatching(/^[a-zA-Z0-9_.*-]{1,12}$/);
const printable = fc.stringMatching(/^[\x20-\x7e]{0,16}$/);
const value = fc.oneof(
  fc.constantFrom(...KEYS),
  fc.constantFrom(...KEYS).chain(encoded),
  fc.constantFrom("alice-key2", "ALICE-KEY", "-alice", "bob-key;x", ""),
  fc.constantFrom("%", "%6", "%zz", "%C0%80", "%ED%A0%80", "%E2%82", "%F4%90%80%80"),
  token,
  printable,
);
const key = fc.oneof(
  { weight: 4, arbitrary: fc.constant(MEMBER) },
  { weight: 1, arbitrary: encoded(MEMBER) },
  { weight: 1, arbitrary: fc.constantFrom("Shardworks-Routing-Key", "shardworks-routing-key2") },
  { weight: 3, arbitrary: token },
);
const properties = fc.array(
  fc.oneof(
    token,
    fc.tuple(token, token).map(([a, b]) => `${a}=${b}`),
  ),
  {
    maxLength: 3,
  },
);
const member = fc.oneof(
  {
    weight: 8,
    arbitrary: fc
      .tuple(ows, key, ows, ows, value, ows, properties)
      .map(
        ([w1, k, w2, w3, v, w4, props]) =>
          `${w1}${k}${w2}=${w3}${v}${w4}${props.map((p) => `;${p}`).join("")}`,
      ),
  },
  // Broken members: no `=`, `=` first, empty.
  { weight: 1, arbitrary: fc.constantFrom("", " ", "novalue", "=alice-key", `${MEMBER}`, ";p") },
  { weight: 1, arbitrary: printable },
);
/** Occasionally one large member, so headers near Envoy's limit are tried too. */
const padding = fc.oneof(
  { weight: 5, arbitrary: fc.constant("") },
  { weight: 1, arbitrary: fc.integer({ min: 1024, max: MAX_BAGGAGE - 2048 }) },
);
const baggage = fc
  .tuple(fc.array(member, { minLength: 1, maxLength: 12 }), padding, fc.nat(12))
  .map(([members, pad, at]) => {
    const list = [...members];
    if (typeof pad === "number") list.splice(at % (list.length + 1), 0, `pad=${"x".repeat(pad)}`);
    return list.join(",").slice(0, MAX_BAGGAGE);
  })
  // Envoy and Node trim a header value's own leading/trailing whitespace (HTTP OWS), and an
  // all-blank header is no header: compare on what is sent.
  .map((b) => b.trim())
  .filter((b) => b.length > 0);

test.serial(
  "Envoy's routing decision agrees with @opentelemetry/core's baggage parser",
  async (t) => {
    t.timeout(4 * 60_000);
    const etcd = await startEtcd();
    t.teardown(() => etcd.stop());
    const baselineBackend = await startHttpBackend("baseline");
    const forks = await Promise.all(KEYS.map((k) => startHttpBackend(`fork:${k}`)));
    t.teardown(() => Promise.all([baselineBackend, ...forks].map((b) => b.close())));
    const ingressPort = await freePort();
    const controller = new RoutingController({
      etcd: etcd.client,
      baseline: [{ name: "api", destination: baselineBackend.address }],
      xdsPort: 0,
      ingressHost: "127.0.0.1",
      ingressPort,
    });
    t.teardown(() => controller.close());
    await startTestEnvoy(t, await controller.start());
    const store = new ShardStore(etcd.client);
    for (const [i, k] of KEYS.entries()) {
      await store.create(`s${i}`, {
        routingKey: k,
        owner: "o@example.com",
        forks: { api: forks[i]!.address },
        ttlSeconds: 3600,
      });
    }
    const route = async (b: string): Promise<string> => {
      const response = await http1Get(ingressPort, "api", { baggage: b });
      if (response.status !== 200) throw new Error(`status ${response.status} for ${b}`);
      return response.body;
    };
    const last = KEYS.at(-1)!;
    t.is(await eventually(() => route(`${MEMBER}=${last}`), `fork:${last}`), `fork:${last}`);

    let forked = 0;
    await fc.assert(
      fc.asyncProperty(baggage, async (b) => {
        const key = routingKeyFromBaggage(b);
        const expected = key !== undefined && KEYS.includes(key) ? `fork:${key}` : "baseline";
        if (expected !== "baseline") forked++;
        const actual = await route(b);
        if (actual !== expected) {
          throw new Error(
            `baggage ${JSON.stringify(b.slice(0, 300))}: Envoy → ${actual}, OpenTelemetry → ${expected}`,
          );
        }
      }),
      { numRuns: 200, seed: Number(process.env.FC_SEED ?? Date.now() % 2 ** 31) },
    );
    // The generator must exercise both outcomes, or the property says little.
    t.true(forked > 20 && forked < 180, `forked ${forked} of 200`);
  },
);
