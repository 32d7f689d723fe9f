/** The scheduler: the HTTP API and the elected placer, replicated; it needs no Kubernetes API. */
import { Env, Ports } from "../../contract";
import { RuntimeNames } from "./args";
import { serviceAccountOf, type RuntimeScope } from "./scope";
import { agentTokenEnv, platformTokenEnv } from "./tokens";
import type { RuntimeWorkloads } from "./workloads";

/** Create the scheduler's ServiceAccount, Deployment and Service. */
export function createScheduler(scope: RuntimeScope, workloads: RuntimeWorkloads): void {
  const { runtimeEnv, listenAnywhere, tokenAnnotations } = workloads;
  const schedulerSa = serviceAccountOf(scope, "scheduler", false);
  workloads.service("scheduler", {
    objectName: RuntimeNames.scheduler,
    podAnnotations: tokenAnnotations,
    replicas: scope.args.schedulerReplicas ?? 2,
    serviceAccount: schedulerSa,
    apiToken: false,
    container: {
      component: "scheduler",
      args: ["scheduler"],
      env: [
        ...runtimeEnv,
        platformTokenEnv,
        agentTokenEnv,
        listenAnywhere,
        { name: Env.listenPort, value: String(Ports.schedulerApi) },
      ],
      port: { name: "http", port: Ports.schedulerApi },
      probe: { httpGet: { path: "/healthz", port: Ports.schedulerApi } },
    },
  });
}
