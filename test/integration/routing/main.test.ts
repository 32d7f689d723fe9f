import test from "ava";
import { spawn } from "node:child_process";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { startEtcd } from "../../../runtime/lib/etcd-server";

const MAIN = join(__dirname, "../../../runtime/routing/main.ts");

function run(args: string[]): {
  done: Promise<{ code: number | null; stderr: string }>;
  kill(): void;
  firstLine: Promise<string>;
} {
  const child = spawn(process.execPath, ["--import", "tsx", MAIN, ...args], {
    stdio: ["ignore", "pipe", "pipe"],
    env: { ...process.env, SHARDWORKS_LOG_LEVEL: "error" },
  });
  let stderr = "";
  child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
  const firstLine = new Promise<string>((resolve) =>
    createInterface({ input: child.stdout }).once("line", resolve),
  );
  return {
    done: new Promise((resolve) => child.on("exit", (code) => resolve({ code, stderr }))),
    kill: () => child.kill("SIGTERM"),
    firstLine,
  };
}

test("bad options are refused with a message naming the field, without a stack trace", async (t) => {
  const cases: [string[], RegExp][] = [
    [
      ["--etcd", "http://127.0.0.1:1", "--baseline", "API=1.2.3.4:80"],
      /baseline\[0\]\.name: must be lowercase/,
    ],
    [
      ["--etcd", "http://127.0.0.1:1", "--baseline", "api=nohostport"],
      /baseline\[0\]\.destination: must be "host:port"/,
    ],
    [
      ["--etcd", "http://127.0.0.1:1", "--baseline", "api=1.2.3.4:80,api=1.2.3.5:80"],
      /listed twice/,
    ],
    [["--etcd", "not a url", "--baseline", ""], /etcdEndpoints/],
    [
      [
        "--etcd",
        "http://127.0.0.1:1",
        "--baseline",
        '[{"name":"api","destination":"1.2.3.4:80","protocol":"h3"}]',
      ],
      /baseline\[0\]\.protocol: must be "http1", "http2" or "grpc"/,
    ],
    [
      [
        "--etcd",
        "http://127.0.0.1:1",
        "--baseline",
        "api=1.2.3.4:80",
        "--ingress-host",
        "localhost",
      ],
      /ingressHost: must be an IP address/,
    ],
    [["--etcd", "http://127.0.0.1:1", "--baseline", "[oops"], /baseline: is not valid JSON/],
  ];
  for (const [args, message] of cases) {
    const p = run(args);
    t.teardown(() => p.kill());
    const { code, stderr } = await p.done;
    t.is(code, 1, args.join(" "));
    t.regex(stderr, message);
    t.notRegex(stderr, /\n\s+at /);
  }
});

test("the controller process starts on real etcd, reports its port and stops on SIGTERM", async (t) => {
  const etcd = await startEtcd();
  t.teardown(() => etcd.stop());
  const p = run([
    "--etcd",
    etcd.endpoint,
    "--baseline",
    "api=127.0.0.1:5000",
    "--port",
    "0",
    "--host",
    "127.0.0.1",
  ]);
  t.teardown(() => p.kill());
  const ready = JSON.parse(await p.firstLine) as { ready: boolean; xdsPort: number };
  t.true(ready.ready);
  t.true(ready.xdsPort > 0);
  p.kill();
  t.is((await p.done).code, 0);
});
