/**
 * The TESTBED stand-in for `pulumi-resource-kubernetes`, used only where the real provider cannot be
 * built (the Go module proxy here refuses it). `scripts/tools.ts` installs a shim of that name that
 * runs this file. It speaks the provider plugin protocol through `@pulumi/pulumi`'s generated gRPC
 * stubs (`@pulumi/pulumi/proto/*`); `@pulumi/pulumi/provider`'s `main()` is not used because it
 * answers CheckConfig/DiffConfig with UNIMPLEMENTED and ignores Configure's arguments, and this
 * provider's configuration (the kubeconfig) arrives there.
 *
 * CRUD is server-side apply / get / delete of raw JSON, at the REST path that
 * `@kubernetes/client-node`'s `KubernetesObjectApi` discovers (see raw-api.ts). What it does NOT do, unlike the real
 * provider: await readiness (every object is returned as soon as the API server accepted it, as
 * with `pulumi.com/skipAwait`), detect replacement for immutable fields other than the object's
 * identity, compute field-level previews, or support Helm, YAML or CRD-typed resources.
 */
import { servePlugin, unary } from "../testbed-plugin";
import * as grpc from "@grpc/grpc-js";
import * as k8s from "@kubernetes/client-node";
import { Empty } from "google-protobuf/google/protobuf/empty_pb";
import { Struct } from "google-protobuf/google/protobuf/struct_pb";
import * as enginerpc from "@pulumi/pulumi/proto/engine_grpc_pb";
import * as engineproto from "@pulumi/pulumi/proto/engine_pb";
import * as plugproto from "@pulumi/pulumi/proto/plugin_pb";
import * as provrpc from "@pulumi/pulumi/proto/provider_grpc_pb";
import * as provproto from "@pulumi/pulumi/proto/provider_pb";
import { existsSync, readFileSync } from "node:fs";
import { z } from "zod";
import {
  ObjectIdentity,
  autoName,
  diffInputs,
  hasUnknowns,
  liveOutputs,
  unwrapSecrets,
  type JsonObject,
} from "./logic";
import { KubeApiError, RawObjectApi } from "./raw-api";

/** The `@pulumi/kubernetes` version this stands in for (the engine asks for it). */
const VERSION = z
  .object({ version: z.string() })
  .parse(JSON.parse(readFileSync(require.resolve("@pulumi/kubernetes/package.json"), "utf8")))
  .version.replace(/^v/, "");
const FIELD_MANAGER = "pulumi-kubernetes";
const BANNER = [
  "!".repeat(88),
  "!!! TESTBED STAND-IN for pulumi-resource-kubernetes (scripts/testbed-provider), NOT the real",
  "!!! provider: server-side apply/get/delete only; no readiness awaits, no field-level diffs.",
  "!".repeat(88),
].join("\n");

/**
 * Provider config (`new k8s.Provider(name, { kubeconfig, namespace })`); the real provider's other
 * options are accepted and ignored.
 */
const ProviderConfig = z
  .object({
    kubeconfig: z
      .string({ error: "kubeconfig must be the kubeconfig's contents or a path to it" })
      .optional(),
    namespace: z.string().optional(),
  })
  .loose();

function toJson(struct: Struct | undefined): JsonObject {
  return unwrapSecrets(struct?.toJavaScript() ?? {}) as JsonObject;
}

function toStruct(value: JsonObject): Struct {
  // Struct.fromJavaScript rejects `undefined` and class instances (Dates in client-node models):
  // a JSON round trip makes the value plain.
  return Struct.fromJavaScript(JSON.parse(JSON.stringify(value)) as JsonObject);
}

