/**
 * The conformance suite every {@link NodeActuator} passes (local processes today; the AWS node
 * group actuator later). Call `actuatorConformance(name, make)` from a `*.test.ts` file.
 */
import test, { type ExecutionContext } from "ava";
import type { EtcdServer } from "../../../runtime/lib";
import { Store } from "../../../runtime/lib/store";
import type { NodeActuator } from "../../../runtime/scheduler/autoscaler";
import { etcdFor, eventually } from "../../helpers/runtime";

/** Builds the actuator under test on a fresh etcd; it must be closed by the suite. */
export type MakeActuator = (t: ExecutionContext, etcd: EtcdServer) => Promise<NodeActuator>;

/** Register the shared actuator tests. */
export function actuatorConformance(name: string, make: MakeActuator): void {
  test(`${name}: add starts a node that registers in etcd; remove takes it away`, async (t) => {
    const etcd = await etcdFor(t);
    const actuator = await make(t, etcd);
    t.teardown(() => actuator.close());
    const store = new Store(etcd.client);
    t.deepEqual(await actuator.list(), []);
    const first = await actuator.add();
    const second = await actuator.add();
    t.not(first, second, "each node gets its own name");
    t.deepEqual((await actuator.list()).sort(), [first, second].sort());
    const registered = await eventually("both registered", async () => {
      const nodes = (await store.listNodes()).map((n) => n.name);
      return nodes.includes(first) && nodes.includes(second) ? nodes : undefined;
    });
    t.true(registered.includes(first));
    await actuator.remove(first);
    t.deepEqual(await actuator.list(), [second]);
    t.false(
      (await store.listNodes()).some((n) => n.name === first),
      "a removed node's record is gone when remove resolves",
    );
    await t.throwsAsync(actuator.remove("never-started"), {
      message: /not started by this actuator/,
    });
    await actuator.close();
    t.deepEqual(await actuator.list(), []);
    t.deepEqual(await store.listNodes(), []);
  });
}
