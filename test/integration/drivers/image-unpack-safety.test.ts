/**
 * Unpacking hand-built malicious and edge-case layers: symlink targets are kept verbatim (they
 * resolve inside the sandbox's root), while entries whose path escapes the root are refused.
 */
import { existsSync, lstatSync, mkdtempSync, readFileSync, readlinkSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import test from "ava";
import { ImageError, ImageStore } from "../../../runtime/node-agent/images";
import { buildBusyboxImage, rawTar, type RawTarEntry } from "../../helpers/images";

const root = mkdtempSync(join(tmpdir(), "sw-unpack-safety-"));
test.after.always(() => rmSync(root, { recursive: true, force: true }));

let counter = 0;
async function prepareWith(entries: RawTarEntry[][]) {
  counter += 1;
  const image = buildBusyboxImage(join(root, `layout-${counter}`), {
    rawLayers: entries.map((e) => rawTar(e)),
  });
  return new ImageStore({ cacheDir: join(root, `cache-${counter}`) }).prepare(image);
}

test("absolute symlink targets (Debian's ld-linux, alternatives) are kept verbatim", async (t) => {
  const prepared = await prepareWith([
    [
      { path: "usr/", type: "Directory" },
      { path: "usr/lib/", type: "Directory" },
      { path: "usr/lib/x86_64-linux-gnu/", type: "Directory" },
      { path: "usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2", content: "ld" },
      { path: "lib", type: "SymbolicLink", linkpath: "usr/lib" },
      { path: "lib64/", type: "Directory" },
      {
        path: "lib64/ld-linux-x86-64.so.2",
        type: "SymbolicLink",
        linkpath: "/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2",
      },
      { path: "usr/bin/", type: "Directory" },
      { path: "usr/bin/awk", type: "SymbolicLink", linkpath: "/etc/alternatives/awk" },
    ],
  ]);
  t.is(
    readlinkSync(join(prepared.rootfs, "lib64/ld-linux-x86-64.so.2")),
    "/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2",
  );
  t.is(readlinkSync(join(prepared.rootfs, "usr/bin/awk")), "/etc/alternatives/awk");
  t.is(readlinkSync(join(prepared.rootfs, "lib")), "usr/lib");
  t.is(
    readFileSync(join(prepared.rootfs, "usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2"), "utf8"),
    "ld",
  );
});

test("an entry whose path climbs out with ../ is refused, and nothing is written outside", async (t) => {
  const error = await t.throwsAsync(
    prepareWith([[{ path: "../../escaped-by-dotdot", content: "x" }]]),
    { instanceOf: ImageError },
  );
  t.regex(error?.message ?? "", /\.\.\/\.\.\/escaped-by-dotdot.*escapes the root filesystem/);
  t.false(existsSync(join(root, "escaped-by-dotdot")));
});

test('an entry for the root directory itself (umoci writes "/") is the root, not an escape', async (t) => {
  const prepared = await prepareWith([
    [
      { path: "/", type: "Directory" },
      { path: "./", type: "Directory" },
      { path: "etc/", type: "Directory" },
      { path: "etc/hostname", content: "inside\n" },
    ],
  ]);
  t.is(readFileSync(join(prepared.rootfs, "etc/hostname"), "utf8"), "inside\n");
});

test("an entry with an absolute path is refused", async (t) => {
  const error = await t.throwsAsync(
    prepareWith([[{ path: "/etc/absolute-entry", content: "x" }]]),
    { instanceOf: ImageError },
  );
  t.regex(error?.message ?? "", /\/etc\/absolute-entry.*escapes the root filesystem/);
});

test("a file written through a symlink of the same layer is refused", async (t) => {
  const outside = join(root, "outside-same");
  const error = await t.throwsAsync(
    prepareWith([
      [
        { path: "evil", type: "SymbolicLink", linkpath: outside },
        { path: "evil/pwned", content: "x" },
      ],
    ]),
    { instanceOf: ImageError },
  );
  t.regex(error?.message ?? "", /evil\/pwned.*through the symlink/);
  t.false(existsSync(join(outside, "pwned")));
});

test("a file written through a symlink of a lower layer is refused", async (t) => {
  const outside = join(root, "outside-lower");
  const error = await t.throwsAsync(
    prepareWith([
      [{ path: "evil", type: "SymbolicLink", linkpath: outside }],
      [{ path: "evil/pwned", content: "x" }],
    ]),
    { instanceOf: ImageError },
  );
  t.regex(error?.message ?? "", /evil\/pwned.*through the symlink/);
  t.false(existsSync(join(outside, "pwned")));
});

test("setuid and setgid bits are stripped; other mode bits are kept", async (t) => {
  const prepared = await prepareWith([
    [
      { path: "sbin/", type: "Directory" },
      { path: "sbin/suid", content: "#!/bin/sh\n", mode: 0o4755 },
      { path: "sbin/sgid", content: "#!/bin/sh\n", mode: 0o2755 },
      { path: "sbin/sgid-dir/", type: "Directory", mode: 0o2755 },
      { path: "sticky/", type: "Directory", mode: 0o1777 },
    ],
  ]);
  t.is(lstatSync(join(prepared.rootfs, "sbin/suid")).mode & 0o7777, 0o755);
  t.is(lstatSync(join(prepared.rootfs, "sbin/sgid")).mode & 0o7777, 0o755);
  t.is(lstatSync(join(prepared.rootfs, "sbin/sgid-dir")).mode & 0o7777, 0o755);
  t.is(lstatSync(join(prepared.rootfs, "sticky")).mode & 0o7777, 0o1777);
});

test("files are owned by the unpacking user, not by the uids in the layer", async (t) => {
  const prepared = await prepareWith([[{ path: "owned", content: "x" }]]);
  t.is(lstatSync(join(prepared.rootfs, "owned")).uid, process.getuid?.() ?? 0);
});

test("a symlink replaced by a file later in the same layer ends up a file; whiteouts still apply", async (t) => {
  const prepared = await prepareWith([
    [
      { path: "etc/", type: "Directory" },
      { path: "etc/gone", content: "lower" },
      { path: "swap", type: "SymbolicLink", linkpath: "/etc/passwd" },
      { path: "swap", content: "now a file" },
    ],
    [{ path: "etc/.wh.gone", content: "" }],
  ]);
  t.is(readFileSync(join(prepared.rootfs, "swap"), "utf8"), "now a file");
  t.false(existsSync(join(prepared.rootfs, "etc/gone")));
  t.false(existsSync(join(prepared.rootfs, "etc/.wh.gone")));
});

test("a layer that ends right after its last file's data (umoci 0.4.7's, which containerd runs) unpacks whole; one cut inside a file fails", async (t) => {
  // header (512) + "ok\n" (3): no padding to 512 bytes, no two zero blocks.
  const whole = rawTar([
    { path: "www/", type: "Directory" },
    { path: "www/healthz", content: "ok\n" },
  ]);
  const unended = whole.subarray(0, whole.length - 1024 - 509);
  counter += 1;
  const image = buildBusyboxImage(join(root, `layout-${counter}`), { rawLayers: [unended] });
  const store = new ImageStore({ cacheDir: join(root, `cache-${counter}`) });
  const ended = await store.prepare(image);
  t.is(readFileSync(join(ended.rootfs, "www/healthz"), "utf8"), "ok\n");
  // Cut inside the file's data: the entry is incomplete, and the unpack says so.
  counter += 1;
  const cut = buildBusyboxImage(join(root, `layout-${counter}`), {
    rawLayers: [unended.subarray(0, unended.length - 1)],
  });
  const error = await t.throwsAsync(
    new ImageStore({ cacheDir: join(root, `cache-${counter}`) }).prepare(cut),
  );
  t.true(error instanceof ImageError, String(error));
  t.regex(error?.message ?? "", /cannot unpack .*TAR_BAD_ARCHIVE|Truncated/);
});
