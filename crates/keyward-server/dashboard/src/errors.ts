import { ApiError } from './api';

/** A failure as one line: the catalog message with its code and request id. */
export function describeError(e: unknown): string {
  return e instanceof ApiError ? e.describe() : e instanceof Error ? e.message : String(e);
}