function isNotFound(error: unknown): boolean {
  return error instanceof KubeApiError && error.code === 404;
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** The object to send: the inputs with identity checked (zod), as a client-node object. */
function objectOf(inputs: JsonObject): k8s.KubernetesObject {
  const parsed = ObjectIdentity.safeParse(inputs);
  if (!parsed.success) {
    throw new Error(
      `invalid Kubernetes object: ${parsed.error.issues.map((i) => `${i.path.join(".")}: ${i.message}`).join("; ")}`,
    );
  }
  return inputs;
}

function idOf(live: k8s.KubernetesObject): string {
  const ns = live.metadata?.namespace;
  return ns ? `${ns}/${live.metadata?.name ?? ""}` : (live.metadata?.name ?? "");
}

class TestbedKubernetesProvider {
  private client: RawObjectApi | undefined;
  private engine: enginerpc.EngineClient | undefined;
  private bannerSent = false;

  constructor(engineAddress: string | undefined) {
    if (engineAddress) {
      this.engine = new enginerpc.EngineClient(engineAddress, grpc.credentials.createInsecure());
    }
  }

  /** Shown to the user as a warning in the engine's output, once per provider process. */
  announce(urn: string): void {
    if (this.bannerSent || this.engine === undefined) return;
    this.bannerSent = true;
    const request = new engineproto.LogRequest();
    request.setSeverity(engineproto.LogSeverity.WARNING);
    request.setMessage(BANNER);
    request.setUrn(urn);
    this.engine.log(request, () => undefined);
  }

  private api(): RawObjectApi {
    if (this.client === undefined) {
      throw new Error("the testbed Kubernetes provider was not configured with a kubeconfig");
    }
    return this.client;
  }

  configure(args: JsonObject, variables: Map<string, string>): void {
    const raw: JsonObject = { ...args };
    for (const [key, value] of variables) {
      const short = key.replace(/^kubernetes:config:/, "");
      if (!(short in raw)) raw[short] = value;
    }
    const parsed = ProviderConfig.safeParse(raw);
    if (!parsed.success) {
      throw new Error(
        parsed.error.issues.map((i) => `${i.path.join(".")}: ${i.message}`).join("; "),
      );
    }
    if (hasUnknowns(parsed.data.kubeconfig)) return; // preview with a kubeconfig not yet known
    const config = new k8s.KubeConfig();
    const kubeconfig = parsed.data.kubeconfig;
    if (kubeconfig === undefined || kubeconfig === "") config.loadFromDefault();
    else if (!kubeconfig.includes("\n") && existsSync(kubeconfig)) config.loadFromFile(kubeconfig);
    else config.loadFromString(kubeconfig);
    this.client = RawObjectApi.forConfig(config, parsed.data.namespace);
  }

  async apply(inputs: JsonObject, mustNotExist: boolean): Promise<JsonObject> {
    const api = this.api();
    const object = objectOf(inputs);
    if (mustNotExist) {
      // Like the real provider: creating over an existing object is an error, not an adoption.
      const existing = await api.getRaw(object).then(
        () => true,
        (error: unknown) => {
          if (isNotFound(error)) return false;
          throw error;
        },
      );
      if (existing) {
        throw new Error(
          `${object.kind ?? ""} ${idOf(object)} already exists; import it or delete it first`,
        );
      }
    }
    return liveOutputs(await api.applyRaw(inputs, FIELD_MANAGER));
  }

  async read(inputs: JsonObject): Promise<JsonObject | undefined> {
    try {
      return liveOutputs(await this.api().getRaw(objectOf(inputs)));
    } catch (error) {
      if (isNotFound(error)) return undefined;
      throw error;
    }
  }

  /** Delete and wait until the object is gone (a namespace: until its finalizers ran). */
  async delete(outputs: JsonObject, timeoutMs: number): Promise<void> {
    const api = this.api();
    const object = objectOf(outputs);
    const spec = {
      apiVersion: object.apiVersion,
      kind: object.kind,
      metadata: { name: object.metadata?.name, namespace: object.metadata?.namespace },
    };
    try {
      await api.deleteRaw(spec);
    } catch (error) {
      if (isNotFound(error)) return;
      throw error;
    }
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      if ((await this.read(spec as JsonObject)) === undefined) return;
      await sleep(500);
    }
    throw new Error(
      `${object.kind ?? ""} ${idOf(object)} still exists ${Math.round(timeoutMs / 1000)} s after it was deleted`,
    );
  }
}

/** A validation error as the engine's check failures: the property path and the reason. */
function checkFailures(error: z.ZodError): provproto.CheckFailure[] {
  return error.issues.map((issue) =>
    new provproto.CheckFailure().setProperty(issue.path.join(".")).setReason(issue.message),
  );
}

function timeoutMs(seconds: number, fallbackMs: number): number {
  return seconds > 0 ? seconds * 1000 : fallbackMs;
}

