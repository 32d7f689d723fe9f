/**
 * The access reaper: Kubernetes RBAC has no expiry, so this loop deletes every RoleBinding and
 * ClusterRoleBinding annotated `shardworks.dev/expires-at` once that time has passed. It runs in
 * the routing controller (see {@link createAccessReaper}) and standalone (`main.ts`).
 *
 * The list+watch loop is written here rather than taken from client-node's `makeInformer`: that
 * informer, after a watch error, restarts from its stale resourceVersion instead of re-listing, so
 * a binding deleted or changed while disconnected would keep (or lose) its timer.
 */
import { EventEmitter } from "node:events";
import * as k8s from "@kubernetes/client-node";
import { EXPIRES_AT_ANNOTATION, parseRfc3339 } from "../../contract";
import { logger as rootLogger, type Logger } from "../lib/logger";
import { backoffDelay, jitter } from "../lib/backoff";

/** Which kind of binding. */
export type BindingKind = "RoleBinding" | "ClusterRoleBinding";

/** Identifies one binding the reaper knows about. */
export interface BindingRef {
  kind: BindingKind;
  /** Absent for a ClusterRoleBinding. */
  namespace?: string;
  name: string;
}

/** What the reaper reports on `events`. */
export interface AccessReaperEvents {
  /** A binding's deletion is scheduled at `expiresAt`. */
  scheduled: [BindingRef & { expiresAt: Date }];
  /** A binding was deleted, `lateMs` after its expiry. */
  deleted: [BindingRef & { expiresAt: Date; lateMs: number }];
  /** A binding's annotation is not an RFC 3339 time: it is left alone. */
  malformed: [BindingRef & { value: string }];
  /** A list, watch or delete failed; the reaper retries by itself. */
  error: [{ during: "list" | "watch" | "delete"; error: Error; retryInMs: number }];
  /** A full list of one kind was taken (at start, and after each watch ends or fails). */
  synced: [{ kind: BindingKind; bindings: number; annotated: number }];
}

/** Options of {@link AccessReaper}; defaults in brackets. */
export interface AccessReaperOptions {
  /** Logger [the runtime's pino logger, child `access-reaper`]. */
  logger?: Logger;
  /** First retry delay after an error, ms [1000]; doubles up to `maxRetryMs`, with jitter. */
  retryMs?: number;
  /** Longest retry delay, ms [30000]. */
  maxRetryMs?: number;
  /** Server-side timeout of one watch, s [300]; then the reaper re-lists (a cheap resync). */
  watchTimeoutSeconds?: number;
}

type Binding = k8s.V1RoleBinding | k8s.V1ClusterRoleBinding;

interface Scheduled {
  uid: string;
  resourceVersion: string;
  expiresAt: Date;
  timer: NodeJS.Timeout;
}

const PATHS: Record<BindingKind, string> = {
  RoleBinding: "/apis/rbac.authorization.k8s.io/v1/rolebindings",
  ClusterRoleBinding: "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings",
};
// setTimeout's ceiling (~24.8 days); a later expiry is re-checked when the timer fires.
const MAX_TIMER_MS = 2 ** 31 - 1;

function keyOf(ref: BindingRef): string {
  return `${ref.kind}/${ref.namespace ?? ""}/${ref.name}`;
}

/** Retry delays vary ±25 % so many reapers never retry in step. */
const REAPER_SPREAD = 0.25;

/** Resolves after `ms`, or at once when `signal` aborts. */
function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const timer = setTimeout(done, ms);
    function done(): void {
      clearTimeout(timer);
      signal.removeEventListener("abort", done);
      resolve();
    }
    signal.addEventListener("abort", done, { once: true });
  });
}

/** Deletes expired JIT bindings; see the module comment. */
export class AccessReaper {
  /** Progress and problems; see {@link AccessReaperEvents}. */
  readonly events = new EventEmitter<AccessReaperEvents>();
  readonly #config: k8s.KubeConfig;
  readonly #rbac: k8s.RbacAuthorizationV1Api;
  readonly #log: Logger;
  readonly #retryMs: number;
  readonly #maxRetryMs: number;
  readonly #watchTimeoutSeconds: number;
  readonly #scheduled = new Map<string, Scheduled>();
  /** Malformed bindings already reported, by key → resourceVersion (so each is logged once). */
  readonly #malformed = new Map<string, string>();
  #abort?: AbortController;
  #loops: Promise<void>[] = [];

