/**
 * A minimal client of the OCI distribution API: manifests and blobs over HTTP(S), with bearer-token
 * auth (the `WWW-Authenticate: Bearer realm=…` challenge). Hand-written because the npm registry
 * clients for OCI pull in Docker-daemon assumptions; this is three GET requests and a token dance.
 */
import { createHash, randomBytes } from "node:crypto";
import { createWriteStream } from "node:fs";
import { mkdir, rename, rm, stat } from "node:fs/promises";
import { isIP } from "node:net";
import { dirname } from "node:path";
import { Readable, Transform } from "node:stream";
import { pipeline } from "node:stream/promises";
import type { ReadableStream as WebReadableStream } from "node:stream/web";
import { fetch, type Response } from "undici";
import { isLinkLocalAddress, nonPublicHostReason } from "../../lib/addresses";
import { anyAddressDispatcher, NonPublicAddressError, publicOnlyDispatcher } from "./dispatchers";
import { ImageError } from "./errors";
import { MediaType, sha256Digest, type Descriptor } from "./oci";
import type { RegistryReference } from "./reference";

/** username/password for a registry (sent as Basic to its token service). */
export interface RegistryCredentials {
  readonly username: string;
  readonly password: string;
}

export interface RegistryClientOptions {
  /** Registries (host[:port]) reached over plain HTTP besides loopback ones. */
  readonly insecureRegistries?: readonly string[];
  /** Credentials per registry host[:port]. */
  readonly credentials?: Readonly<Record<string, RegistryCredentials>>;
  /** Longest one registry request may take, body included, in ms; default 600000 (10 min). */
  readonly fetchTimeoutMs?: number;
  /**
   * Connect only to public addresses (a shard's image): every hop, the registry's own host and
   * token realms included, and checked on the resolved address when connecting, so a name whose
   * DNS points into the node's network is refused too. Default false (the platform's images).
   */
  readonly publicOnly?: boolean;
  /**
   * Hosts (names or addresses, no port) a platform image's pull may be redirected to, or get its
   * token from, although they are private: a private registry whose blobs come from an internal
   * object store or whose token service is another host. Never for a shard's image
   * (`publicOnly`), never a link-local (metadata) address.
   */
  readonly trustedHosts?: readonly string[];
}

/** Most redirects one registry request follows (each hop is checked, see `#fetch`). */
const maxRedirects = 5;

const manifestAccept = [
  MediaType.OciManifest,
  MediaType.OciIndex,
  MediaType.DockerManifest,
  MediaType.DockerManifestList,
].join(", ");

/**
 * Most bytes a manifest, an index or a token service's answer may have (what the distribution
 * registry takes in a manifest PUT): they are read into memory, and the node agent's memory is
 * not a sandbox's to fill, so a longer one is cut off while streaming.
 */
export const MAX_MANIFEST_BYTES = 4 * 1024 * 1024;

/** The body of `response`, at most `max` bytes; an {@link ImageError} naming `what` past that. */
async function boundedBody(response: Response, max: number, what: () => string): Promise<Buffer> {
  const tooLarge = () =>
    new ImageError("registry", `${what()} is larger than ${max} bytes; refusing it`);
  const declared = Number(response.headers.get("content-length") ?? "0");
  if (declared > max) {
    await response.body?.cancel().catch(() => undefined);
    throw tooLarge();
  }
  const chunks: Buffer[] = [];
  let size = 0;
  if (response.body) {
    // Leaving the loop (the throw) cancels the stream: the rest is never read.
    for await (const chunk of response.body as AsyncIterable<Uint8Array>) {
      size += chunk.length;
      if (size > max) throw tooLarge();
      chunks.push(Buffer.from(chunk));
    }
  }
  return Buffer.concat(chunks);
}

/** A hop's host as the hop checks compare it: lower case, IPv6 without brackets. */
function hopHost(url: URL): string {
  return url.hostname.replace(/^\[|\]$/g, "").toLowerCase();
}

