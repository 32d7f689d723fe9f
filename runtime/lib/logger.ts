/** The one pino logger of every runtime process; child loggers add structured fields. */
import pino from "pino";

export const logger = pino({
  level: process.env.SHARDWORKS_LOG_LEVEL ?? (process.env.NODE_ENV === "test" ? "warn" : "info"),
  base: { service: process.env.SHARDWORKS_SERVICE ?? "shardworks" },
});
export type Logger = pino.Logger;