  constructor(config: k8s.KubeConfig, options: AccessReaperOptions = {}) {
    options.logger ??= rootLogger.child({ component: "access-reaper" });
    options.retryMs ??= 1000;
    options.maxRetryMs ??= 30_000;
    options.watchTimeoutSeconds ??= 300;
    this.#config = config;
    this.#rbac = config.makeApiClient(k8s.RbacAuthorizationV1Api);
    this.#log = options.logger;
    this.#retryMs = options.retryMs;
    this.#maxRetryMs = options.maxRetryMs;
    this.#watchTimeoutSeconds = options.watchTimeoutSeconds;
    // An EventEmitter throws on an unheard "error"; the reaper's errors are retried, not fatal.
    this.events.on("error", () => undefined);
  }

  /** Start watching both kinds of binding. Returns at once; errors are retried in the background. */
  start(): void {
    if (this.#abort !== undefined) return;
    this.#abort = new AbortController();
    const signal = this.#abort.signal;
    this.#loops = (["RoleBinding", "ClusterRoleBinding"] as const).map((kind) =>
      this.#run(kind, signal),
    );
  }

  /** Stop watching and cancel every timer; resolves when both loops have ended. */
  async close(): Promise<void> {
    this.#abort?.abort();
    for (const entry of this.#scheduled.values()) clearTimeout(entry.timer);
    this.#scheduled.clear();
    await Promise.all(this.#loops);
    this.#loops = [];
    this.#abort = undefined;
  }

  /** The bindings waiting for their expiry (for status pages and tests). */
  pending(): (BindingRef & { expiresAt: Date })[] {
    return [...this.#scheduled.entries()].map(([key, s]) => {
      const [kind, namespace, name] = key.split("/") as [BindingKind, string, string];
      return { kind, ...(namespace === "" ? {} : { namespace }), name, expiresAt: s.expiresAt };
    });
  }

  /** List, then watch from the list's version; on any end or error, back off and list again. */
  async #run(kind: BindingKind, signal: AbortSignal): Promise<void> {
    let failures = 0;
    while (!signal.aborted) {
      let during: "list" | "watch" = "list";
      try {
        const resourceVersion = await this.#list(kind);
        during = "watch";
        await this.#watch(kind, resourceVersion, signal);
        failures = 0;
      } catch (error) {
        if (signal.aborted) break;
        failures += 1;
        const retryInMs = backoffDelay(failures - 1, {
          baseMs: this.#retryMs,
          maxMs: this.#maxRetryMs,
          spread: REAPER_SPREAD,
        });
        const err = error instanceof Error ? error : new Error(String(error));
        this.#log.warn({ kind, during, err, retryInMs }, "access reaper: retrying");
        this.events.emit("error", { during, error: err, retryInMs });
        await sleep(retryInMs, signal);
      }
    }
  }

