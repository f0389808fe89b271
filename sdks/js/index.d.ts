import type { Context, Evaluation, FlagDefinition } from "./engine.js";
export type { Context, Evaluation, FlagDefinition, Reason } from "./engine.js";
export { Snapshot, fnv1a32, bucket, position, compileFlag, evaluateFlag, fold } from "./engine.js";

export type ConnectionState = "connecting" | "connected" | "disconnected" | "rejected" | "closed";

export interface Change {
  key: string;
  kind: "updated" | "deleted";
  /** The change's number in the server's commit sequence (local mode); null in client mode. */
  seq: number | null;
}

/** Local mode: definitions. Client mode: evaluations for the context. */
export type Bootstrap =
  | { seq?: number; flags: FlagDefinition[] }
  | { flags: (Evaluation & { key: string })[] };

export interface FlagbaseOptions {
  /** e.g. "http://localhost:8080" */
  baseUrl: string;
  /** A server token (local mode) or a client token (client mode). */
  token: string;
  /** "local" (default): evaluate in process; "client": OFREP values for one context. */
  mode?: "local" | "client";
  /** Client mode: the context the values are for. */
  context?: Context;
  /** What `snapshot()` returned earlier: serves when the server cannot be reached at init. */
  bootstrap?: Bootstrap;
  /** A fetch implementation (default: globalThis.fetch). */
  fetch?: typeof fetch;
  /** How long init waits for the first answer, ms (10 000). */
  initTimeout?: number;
  /** First reconnect delay, ms (250), unless the server sent a `retry:` hint (then that, up to backoffMax); doubles per failure, drawn from its upper half. */
  backoffMin?: number;
  /** Longest reconnect delay, ms (30 000). */
  backoffMax?: number;
  /** A stream silent this long is replaced, ms (45 000; heartbeats come every 15 s). */
  idleTimeout?: number;
}

export class FlagbaseError extends Error {
  readonly status: number;
  readonly code: string;
}

export class FlagbaseClient {
  constructor(options: FlagbaseOptions);
  init(): Promise<this>;
  readonly state: ConnectionState;
  /** Sequence number of the last change applied (local mode). */
  readonly seq: number;
  evaluate(key: string, ctx?: Context): Evaluation;
  isEnabled(key: string, ctx?: Context): boolean;
  variant(key: string, ctx?: Context): string | null;
  value<T = unknown>(key: string, ctx?: Context, fallback?: T): T | null;
  onChange(f: (change: Change) => void): () => void;
  onStateChange(f: (state: ConnectionState) => void): () => void;
  keys(): string[];
  snapshot(): Bootstrap;
  /** Client mode: switch context and refetch. */
  setContext(ctx: Context): Promise<void>;
  refetch(): Promise<void>;
  close(): void;
}

export function createClient(options: FlagbaseOptions): FlagbaseClient;

export class SseParser {
  feed(chunk: Uint8Array | string): {
    events: { event: string; data: string; id: string | null }[];
    retry: number | null;
    comment: boolean;
  };
}
