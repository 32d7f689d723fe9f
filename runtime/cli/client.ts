/**
 * The scheduler client of the CLI and `npm start`: the one client (`contract/client.ts`), whose
 * unreachable error says where the CLI takes the address from.
 */
import { ApiError, SchedulerClient } from "../../contract/client";

/** A client of the scheduler at `base`, as the CLI calls it. */
export function cliClient(base: string, token: string): SchedulerClient {
  return new SchedulerClient(base, token, {
    unreachable: (at, error) =>
      new ApiError(
        0,
        "unreachable",
        `cannot reach the scheduler at ${at} (${(error as Error).message}); check --api / SHARDWORKS_API`,
        undefined,
        { cause: error },
      ),
  });
}