/** The RPCs this provider implements; grpc-js answers the others (Construct, Call, …) UNIMPLEMENTED. */
function services(provider: TestbedKubernetesProvider): grpc.UntypedServiceImplementation {
  return {
    getPluginInfo: unary(() => new plugproto.PluginInfo().setVersion(VERSION)),
    getSchema: unary(() => new provproto.GetSchemaResponse().setSchema("{}")),
    attach: unary(() => new Empty()),
    cancel: unary(() => new Empty()),
    checkConfig: unary((req: provproto.CheckRequest) => {
      const news = req.getNews();
      const parsed = ProviderConfig.safeParse(toJson(news));
      const response = new provproto.CheckResponse().setInputs(news);
      if (!parsed.success) response.setFailuresList(checkFailures(parsed.error));
      return response;
    }),
    diffConfig: unary((req: provproto.DiffRequest) => {
      const olds = toJson(req.getOldInputs() ?? req.getOlds());
      const news = toJson(req.getNews());
      const { changed } = diffInputs(olds, news);
      const relevant = changed.filter((k) => k === "kubeconfig" || k === "namespace");
      return new provproto.DiffResponse()
        .setChanges(
          relevant.length > 0 || hasUnknowns(news)
            ? provproto.DiffResponse.DiffChanges.DIFF_SOME
            : provproto.DiffResponse.DiffChanges.DIFF_NONE,
        )
        .setDiffsList(relevant);
    }),
    configure: unary((req: provproto.ConfigureRequest) => {
      provider.configure(toJson(req.getArgs()), new Map(req.getVariablesMap().entries()));
      // Secrets are unwrapped by the engine for us (and re-marked on outputs); no preview creates.
      return new provproto.ConfigureResponse()
        .setAcceptsecrets(false)
        .setAcceptresources(false)
        .setSupportspreview(false);
    }),
    check: unary((req: provproto.CheckRequest) => {
      provider.announce(req.getUrn());
      const news = toJson(req.getNews());
      const olds = req.hasOlds() ? toJson(req.getOlds()) : undefined;
      const named = autoName(news, olds, req.getName() || (req.getUrn().split("::").pop() ?? ""));
      const response = new provproto.CheckResponse().setInputs(toStruct(named));
      const identity = ObjectIdentity.safeParse(named);
      if (!identity.success) response.setFailuresList(checkFailures(identity.error));
      return response;
    }),
    diff: unary((req: provproto.DiffRequest) => {
      const olds = toJson(req.getOldInputs() ?? req.getOlds());
      const news = toJson(req.getNews());
      const { changed, replaces } = diffInputs(olds, news);
      const some = changed.length > 0 || hasUnknowns(news);
      return new provproto.DiffResponse()
        .setChanges(
          some
            ? provproto.DiffResponse.DiffChanges.DIFF_SOME
            : provproto.DiffResponse.DiffChanges.DIFF_NONE,
        )
        .setDiffsList(changed)
        .setReplacesList(replaces)
        .setDeletebeforereplace(replaces.length > 0);
    }),
    create: unary(async (req: provproto.CreateRequest) => {
      const inputs = toJson(req.getProperties());
      const live = await provider.apply(inputs, true);
      return new provproto.CreateResponse().setId(idOf(live)).setProperties(toStruct(live));
    }),
    update: unary(async (req: provproto.UpdateRequest) => {
      const live = await provider.apply(toJson(req.getNews()), false);
      return new provproto.UpdateResponse().setProperties(toStruct(live));
    }),
    read: unary(async (req: provproto.ReadRequest) => {
      const inputs = req.hasInputs() ? toJson(req.getInputs()) : toJson(req.getProperties());
      const live = await provider.read(inputs);
      const response = new provproto.ReadResponse();
      if (live === undefined) return response; // empty id: the object is gone
      return response
        .setId(req.getId())
        .setProperties(toStruct(live))
        .setInputs(req.getInputs() ?? toStruct(inputs));
    }),
    delete: unary(async (req: provproto.DeleteRequest) => {
      const outputs = toJson(req.getProperties());
      await provider.delete(outputs, timeoutMs(req.getTimeout(), 5 * 60_000));
      return new Empty();
    }),
  };
}

/** Serve on a free loopback port and print it (the engine reads the port from stdout). */
async function main(): Promise<void> {
  process.stderr.write(`${BANNER}\n`);
  const engineAddress = process.argv.slice(2).find((arg) => !arg.startsWith("-"));
  const provider = new TestbedKubernetesProvider(engineAddress);
  await servePlugin(provrpc.ResourceProviderService, services(provider));
}

main().catch((error: unknown) => {
  process.stderr.write(`testbed kubernetes provider: ${String(error)}\n`);
  process.exit(1);
});
