import test from "ava";
import {
  UNKNOWN,
  autoName,
  diffInputs,
  hasUnknowns,
  liveOutputs,
  unwrapSecrets,
} from "../../scripts/testbed-provider/logic";

const ns = (metadata: Record<string, string>) => ({
  apiVersion: "v1",
  kind: "Namespace",
  metadata,
});

test("autoName: an object without a name gets <resource>-<8 chars>, kept on later runs", (t) => {
  const first = autoName(ns({}), undefined, "cache");
  const name = (first.metadata as { name: string }).name;
  t.regex(name, /^cache-[a-z0-9]{8}$/);
  t.not((autoName(ns({}), undefined, "cache").metadata as { name: string }).name, name);
  t.is((autoName(ns({}), first, "cache").metadata as { name: string }).name, name);
  t.is(
    (autoName(ns({ name: "given" }), first, "cache").metadata as { name: string }).name,
    "given",
  );
});

test("diffInputs: equal inputs (any key order) are no change; identity changes replace", (t) => {
  const a = { ...ns({ name: "a" }), spec: { x: [1, { y: 2, z: 3 }] } };
  const b = {
    spec: { x: [1, { z: 3, y: 2 }] },
    metadata: { name: "a" },
    kind: "Namespace",
    apiVersion: "v1",
  };
  t.deepEqual(diffInputs(a, b), { changed: [], replaces: [] });
  t.deepEqual(diffInputs(a, { ...a, spec: { x: [1] } }), { changed: ["spec"], replaces: [] });
  t.deepEqual(diffInputs(a, { ...a, metadata: { name: "b" } }), {
    changed: ["metadata"],
    replaces: ["metadata.name"],
  });
});

test("secrets are unwrapped, unknowns detected, managedFields dropped from outputs", (t) => {
  const secret = {
    "4dabf18193072939515e22adb298388d": "1b47061264138c4ac30d75fd1eb44270",
    value: "s3cret",
  };
  t.deepEqual(unwrapSecrets({ kubeconfig: secret, list: [secret] }), {
    kubeconfig: "s3cret",
    list: ["s3cret"],
  });
  t.true(hasUnknowns({ metadata: { name: UNKNOWN } }));
  t.false(hasUnknowns({ metadata: { name: "x" } }));
  t.deepEqual(liveOutputs({ metadata: { name: "x", managedFields: [{ manager: "m" }] } }), {
    metadata: { name: "x" },
  });
});
