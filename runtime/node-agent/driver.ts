/**
 * The one interface every sandbox driver implements (firecracker, qemu, process). The node agent
 * only talks to drivers through it, and one shared conformance suite
 * (`test/integration/drivers/conformance.ts`) runs against every driver.
 */
import type { Driver, RegistryAccess, SandboxSpec } from "../../contract/model";

/** What a driver can do on this host, as found by {@link SandboxDriver.probe}. */
export interface DriverCapabilities {
  readonly driver: Driver;
  /** False for `process`: namespaces only, no hardware isolation. Users are told so. */
  readonly hardwareIsolated: boolean;
  /** How warm starts are served: restore a snapshot, hand the command to a pre-started sandbox, or not at all. */
  readonly warmStart: "snapshot" | "prestarted" | "none";
  readonly snapshots: boolean;
  readonly liveMigration: boolean;
  /** Human-readable facts about this host, e.g. "KVM unusable here (guest hung in early boot): using TCG". */
  readonly notes: readonly string[];
}

/** Result of probing the host for a driver. */
export type ProbeResult =
  | { readonly usable: true; readonly capabilities: DriverCapabilities }
  | { readonly usable: false; readonly reason: string };

/** What the node agent asks a driver to run. */
export interface RunRequest {
  readonly id: string;
  readonly spec: SandboxSpec;
  /** A private directory for this sandbox; the driver may put sockets, disks and snapshots here. */
  readonly workDir: string;
  /** The sandbox's combined stdout/stderr is appended here (the node agent streams it as logs). */
  readonly logFile: string;
}

/** How a sandbox ended. */
export type SandboxExit =
  | { readonly kind: "exited"; readonly code: number }
  | { readonly kind: "failed"; readonly reason: string };

/** A sandbox the driver has started. */
export interface RunningSandbox {
  readonly id: string;
  /** Whether warm capacity (snapshot / pre-started sandbox) served this start. */
  readonly start: "warm" | "cold";
  /** Time from `run()` being called to the command running, in milliseconds. */
  readonly startMillis: number;
  /** host:port where each exposed guest port is reachable, keyed by guest port. */
  readonly endpoints: Readonly<Record<string, string>>;
  /** Settles when the command ends or the sandbox fails; never rejects. */
  readonly exit: Promise<SandboxExit>;
  /** Stops the sandbox and frees everything it holds. Idempotent. */
  stop(): Promise<void>;
}

/** Where a live migration sends a sandbox. */
export interface MigrationTarget {
  readonly host: string;
  readonly port: number;
}

/** A sandbox driver. */
export interface SandboxDriver {
  readonly name: Driver;
  /** Checks this host can run the driver (binaries, KVM, kernel) and reports what it can do. */
  probe(): Promise<ProbeResult>;
  /**
   * Resolves and caches the image (once per digest) so `run` never converts on the warm path;
   * `access` as in `SandboxSpec.registryAccess` (default `any`). `run` prepares with its spec's.
   */
  prepare(image: string, access?: RegistryAccess): Promise<void>;
  /** Keeps `count` warm starts ready for the image (no-op when `warmStart` is "none"). */
  warm(image: string, count: number, access?: RegistryAccess): Promise<void>;
  run(request: RunRequest): Promise<RunningSandbox>;
  /** Stops everything the driver started, warm pool included. */
  close(): Promise<void>;
}

/** A driver that can move a running sandbox to another node with its state preserved. */
export interface MigratingDriver extends SandboxDriver {
  /** On the target: wait for incoming state on a port; resolves with the port once listening. */
  acceptMigration(request: RunRequest): Promise<{ port: number; sandbox: Promise<RunningSandbox> }>;
  /** On the source: send the running sandbox's state to the target, then stop it here. */
  migrate(id: string, target: MigrationTarget): Promise<void>;
}

/** Narrows a driver to one that supports live migration. */
export function isMigratingDriver(driver: SandboxDriver): driver is MigratingDriver {
  return "migrate" in driver && "acceptMigration" in driver;
}
