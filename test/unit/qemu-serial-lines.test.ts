import test from "ava";
import { SerialLines } from "../../runtime/node-agent/drivers/qemu/serial-lines";

test("lines come out whole, across chunks, without \\r", (t) => {
  const lines = new SerialLines(100, () => t.fail("nothing is dropped"));
  t.deepEqual(lines.push("\x1eR\r\n\x1eO hel"), ["\x1eR"]);
  t.deepEqual(lines.push("lo\n\x1eX0\nrest"), ["\x1eO hello", "\x1eX0"]);
  t.deepEqual(lines.push("\n"), ["rest"]);
});

test("an unfinished line longer than the bound is dropped and reported; later lines still come", (t) => {
  const dropped: number[] = [];
  const lines = new SerialLines(8, (n) => dropped.push(n));
  t.deepEqual(lines.push("0123456"), []);
  t.deepEqual(dropped, []);
  t.deepEqual(lines.push("789abc"), []);
  t.deepEqual(dropped, [13], "13 characters without a newline were dropped");
  t.deepEqual(
    lines.push("tail\nnext\n"),
    ["tail", "next"],
    "the cut line's tail, then whole lines",
  );
});
