/** A flag definition as the Flagbase API shows it (server-kept fields are ignored). */
export interface FlagDefinition {
  key: string;
  enabled?: boolean;
  type?: "boolean" | "string" | "number" | "json";
  default_value?: unknown;
  variants?: { key: string; value: unknown; weight?: number }[];
  rules?: unknown[];
  rollout_percentage?: number;
  targeted_users?: string[];
  bucket_by?: string;
  [field: string]: unknown;
}

/** An OpenFeature-style flat context: `{targetingKey, ...attributes}`. */
export type Context = { targetingKey?: string; [attribute: string]: unknown };

export type Reason = "STATIC" | "TARGETING_MATCH" | "SPLIT" | "DISABLED" | "DEFAULT" | "ERROR";

export interface Evaluation<T = unknown> {
  value: T | null;
  variant: string | null;
  reason: Reason | string;
  errorCode: string | null;
}

/** FNV-1a-32 of the UTF-8 bytes of `text`. */
export function fnv1a32(text: string): number;
/** `fnv1a32(flagKey + ":" + bucketValue) % 100`. */
export function bucket(flagKey: string, bucketValue: string): number;
/** The rollout position (0..99 999) of `bucketValue` for `flagKey`. */
export function position(flagKey: string, bucketValue: string): number;
/** Lowercases one code point at a time (the engine's case folding). */
export function fold(s: string): string;

export interface CompiledFlag {
  readonly key: string;
}
export function compileFlag(def: FlagDefinition): CompiledFlag;
export function evaluateFlag(flag: CompiledFlag, ctx: Context): Evaluation;

/** An immutable set of compiled flags. */
export class Snapshot {
  constructor(defs?: Iterable<FlagDefinition>);
  evaluate(key: string, ctx?: Context): Evaluation;
  withFlag(def: FlagDefinition): Snapshot;
  withoutFlag(key: string): Snapshot;
}
