/* eslint-disable @typescript-eslint/no-explicit-any --
   Recorded resource inputs are untyped JSON; tests read into them freely. */
/**
 * The one recording Pulumi mock of the unit tests. `pulumi.runtime.setMocks` is per process and
 * ava runs each test file in its own worker, so each file calls `installMocks()` at its top.
 *
 * Every registered resource (custom or component) is recorded with its type, name, inputs and
 * parent name. Invokes throw unless the test allowed them: a component that starts calling a
 * provider function is a change a test should notice.
 */
import * as pulumi from "@pulumi/pulumi";

/** A resource as the engine saw it. */
export interface RecordedResource {
  type: string;
  name: string;
  inputs: Record<string, any>;
  /** Name of the parent resource; undefined for the stack's direct children. */
  parent: string | undefined;
}

/** Outputs to return for resources of a type (e.g. a remote component's outputs). */
export type StateByType = Record<
  string,
  (inputs: Record<string, any>, name: string) => Record<string, unknown>
>;

/** Options of {@link installMocks}. */
export interface MockOptions {
  /** Invoke tokens allowed, with their results. Anything else throws. */
  invokes?: Record<string, (inputs: Record<string, any>) => Record<string, unknown>>;
  /** Extra outputs per resource type. */
  state?: StateByType;
  /** Config values (`shardworks:kind` → string). */
  config?: Record<string, string>;
  stack?: string;
}

/** The record of one process's resources, in registration order. */
export const recorded: RecordedResource[] = [];

interface RegisterRequest {
  getType(): string;
  getName(): string;
  getParent(): string;
}
interface MonitorWithRegister {
  registerResource(req: RegisterRequest, callback: unknown): void;
}

/** Name of a resource from its URN (`urn:pulumi:stack::project::type::name`). */
function nameOfUrn(urn: string): string {
  return urn.slice(urn.lastIndexOf("::") + 2);
}

/** Pulumi's marker of a secret value in serialized properties. */
const SECRET_SIG = "1b47061264138c4ac30d75fd1eb44270";

/** The inputs with secrets replaced by their plain values (tests look at what is sent). */
function revealSecrets(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(revealSecrets);
  if (value === null || typeof value !== "object") return value;
  const object = value as Record<string, unknown>;
  if (Object.values(object).includes(SECRET_SIG) && "value" in object)
    return revealSecrets(object["value"]);
  return Object.fromEntries(Object.entries(object).map(([k, v]) => [k, revealSecrets(v)]));
}

/** Install the recording mocks for this test file. */
export async function installMocks(options: MockOptions = {}): Promise<void> {
  if (options.config) pulumi.runtime.setAllConfig(options.config);
  const parents = new Map<string, string | undefined>();
  await pulumi.runtime.setMocks(
    {
      newResource(args) {
        const inputs = revealSecrets(args.inputs) as Record<string, any>;
        const parent = parents.get(`${args.type}::${args.name}`);
        recorded.push({ type: args.type, name: args.name, inputs, parent });
        const extra = options.state?.[args.type]?.(inputs, args.name) ?? {};
        return {
          id: args.custom === false ? undefined : `${args.name}-id`,
          state: { ...inputs, ...extra },
        };
      },
      call(args) {
        const handler = options.invokes?.[args.token];
        if (handler === undefined) {
          throw new Error(
            `unexpected invoke ${args.token}: a component now calls a provider function`,
          );
        }
        return handler(args.inputs as Record<string, any>);
      },
    },
    "shardworks",
    options.stack ?? "test",
    false,
  );
  // MockResourceArgs carries no parent; the register request does. Note it before the mock runs.
  const monitor = pulumi.runtime.getMonitor() as unknown as MonitorWithRegister;
  const register = monitor.registerResource.bind(monitor);
  monitor.registerResource = (req, callback) => {
    const parent = req.getParent();
    parents.set(`${req.getType()}::${req.getName()}`, parent ? nameOfUrn(parent) : undefined);
    register(req, callback);
  };
}

/** The value of an output (or plain value), as a promise. */
export function unwrap<T>(value: pulumi.Input<T>): Promise<T> {
  return new Promise((resolve) => {
    pulumi.output(value).apply((v) => {
      resolve(v as T);
      return v;
    });
  });
}

/**
 * Resolve after everything registered so far has been recorded: outputs of a component
 * resolve only once its children are registered.
 */
export async function settled(...outputs: pulumi.Output<unknown>[]): Promise<void> {
  await Promise.all(outputs.map((o) => unwrap(o)));
  // Let the mock monitor finish registrations that were already on their way.
  await new Promise((r) => setTimeout(r, 50));
}

/** The outputs to wait for in what a test built: a resource's outputs, a record's values. */
function outputsOf(built: unknown): pulumi.Output<unknown>[] {
  if (pulumi.Output.isInstance(built)) return [built];
  if (pulumi.Resource.isInstance(built))
    return Object.values(built).filter((v) => pulumi.Output.isInstance(v));
  if (built !== null && typeof built === "object")
    return Object.values(built).map((v) => pulumi.output(v));
  return [];
}

/**
 * The prelude of a test file on the recording mock: install the mocks, build what the file
 * tests, and resolve with it once every child is recorded, i.e. once every output of each
 * built thing has resolved. `build` returns an array or record of resources, outputs, or
 * records of outputs (e.g. a stack's outputs).
 */
export async function recordBuild<T extends readonly unknown[] | Record<string, unknown>>(
  build: () => T | Promise<T>,
  options: MockOptions = {},
): Promise<T> {
  await installMocks(options);
  const built = await build();
  await settled(...Object.values(built).flatMap(outputsOf));
  return built;
}

/** Recorded resources of a type (optionally whose parent is `parent`). */
export function ofType(type: string, parent?: string): RecordedResource[] {
  return recorded.filter((r) => r.type === type && (parent === undefined || r.parent === parent));
}

/** The single recorded resource with this name; throws when there is none or several. */
export function named(name: string): RecordedResource {
  const found = recorded.filter((r) => r.name === name);
  if (found.length !== 1)
    throw new Error(`expected one resource named ${name}, found ${found.length}`);
  return found[0]!;
}

/** Every recorded resource that descends from `ancestor` (by parent chain). */
export function descendantsOf(ancestor: string): RecordedResource[] {
  const byName = new Map(recorded.map((r) => [r.name, r]));
  return recorded.filter((r) => {
    for (let p = r.parent; p !== undefined; p = byName.get(p)?.parent)
      if (p === ancestor) return true;
    return false;
  });
}
