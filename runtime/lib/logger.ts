/** The one pino logger of every runtime process; child loggers add structured fields. */
import pino from "pino";
import { Env } from "../../contract/names";

const options: pino.LoggerOptions = {
  level: process.env[Env.logLevel] ?? (process.env.NODE_ENV === "test" ? "warn" : "info"),
  base: { service: process.env[Env.service] ?? "shardworks" },
};

/**
 * JSON lines on stdout (what a pod's log collector wants), or appended to `SHARDWORKS_LOG_FILE`
 * (`npm start` sets it, so that its own output stays readable; child processes inherit it).
 */
export const logger = process.env[Env.logFile]
  ? pino(options, pino.destination({ dest: process.env[Env.logFile], append: true, mkdir: true }))
  : pino(options);
export type Logger = pino.Logger;