  /** Take a full list: schedule what is annotated, forget what is gone. Returns its version. */
  async #list(kind: BindingKind): Promise<string> {
    const list =
      kind === "RoleBinding"
        ? await this.#rbac.listRoleBindingForAllNamespaces()
        : await this.#rbac.listClusterRoleBinding();
    const seen = new Set<string>();
    let annotated = 0;
    for (const binding of list.items) {
      const ref = this.#refOf(kind, binding);
      seen.add(keyOf(ref));
      if (this.#observe(ref, binding)) annotated += 1;
    }
    for (const key of [...this.#scheduled.keys(), ...this.#malformed.keys()]) {
      if (key.startsWith(`${kind}/`) && !seen.has(key)) this.#forget(key);
    }
    this.events.emit("synced", { kind, bindings: list.items.length, annotated });
    return list.metadata?.resourceVersion ?? "";
  }

  /** Watch until the server ends the watch (resolves) or it fails (rejects). */
  #watch(kind: BindingKind, resourceVersion: string, signal: AbortSignal): Promise<void> {
    return new Promise((resolve, reject) => {
      const watch = new k8s.Watch(this.#config);
      let request: AbortController | undefined;
      const stop = (): void => request?.abort();
      signal.addEventListener("abort", stop, { once: true });
      const finish = (error?: unknown): void => {
        signal.removeEventListener("abort", stop);
        if (error && !signal.aborted)
          reject(
            error instanceof Error ? error : new Error(`watch ${kind} failed`, { cause: error }),
          );
        else resolve();
      };
      watch
        .watch(
          PATHS[kind],
          { resourceVersion, timeoutSeconds: this.#watchTimeoutSeconds },
          (phase: string, object: Binding | k8s.V1Status) => {
            if (phase === "ERROR") {
              // e.g. 410 Gone: our version is too old; end this watch so the loop re-lists.
              request?.abort();
              finish(
                new Error(`watch ${kind}: ${(object as k8s.V1Status).message ?? "error event"}`),
              );
              return;
            }
            const binding = object as Binding;
            const ref = this.#refOf(kind, binding);
            if (phase === "DELETED") this.#forget(keyOf(ref));
            else if (phase === "ADDED" || phase === "MODIFIED") this.#observe(ref, binding);
          },
          (error: unknown) => finish(error),
        )
        .then((controller) => {
          request = controller;
          if (signal.aborted) controller.abort();
        }, finish);
    });
  }

  #refOf(kind: BindingKind, binding: Binding): BindingRef {
    const namespace = binding.metadata?.namespace;
    return {
      kind,
      ...(kind === "RoleBinding" && namespace ? { namespace } : {}),
      name: binding.metadata?.name ?? "",
    };
  }

  /** (Re)schedule one binding from its annotation. Returns whether it carries the annotation. */
  #observe(ref: BindingRef, binding: Binding): boolean {
    const key = keyOf(ref);
    const value = binding.metadata?.annotations?.[EXPIRES_AT_ANNOTATION];
    const uid = binding.metadata?.uid ?? "";
    const resourceVersion = binding.metadata?.resourceVersion ?? "";
    if (value === undefined) {
      this.#forget(key);
      return false;
    }
    const expiresAt = parseRfc3339(value);
    if (expiresAt === undefined) {
      this.#forget(key);
      // Never delete by guess: a person must fix or remove the annotation.
      if (this.#malformed.get(key) !== resourceVersion) {
        this.#malformed.set(key, resourceVersion);
        this.#log.warn(
          { ...ref, annotation: EXPIRES_AT_ANNOTATION, value },
          "access reaper: expiry annotation is not an RFC 3339 time; binding left alone",
        );
        this.events.emit("malformed", { ...ref, value });
      }
      return true;
    }
    this.#malformed.delete(key);
    const current = this.#scheduled.get(key);
    if (current?.uid === uid && current.resourceVersion === resourceVersion) return true;
    if (current) clearTimeout(current.timer);
    this.#schedule(key, ref, { uid, resourceVersion, expiresAt });
    this.events.emit("scheduled", { ...ref, expiresAt });
    return true;
  }

  #schedule(key: string, ref: BindingRef, entry: Omit<Scheduled, "timer">): void {
    const delay = Math.min(MAX_TIMER_MS, Math.max(0, entry.expiresAt.getTime() - Date.now()));
    const timer = setTimeout(() => void this.#expire(key, ref), delay);
    this.#scheduled.set(key, { ...entry, timer });
  }

  #forget(key: string): void {
    const entry = this.#scheduled.get(key);
    if (entry) clearTimeout(entry.timer);
    this.#scheduled.delete(key);
    this.#malformed.delete(key);
  }

  /** A timer fired: delete the binding if it is still the version we scheduled. */
  async #expire(key: string, ref: BindingRef): Promise<void> {
    const entry = this.#scheduled.get(key);
    if (entry === undefined || this.#abort?.signal.aborted !== false) return;
    if (entry.expiresAt.getTime() > Date.now()) {
      this.#schedule(key, ref, entry); // past setTimeout's ceiling: wait some more
      return;
    }
    // Preconditions: never delete a binding that was re-created or renewed since we saw it.
    const body: k8s.V1DeleteOptions = {
      preconditions: { uid: entry.uid, resourceVersion: entry.resourceVersion },
    };
    try {
      if (ref.namespace === undefined)
        await this.#rbac.deleteClusterRoleBinding({ name: ref.name, body });
      else
        await this.#rbac.deleteNamespacedRoleBinding({
          name: ref.name,
          namespace: ref.namespace,
          body,
        });
      const lateMs = Date.now() - entry.expiresAt.getTime();
      this.#scheduled.delete(key);
      this.#log.info(
        { ...ref, expiresAt: entry.expiresAt, lateMs },
        "access reaper: expired binding deleted",
      );
      this.events.emit("deleted", { ...ref, expiresAt: entry.expiresAt, lateMs });
    } catch (error) {
      const status = error instanceof k8s.ApiException ? error.code : undefined;
      // 404: already gone. 409: changed since we saw it; the watch brings the new version.
      if (status === 404 || status === 409) {
        if (this.#scheduled.get(key) === entry) this.#scheduled.delete(key);
        return;
      }
      if (this.#scheduled.get(key) !== entry || this.#abort?.signal.aborted !== false) return;
      const retryInMs = jitter(this.#retryMs, REAPER_SPREAD);
      const err = error instanceof Error ? error : new Error(String(error));
      this.#log.warn({ ...ref, err, retryInMs }, "access reaper: delete failed; retrying");
      this.events.emit("error", { during: "delete", error: err, retryInMs });
      const timer = setTimeout(() => void this.#expire(key, ref), retryInMs);
      this.#scheduled.set(key, { ...entry, timer });
    }
  }
}

/** The access reaper for a cluster (the routing controller calls this with its in-cluster config). */
export function createAccessReaper(
  config: k8s.KubeConfig,
  options?: AccessReaperOptions,
): AccessReaper {
  return new AccessReaper(config, options);
}
