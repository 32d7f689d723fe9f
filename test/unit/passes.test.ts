import test from "ava";
import { PassRunner } from "../../runtime/lib/passes";

test("a failing pass is retried until it succeeds, never given up (30 failures in a row)", async (t) => {
  let calls = 0;
  const errors: string[] = [];
  const runner = new PassRunner({
    pass: () => {
      calls += 1;
      return calls <= 30 ? Promise.reject(new Error(`down ${calls}`)) : Promise.resolve();
    },
    active: () => true,
    onError: (error) => errors.push(error.message),
    retryMs: 1,
    maxRetryMs: 2,
  });
  runner.request();
  // idle() resolves once the loop has ended, i.e. after the pass that succeeded.
  for (let i = 0; i < 100 && calls <= 30; i++) await runner.idle();
  t.is(calls, 31);
  t.is(errors.length, 30);
  t.is(errors.at(-1), "down 30");
});

test("requests while a pass runs coalesce into one more pass", async (t) => {
  let calls = 0;
  let release: () => void = () => undefined;
  const runner = new PassRunner({
    pass: async () => {
      calls += 1;
      if (calls === 1) await new Promise<void>((r) => (release = r));
    },
    active: () => true,
    onError: () => undefined,
    retryMs: 1,
  });
  runner.request();
  for (let i = 0; i < 5; i++) runner.request();
  release();
  await runner.idle();
  t.is(calls, 2);
});
