/** How the runtime's processes stop: close cleanly on SIGTERM (Kubernetes) or SIGINT (Ctrl-C). */
import { logger } from "./logger";

/**
 * On SIGTERM or SIGINT, run `close` once (however many signals come), then exit: 0 when it
 * closed, 1 (after logging why) when it failed. `what` names the process in that log line.
 */
export function closeOnSignals(what: string, close: () => Promise<void>): void {
  let closing = false;
  const stop = (): void => {
    if (closing) return;
    closing = true;
    close().then(
      () => process.exit(0),
      (error: unknown) => {
        logger.error({ err: error }, `${what} did not stop cleanly`);
        process.exit(1);
      },
    );
  };
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);
}
