/** The driver factory: names, and the best-available probe order on this host. */
import test from "ava";
import { Driver } from "../../../contract/model";
import {
  bestAvailableDriver,
  createDriver,
  driverPreference,
  registeredDrivers,
} from "../../../runtime/node-agent/drivers";

test("bestAvailableDriver tries firecracker, then qemu, then process, and says why it skipped each", async (t) => {
  t.deepEqual(driverPreference, [Driver.Firecracker, Driver.Qemu, Driver.Process]);
  const best = await bestAvailableDriver();
  t.teardown(() => best.driver.close());
  t.true(registeredDrivers().includes(best.driver.name));
  const firecracker = best.skipped.find((s) => s.driver === Driver.Firecracker);
  if (best.driver.name !== Driver.Firecracker)
    t.truthy(firecracker?.reason, "a skipped driver has a reason");
  t.is(best.capabilities.driver, best.driver.name);
  console.log(`best driver here: ${best.driver.name}; skipped: ${JSON.stringify(best.skipped)}`);
});

test("createDriver builds a registered driver by name", (t) => {
  const driver = createDriver(Driver.Process);
  t.is(driver.name, Driver.Process);
});
