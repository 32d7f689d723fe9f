/**
 * How a runtime process is deployed: its container (the runtime image run as a subcommand, with
 * the env every process reads, probes, requests and limits) and, for a replicated service, a
 * Deployment and a Service in front of its port.
 */
import * as k8s from "@pulumi/kubernetes";
import * as pulumi from "@pulumi/pulumi";
import { Env } from "../../contract";
import { appLabels, probes, restrictedContainer, type ProbeCheck } from "../common";
import { metaOf, selectorOf, type RuntimeScope } from "./scope";
import { tokenChecksumAnnotations } from "./tokens";

/** A port a runtime process listens on, exposed by its container and its Service. */
export interface RuntimePort {
  name: string;
  port: number;
  /** The Service port's `appProtocol`, when there is one (e.g. `grpc`). */
  appProtocol?: string;
}

/** A runtime process's container. */
export interface RuntimeContainerSpec {
  component: string;
  args: string[];
  env: k8s.types.input.core.v1.EnvVar[];
  port: RuntimePort;
  probe: ProbeCheck;
  resources?: k8s.types.input.core.v1.ResourceRequirements;
  securityContext?: k8s.types.input.core.v1.SecurityContext;
  volumeMounts?: k8s.types.input.core.v1.VolumeMount[];
}

/** A replicated runtime service. */
export interface RuntimeServiceSpec {
  objectName: string;
  replicas: number;
  serviceAccount: pulumi.Resource;
  /** Mount the ServiceAccount's API token (only a process that calls the Kubernetes API). */
  apiToken: boolean;
  container: RuntimeContainerSpec;
  /** Annotations of the pod template (a change rolls the pods). */
  podAnnotations?: Record<string, pulumi.Input<string>>;
}

/** What the runtime's processes are deployed with. */
export interface RuntimeWorkloads {
  /** The env every runtime process reads: etcd's endpoints, the runtime version. */
  readonly runtimeEnv: k8s.types.input.core.v1.EnvVar[];
  /** Listen on every interface of the pod. */
  readonly listenAnywhere: k8s.types.input.core.v1.EnvVar;
  /** The pod template annotations of a process that reads a token (see `tokens.ts`). */
  readonly tokenAnnotations: Record<string, pulumi.Input<string>>;
  /** Options of a runtime workload: it waits for its ServiceAccount, the token Secret and etcd. */
  deps(serviceAccount: pulumi.Resource): pulumi.CustomResourceOptions;
  /** A runtime process's container: the runtime image run as `args`, its port and probes. */
  container(c: RuntimeContainerSpec): k8s.types.input.core.v1.Container;
  /**
   * A replicated runtime service: a Deployment of one {@link container} and a Service of the
   * same name in front of its port.
   */
  service(component: string, s: RuntimeServiceSpec): void;
}

const small = {
  requests: { cpu: "100m", memory: "128Mi" },
  limits: { cpu: "1", memory: "512Mi" },
};

/** The workloads of `scope`, which wait for the token Secret and `etcdDeps`. */
export function runtimeWorkloads(
  scope: RuntimeScope,
  deps: { etcdEndpoints: string; etcdDeps: pulumi.Resource[]; tokenSecret: pulumi.Resource },
): RuntimeWorkloads {
  const { name, args, parent, namespace } = scope;
  const image =
    args.image !== undefined
      ? pulumi.output(args.image)
      : pulumi.interpolate`${args.imageRepository}:${args.version}`;
  const runtimeEnv = [
    { name: Env.etcdEndpoints, value: deps.etcdEndpoints },
    // Reported by /healthz and routers/<name>; the rollout's gates compare it.
    { name: Env.runtimeVersion, value: args.version },
  ];
  // Every runtime workload waits for its ServiceAccount, the token Secret and etcd.
  const runtimeDeps = (serviceAccount: pulumi.Resource) => ({
    parent,
    dependsOn: [namespace, serviceAccount, deps.tokenSecret, ...deps.etcdDeps],
  });
  const container = (c: RuntimeContainerSpec): k8s.types.input.core.v1.Container => ({
    name: c.component,
    image,
    args: c.args,
    env: c.env,
    ports: [{ name: c.port.name, containerPort: c.port.port }],
    ...probes(c.probe, 120),
    resources: c.resources ?? small,
    securityContext: c.securityContext ?? restrictedContainer,
    ...(c.volumeMounts === undefined ? {} : { volumeMounts: c.volumeMounts }),
  });
  const service = (component: string, s: RuntimeServiceSpec): void => {
    const port = s.container.port;
    new k8s.apps.v1.Deployment(
      `${name}-${component}`,
      {
        metadata: metaOf(scope, component, { name: s.objectName }),
        spec: {
          replicas: s.replicas,
          selector: { matchLabels: selectorOf(scope, component) },
          template: {
            metadata: {
              labels: appLabels(name, component),
              ...(s.podAnnotations === undefined ? {} : { annotations: s.podAnnotations }),
            },
            spec: {
              serviceAccountName: `shardworks-${component}`,
              ...(s.apiToken ? {} : { automountServiceAccountToken: false }),
              containers: [container(s.container)],
            },
          },
        },
      },
      runtimeDeps(s.serviceAccount),
    );
    new k8s.core.v1.Service(
      `${name}-${component}-svc`,
      {
        metadata: metaOf(scope, component, { name: s.objectName }),
        spec: {
          selector: selectorOf(scope, component),
          ports: [
            {
              name: port.name,
              port: port.port,
              targetPort: port.port,
              ...(port.appProtocol === undefined ? {} : { appProtocol: port.appProtocol }),
            },
          ],
        },
      },
      scope.inNs,
    );
  };
  return {
    runtimeEnv,
    listenAnywhere: { name: Env.listenHost, value: "0.0.0.0" },
    tokenAnnotations: tokenChecksumAnnotations(args.platformToken),
    deps: runtimeDeps,
    container,
    service,
  };
}
