import test from "ava";
import { changedMiddle } from "../../runtime/lib/lists";

test("changedMiddle: the part between the shared start and end, by identity", (t) => {
  const [a, b, c, d] = [{}, {}, {}, {}];
  t.deepEqual(changedMiddle([a, b, c], [a, b, c]), { start: 3, endBefore: 3, endAfter: 3 });
  t.deepEqual(changedMiddle([a, c], [a, b, c]), { start: 1, endBefore: 1, endAfter: 2 });
  t.deepEqual(changedMiddle([a, b, c], [a, c]), { start: 1, endBefore: 2, endAfter: 1 });
  t.deepEqual(changedMiddle([a, b, c], [a, d, c]), { start: 1, endBefore: 2, endAfter: 2 });
  t.deepEqual(changedMiddle([], [a]), { start: 0, endBefore: 0, endAfter: 1 });
  // An equal object is not the same one.
  t.deepEqual(changedMiddle([a, { x: 1 }], [a, { x: 1 }]), { start: 1, endBefore: 2, endAfter: 2 });
  // Repeats: the start is taken first, the end never overlaps it.
  t.deepEqual(changedMiddle([a, a], [a, a, a]), { start: 2, endBefore: 2, endAfter: 3 });
});
