import { pino } from "pino";

/** The part of a pino logger storage uses: structured fields first, message second. */
export interface StorageLogger {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
  error(obj: object, msg: string): void;
}

/** Used when the caller passes no logger: warnings and errors still reach stderr. */
export function defaultStorageLogger(): StorageLogger {
  return pino({ name: "storage", level: "warn" }, pino.destination(2));
}
