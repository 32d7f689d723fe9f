import test from "ava";
import {
  AccessError,
  Duration,
  checkGrantRequest,
  formatDuration,
  grantName,
  parseGrantDuration,
  type GrantRequest,
} from "../../runtime/access";
import { ClusterRoleName, checkJitExpiry, parseRfc3339 } from "../../contract/access";

const H = 3_600_000;
const M = 60_000;

for (const [text, ms] of [
  ["90m", 90 * M],
  ["2h", 2 * H],
  ["1h30m", 90 * M],
  ["45s", 45_000],
  ["1h0m5s", H + 5_000],
  [" 8h ", 8 * H],
] as const) {
  test(`duration ${JSON.stringify(text)} is ${ms} ms`, (t) => {
    t.is(Duration.parse(text), ms);
  });
}

for (const text of ["", "2", "2x", "1.5h", "30m1h", "h", "-1h", "2 h", "1d"]) {
  test(`duration ${JSON.stringify(text)} is refused with how to write one`, (t) => {
    const error = t.throws(() => parseGrantDuration(text, 8 * H), { instanceOf: AccessError });
    t.regex(error.message, /^--for: .* is not a duration; write .* like 90m, 2h or 1h30m$/);
  });
}

for (const [text, max, message] of [
  ["9h", 8 * H, "--for: 9h is longer than the maximum 8h; ask for at most 8h"],
  ["8h1s", 8 * H, "--for: 8h1s is longer than the maximum 8h; ask for at most 8h"],
  ["2h", 90 * M, "--for: 2h is longer than the maximum 1h30m; ask for at most 1h30m"],
  ["0h", 8 * H, "--for: a grant must last more than 0s; ask for e.g. 1h"],
  ["0s", 8 * H, "--for: a grant must last more than 0s; ask for e.g. 1h"],
] as const) {
  test(`--for ${text} under a ${formatDuration(max)} maximum is refused`, (t) => {
    t.throws(() => parseGrantDuration(text, max), { instanceOf: AccessError, message });
  });
}

test("--for at exactly the maximum is allowed", (t) => {
  t.is(parseGrantDuration("8h", 8 * H), 8 * H);
});

for (const [ms, text] of [
  [0, "0s"],
  [5_000, "5s"],
  [90 * M, "1h30m"],
  [8 * H, "8h"],
  [H + 1_000, "1h1s"],
] as const) {
  test(`formatDuration(${ms}) is ${text}`, (t) => {
    t.is(formatDuration(ms), text);
  });
}

const NOW = new Date("2026-11-22T10:00:00Z");

for (const [field, request, message] of [
  ["role", { role: "admin" }, "--role: must be platform-admin, shard-owner or shard-viewer"],
  ["user", { to: " " }, "--to: must name a user, e.g. --to alice"],
  ["user", { to: "a b" }, "--to: a user name has no spaces or '/'"],
  ["shard", { shard: "Alice" }, /^--shard: a shard name is a DNS label/],
  ["length", { forMs: 0 }, "--for: a grant must last more than 0s; ask for e.g. 1h"],
  ["length", { forMs: 9 * H }, "--for: 9h is longer than the maximum 8h; ask for at most 8h"],
] as const) {
  test(`a grant request with a bad ${field} is refused: ${JSON.stringify(request)}`, (t) => {
    const full: GrantRequest = Object.assign(
      { role: "shard-owner", to: "alice", forMs: H, now: NOW },
      request,
    );
    t.throws(() => checkGrantRequest(full), {
      instanceOf: AccessError,
      message,
    });
  });
}

test("a grant request takes short or full role names and computes the expiry", (t) => {
  const short = checkGrantRequest({ role: "shard-viewer", to: "bob", forMs: 2 * H, now: NOW });
  const full = checkGrantRequest({
    role: "shardworks:shard-viewer",
    to: "bob",
    forMs: 2 * H,
    shard: "bob",
    now: NOW,
  });
  t.deepEqual(short, {
    role: ClusterRoleName.ShardViewer,
    user: "bob",
    forMs: 2 * H,
    expiresAt: "2026-11-22T12:00:00.000Z",
  });
  t.is(full.role, ClusterRoleName.ShardViewer);
  t.is(full.shard, "bob");
});

test("grant names are deterministic, DNS-safe and distinct for look-alike users", (t) => {
  t.is(grantName(ClusterRoleName.ShardOwner, "alice"), "jit-shard-owner-alice");
  t.is(
    grantName(ClusterRoleName.ShardOwner, "alice"),
    grantName(ClusterRoleName.ShardOwner, "alice"),
  );
  const a = grantName(ClusterRoleName.PlatformAdmin, "a@x.io");
  const b = grantName(ClusterRoleName.PlatformAdmin, "a.x.io");
  t.regex(a, /^jit-platform-admin-a-x-io-[0-9a-f]{8}$/);
  t.not(a, b);
});

for (const [value, ok] of [
  ["2026-11-22T17:00:00Z", true],
  ["2026-11-22T17:00:00.123+02:00", true],
  ["2026-11-22", false],
  ["tomorrow", false],
  ["2026-13-40T99:00:00Z", false],
  ["", false],
] as const) {
  test(`parseRfc3339(${JSON.stringify(value)}) ${ok ? "parses" : "is refused"}`, (t) => {
    t.is(parseRfc3339(value) !== undefined, ok);
  });
}

test("checkJitExpiry gives the reason, not an exception", (t) => {
  t.deepEqual(checkJitExpiry("2026-11-22T12:00:00Z", NOW, 8 * H), {
    at: new Date("2026-11-22T12:00:00Z"),
  });
  t.deepEqual(checkJitExpiry("2026-11-22T19:00:00Z", NOW, 8 * H), {
    field: "expiresAt",
    reason: "2026-11-22T19:00:00Z is more than 8h ahead; the maximum JIT grant is 8h",
  });
  t.deepEqual(checkJitExpiry("2026-11-22T12:00:00Z", NOW, Infinity), {
    field: "maxDurationMs",
    reason: "Infinity must be a number of milliseconds above 0 and at most 86400000 (24h)",
  });
});
