/**
 * Runs the policy pack's rules the way `@pulumi/policy`'s analyzer server does (its `server.js`
 * `analyze` / `analyzeStack`): one args object per resource with `isType`/`asType` by type token,
 * each validation of an array run on its own, "not applicable" thrown and caught per validation.
 * No engine is involved; this calls the validate functions directly with what the engine sends.
 */
import type {
  EnforcementLevel,
  Policy,
  PolicyResource,
  ReportViolation,
  ResourceValidationArgs,
  ResourceValidationPolicy,
  StackValidationPolicy,
} from "@pulumi/policy";

/** A resource as a test builds it: type token, logical name, inputs. */
export interface TestResource {
  type: string;
  name: string;
  inputs: Record<string, unknown>;
}

/** One reported violation. */
export interface Violation {
  policy: string;
  enforcementLevel: EnforcementLevel | undefined;
  message: string;
  urn: string | undefined;
}

class NotApplicable extends Error {}

function urnOf(type: string, name: string): string {
  return `urn:pulumi:test::shardworks::${type}::${name}`;
}

function isTypeOf(type: string) {
  return (resourceClass: unknown): boolean =>
    (resourceClass as { __pulumiType?: string }).__pulumiType === type;
}

/** What the analyzer tells every policy about a resource: its identity, inputs and type checks. */
function describe(resource: TestResource) {
  const isType = isTypeOf(resource.type);
  return {
    type: resource.type,
    props: resource.inputs,
    urn: urnOf(resource.type, resource.name),
    name: resource.name,
    isType,
    asType: (cls: unknown) => (isType(cls) ? resource.inputs : undefined),
  };
}

/** The args a resource policy receives for one resource. */
export function resourceArgs(resource: TestResource): ResourceValidationArgs {
  const described = describe(resource);
  return {
    ...described,
    opts: {
      protect: false,
      ignoreChanges: [],
      aliases: [],
      additionalSecretOutputs: [],
      customTimeouts: { createSeconds: 0, updateSeconds: 0, deleteSeconds: 0 },
    },
    stackTags: new Map(),
    asType: described.asType as ResourceValidationArgs["asType"],
    getConfig: () => ({}) as never,
    notApplicable: (reason?: string) => {
      throw new NotApplicable(reason);
    },
  } as ResourceValidationArgs;
}

/** The resources a stack policy receives. */
export function stackResources(resources: TestResource[]): PolicyResource[] {
  return resources.map(
    (resource) =>
      ({
        ...describe(resource),
        opts: {},
        dependencies: [],
        propertyDependencies: {},
      }) as unknown as PolicyResource,
  );
}

function isResourcePolicy(policy: Policy): policy is ResourceValidationPolicy {
  return "validateResource" in policy;
}

/** Run one policy over some resources; return the violation messages (with URNs). */
export function runPolicy(policy: Policy, resources: TestResource[]): Violation[] {
  const found: Violation[] = [];
  const reporter =
    (urn: string | undefined): ReportViolation =>
    (message, reportedUrn) =>
      found.push({
        policy: policy.name,
        enforcementLevel: policy.enforcementLevel,
        message,
        urn: reportedUrn ?? urn,
      });
  if (isResourcePolicy(policy)) {
    const validations = [policy.validateResource ?? []].flat();
    for (const resource of resources) {
      const args = resourceArgs(resource);
      for (const validate of validations) {
        try {
          void validate(args, reporter(args.urn));
        } catch (error) {
          if (!(error instanceof NotApplicable)) throw error;
        }
      }
    }
  } else {
    const stack = policy as StackValidationPolicy;
    void stack.validateStack(
      {
        resources: stackResources(resources),
        getConfig: () => ({}) as never,
        stackTags: new Map(),
        notApplicable: () => undefined as never,
      },
      reporter(undefined),
    );
  }
  return found;
}

/** Messages a policy reports for one resource. */
export function messagesFor(policy: Policy, ...resources: TestResource[]): string[] {
  return runPolicy(policy, resources).map((v) => v.message);
}
