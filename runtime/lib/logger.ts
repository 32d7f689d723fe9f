/** The one pino logger of every runtime process; child loggers add structured fields. */
import pino from "pino";

const options: pino.LoggerOptions = {
  level: process.env.SHARDWORKS_LOG_LEVEL ?? (process.env.NODE_ENV === "test" ? "warn" : "info"),
  base: { service: process.env.SHARDWORKS_SERVICE ?? "shardworks" },
};

/**
 * JSON lines on stdout (what a pod's log collector wants), or appended to `SHARDWORKS_LOG_FILE`
 * (`npm start` sets it, so that its own output stays readable; child processes inherit it).
 */
export const logger = process.env.SHARDWORKS_LOG_FILE
  ? pino(
      options,
      pino.destination({ dest: process.env.SHARDWORKS_LOG_FILE, append: true, mkdir: true }),
    )
  : pino(options);
export type Logger = pino.Logger;