/** Fetches manifests and blobs of one repository. */
export class RegistryClient {
  readonly #ref: RegistryReference;
  readonly #base: string;
  readonly #credentials: RegistryCredentials | undefined;
  readonly #timeoutMs: number;
  readonly #publicOnly: boolean;
  /** {@link RegistryClientOptions.trustedHosts}, spelled as hops are compared. */
  readonly #trusted: ReadonlySet<string>;
  #token: string | undefined;

  constructor(ref: RegistryReference, options: RegistryClientOptions = {}) {
    this.#timeoutMs = options.fetchTimeoutMs ?? 600_000;
    this.#publicOnly = options.publicOnly ?? false;
    this.#trusted = new Set(
      this.#publicOnly
        ? []
        : (options.trustedHosts ?? []).map((h) => hopHost(new URL(`http://${h}`))),
    );
    this.#ref = ref;
    const host = ref.registry.replace(/:[0-9]+$/, "");
    // A name such as "127.example.com" is not loopback: only the literal forms are.
    const loopback =
      host === "localhost" || (isIP(host) === 4 && host.startsWith("127.")) || host === "[::1]";
    const plain = loopback || (options.insecureRegistries ?? []).includes(ref.registry);
    this.#base = `${plain ? "http" : "https"}://${ref.registry}/v2/${ref.repository}`;
    this.#credentials = options.credentials?.[ref.registry];
  }

  /** The manifest (or index) named by `reference` (tag or digest), verified when a digest is known. */
  async manifest(reference: string): Promise<{ bytes: Buffer; digest: string; mediaType: string }> {
    const response = await this.#get(
      `${this.#base}/manifests/${reference}`,
      manifestAccept,
      `manifest "${reference}"`,
    );
    const bytes = await boundedBody(
      response,
      MAX_MANIFEST_BYTES,
      () => `${this.#describe()}: manifest "${reference}"`,
    );
    const digest = sha256Digest(bytes);
    const expected = reference.startsWith("sha256:")
      ? reference
      : response.headers.get("docker-content-digest");
    if (expected && expected !== digest) {
      throw new ImageError(
        "digest_mismatch",
        `${this.#describe()}: manifest "${reference}" has digest ${digest}, expected ${expected}; the registry served corrupt or substituted content`,
      );
    }
    const mediaType = (response.headers.get("content-type") ?? "").split(";")[0]?.trim() ?? "";
    return { bytes, digest, mediaType };
  }

  /** Downloads a blob to `path` (atomically), verifying size and digest on the way. */
  async downloadBlob(descriptor: Descriptor, path: string): Promise<void> {
    const response = await this.#get(
      `${this.#base}/blobs/${descriptor.digest}`,
      "*/*",
      `blob ${descriptor.digest}`,
    );
    if (!response.body)
      throw new ImageError(
        "registry",
        `${this.#describe()}: blob ${descriptor.digest} came with no body`,
      );
    await mkdir(dirname(path), { recursive: true });
    const temporary = `${path}.part-${randomBytes(4).toString("hex")}`;
    const hash = createHash("sha256");
    const describe = this.#describe();
    let size = 0;
    const meter = new Transform({
      transform(chunk: Buffer, _encoding, callback) {
        hash.update(chunk);
        size += chunk.length;
        // Checked while streaming: a blob longer than its descriptor is cut off, not stored.
        if (size > descriptor.size) {
          callback(
            new ImageError(
              "digest_mismatch",
              `${describe}: blob ${descriptor.digest} is longer than its declared ${descriptor.size} bytes; refusing it`,
            ),
          );
          return;
        }
        callback(null, chunk);
      },
    });
    try {
      await pipeline(
        Readable.fromWeb(response.body as WebReadableStream<Uint8Array>),
        meter,
        createWriteStream(temporary),
      ).catch((error: unknown) => {
        if (error instanceof ImageError) throw error;
        const timedOut = (error as { name?: string }).name === "TimeoutError";
        throw new ImageError(
          "registry",
          timedOut
            ? `${describe}: blob ${descriptor.digest} did not arrive within ${this.#timeoutMs} ms (fetchTimeoutMs); is the registry stalled?`
            : `${describe}: blob ${descriptor.digest} download failed (${String((error as Error).message ?? error)})`,
          { cause: error },
        );
      });
      const digest = `sha256:${hash.digest("hex")}`;
      if (digest !== descriptor.digest || size !== descriptor.size) {
        throw new ImageError(
          "digest_mismatch",
          `${this.#describe()}: blob ${descriptor.digest} arrived as ${digest} (${size} bytes, expected ${descriptor.size}); refusing it`,
        );
      }
      await rename(temporary, path);
    } finally {
      await rm(temporary, { force: true });
    }
    await stat(path);
  }

  #describe(): string {
    return `registry ${this.#ref.registry}, repository "${this.#ref.repository}"`;
  }

  async #get(url: string, accept: string, what: string): Promise<Response> {
    const headers: Record<string, string> = { accept };
    if (this.#token) headers.authorization = `Bearer ${this.#token}`;
    let response = await this.#fetch(url, headers);
    if (response.status === 401 && !this.#token) {
      this.#token = await this.#authenticate(response.headers.get("www-authenticate") ?? "");
      headers.authorization = `Bearer ${this.#token}`;
      response = await this.#fetch(url, headers);
    }
    if (response.status === 404) {
      throw new ImageError(
        "not_found",
        `${this.#describe()}: ${what} not found; check the repository and tag exist (push the image first)`,
      );
    }
    if (response.status === 401 || response.status === 403) {
      throw new ImageError(
        "registry",
        `${this.#describe()}: access to ${what} denied (HTTP ${response.status}); give credentials for ${this.#ref.registry}`,
      );
    }
    if (!response.ok) {
      throw new ImageError(
        "registry",
        `${this.#describe()}: ${what} answered HTTP ${response.status}`,
      );
    }
    return response;
  }

  /**
   * GET `url`, following redirects by hand so that every hop is checked (`fetch`'s own
   * `redirect: "follow"` would go anywhere): a hop may stay on the registry's host, or go to a
   * public host (registries send blobs to a CDN or object store), never to a loopback, private,
   * link-local or local-name host — else a registry (or whoever answers for it) could make the node
   * probe its own network. `headers` (credentials) go to the first hop's host only (the registry,
   * or the token realm it named), never along a redirect to another host.
   */
  async #fetch(url: string, headers: Record<string, string>): Promise<Response> {
    // Bounds the whole request, body included: a stalled registry cannot hang an unpack.
    const signal = AbortSignal.timeout(this.#timeoutMs);
    // As the URL parser spells it, like every hop's host: `[0:0::1]` is `::1`, `127.1` `127.0.0.1`.
    const registryHost = hopHost(new URL(this.#base));
    let current = new URL(url);
    const firstHost = current.host;
    for (let hop = 0; ; hop += 1) {
      this.#checkHop(current, registryHost);
      const sameHost = current.host === firstHost;
      let response: Response;
      try {
        response = await fetch(current, {
          headers: sameHost ? headers : { accept: headers.accept ?? "*/*" },
          redirect: "manual",
          signal,
          // Off the registry's own host (a redirect, a token realm) only public addresses, checked
          // at connect, for the platform too: a name that resolves into the node's network is
          // refused whoever asked. On it, the platform's registry may be private.
          dispatcher: this.#mayBePrivate(current, registryHost)
            ? anyAddressDispatcher()
            : publicOnlyDispatcher(),
        });
      } catch (error) {
        const refused = (error as { cause?: unknown }).cause;
        if (refused instanceof NonPublicAddressError) {
          throw new ImageError(
            "registry",
            `${this.#describe()}: refusing to connect to ${current.host}: ${refused.message}`,
            { cause: error },
          );
        }
        throw new ImageError(
          "registry",
          `${this.#describe()}: cannot reach ${current.origin} (${(error as Error).message}); is the registry running?`,
          { cause: error },
        );
      }
      const location = response.headers.get("location");
      if (response.status < 300 || response.status >= 400 || location === null) return response;
      await response.body?.cancel().catch(() => undefined);
      if (hop >= maxRedirects) {
        throw new ImageError(
          "registry",
          `${this.#describe()}: more than ${maxRedirects} redirects for ${url}; refusing to follow more`,
        );
      }
      try {
        current = new URL(location, current);
      } catch {
        throw new ImageError(
          "registry",
          `${this.#describe()}: redirect to an unparsable location "${location.slice(0, 200)}"`,
        );
      }
    }
  }

  /** Whether a hop may reach a private address: the platform's registry, or a host it trusts. */
  #mayBePrivate(url: URL, registryHost: string): boolean {
    if (this.#publicOnly) return false;
    const host = hopHost(url);
    return host === registryHost || this.#trusted.has(host);
  }

  /** Refuses a hop to a host the node must not be made to connect to (see `#fetch`). */
  #checkHop(url: URL, registryHost: string): void {
    const host = hopHost(url);
    if (url.protocol !== "http:" && url.protocol !== "https:") {
      throw new ImageError(
        "registry",
        `${this.#describe()}: refusing a ${url.protocol} URL; registries are reached over HTTP(S) only`,
      );
    }
    if (isLinkLocalAddress(host)) {
      throw new ImageError(
        "registry",
        `${this.#describe()}: refusing to connect to ${host}, a link-local (metadata service) address`,
      );
    }
    if (this.#mayBePrivate(url, registryHost)) return;
    const reason = nonPublicHostReason(host);
    if (reason !== undefined) {
      throw new ImageError(
        "registry",
        this.#publicOnly
          ? `${this.#describe()}: refusing to connect to ${host}, ${reason}; a shard's image must come from a public registry`
          : `${this.#describe()}: refusing a redirect or token realm to ${host}, ${reason}; only the registry's own host, public hosts and trusted ones (SHARDWORKS_REGISTRY_TRUSTED_HOSTS) are followed`,
      );
    }
  }

  /** Answers a `Bearer realm="…",service="…",scope="…"` challenge with a token. */
  async #authenticate(challenge: string): Promise<string> {
    const match = /^Bearer\s+(.*)$/i.exec(challenge.trim());
    if (!match?.[1]) {
      throw new ImageError(
        "registry",
        `${this.#describe()}: asks for authentication ("${challenge}") but only Bearer tokens are supported`,
      );
    }
    const params: Record<string, string> = {};
    for (const [, key, value] of match[1].matchAll(/([A-Za-z]+)="([^"]*)"/g))
      if (key && value !== undefined) params[key] = value;
    if (!params.realm)
      throw new ImageError("registry", `${this.#describe()}: Bearer challenge has no realm`);
    const url = new URL(params.realm);
    if (params.service) url.searchParams.set("service", params.service);
    url.searchParams.set("scope", params.scope ?? `repository:${this.#ref.repository}:pull`);
    const headers: Record<string, string> = {};
    if (this.#credentials) {
      const basic = Buffer.from(
        `${this.#credentials.username}:${this.#credentials.password}`,
      ).toString("base64");
      headers.authorization = `Basic ${basic}`;
    }
    const response = await this.#fetch(url.toString(), headers);
    if (!response.ok) {
      throw new ImageError(
        "registry",
        `${this.#describe()}: token service ${url.origin} answered HTTP ${response.status}; check the credentials`,
      );
    }
    const text = (
      await boundedBody(
        response,
        MAX_MANIFEST_BYTES,
        () => `${this.#describe()}: the token service answer`,
      )
    ).toString("utf8");
    let body: { token?: unknown; access_token?: unknown };
    try {
      body = JSON.parse(text) as typeof body;
    } catch {
      throw new ImageError("registry", `${this.#describe()}: token service returned no JSON`);
    }
    const token = typeof body.token === "string" ? body.token : body.access_token;
    if (typeof token !== "string")
      throw new ImageError("registry", `${this.#describe()}: token service returned no token`);
    return token;
  }
}
