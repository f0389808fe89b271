// The Flagbase rule engine in JavaScript: compiles flag definitions once and
// evaluates them for a context, exactly as crates/flagbase-engine does (the
// normative description is docs/engine.md; spec/ holds the shared vectors).
//
// Two things differ from a naive port on purpose:
// * hashing works on the UTF-8 bytes of the input, not UTF-16 code units,
//   so a non-ASCII user id lands in the same bucket as on the server;
// * numbers compare as exact decimals (never through doubles), so two long
//   integer ids never compare equal by rounding.

const FNV_OFFSET = 0x811c9dc5;
const FNV_PRIME = 0x01000193;

const mix = (h, b) => Math.imul(h ^ b, FNV_PRIME) >>> 0;

/**
 * FNV-1a-32 of the UTF-8 bytes of `text`, continuing from `h`. The bytes are
 * produced inline (no TextEncoder allocation per check); a lone surrogate
 * hashes as U+FFFD, as TextEncoder would encode it.
 */
function fnvText(h, text) {
  for (let i = 0; i < text.length; i++) {
    let c = text.charCodeAt(i);
    if (c < 0x80) {
      h = mix(h, c);
      continue;
    }
    if (c < 0x800) {
      h = mix(mix(h, 0xc0 | (c >> 6)), 0x80 | (c & 0x3f));
      continue;
    }
    if (c >= 0xd800 && c <= 0xdfff) {
      const next = text.charCodeAt(i + 1);
      if (c <= 0xdbff && next >= 0xdc00 && next <= 0xdfff) {
        c = 0x10000 + ((c - 0xd800) << 10) + (next - 0xdc00);
        i++;
        h = mix(h, 0xf0 | (c >> 18));
        h = mix(h, 0x80 | ((c >> 12) & 0x3f));
        h = mix(h, 0x80 | ((c >> 6) & 0x3f));
        h = mix(h, 0x80 | (c & 0x3f));
        continue;
      }
      c = 0xfffd;
    }
    h = mix(h, 0xe0 | (c >> 12));
    h = mix(h, 0x80 | ((c >> 6) & 0x3f));
    h = mix(h, 0x80 | (c & 0x3f));
  }
  return h;
}

/** FNV-1a-32 of the UTF-8 bytes of `text`. */
export function fnv1a32(text) {
  return fnvText(FNV_OFFSET, text);
}

const FRACTION_SUFFIX = ":fraction";

/** The integer bucket (0..99) of `bucketValue` for `flagKey`. */
export function bucket(flagKey, bucketValue) {
  return fnv1a32(`${flagKey}:${bucketValue}`) % 100;
}

/** The position (0..99 999) of `bucketValue` for `flagKey`. */
export function position(flagKey, bucketValue) {
  return positionOf(fnvText(FNV_OFFSET, `${flagKey}:${bucketValue}`), true);
}

function positionOf(h, fraction) {
  const sub = fraction ? fnvText(h, FRACTION_SUFFIX) % 1000 : 0;
  return (h % 100) * 1000 + sub;
}

// ---------------------------------------------------------------------------
// Text: Unicode lowercase one code point at a time (Rust's char::to_lowercase,
// so a word-final sigma is not special-cased).

const ASCII = /^[\x00-\x7f]*$/;

// Rules testing one attribute fold the same context string again and again
// within one evaluation: the last answer is kept.
let lastIn = "";
let lastOut = "";

export function fold(s) {
  if (s === lastIn) return lastOut;
  let out;
  if (ASCII.test(s)) {
    out = s.toLowerCase();
  } else {
    out = "";
    for (const ch of s) out += ch.toLowerCase();
  }
  lastIn = s;
  lastOut = out;
  return out;
}

// ---------------------------------------------------------------------------
// Exact decimals: ±0.D × 10^exp with D the significant digits (no leading or
// trailing zeros); zero has no digits. `exp` is a BigInt so huge exponents
// compare exactly.

const DECIMAL = /^([+-]?)(\d*)(?:\.(\d*))?(?:[eE]([+-]?\d+))?$/;
const I64_MIN = -(2n ** 63n);
const I64_MAX = 2n ** 63n - 1n;
const ZERO = Object.freeze({ neg: false, exp: 0n, digits: "" });

/** Parses a numeric string (docs/engine.md "Numbers"), or returns null. */
export function parseDecimal(s) {
  const m = DECIMAL.exec(s.trim());
  if (!m) return null;
  const [, sign, int = "", frac = "", exponent] = m;
  if (int === "" && frac === "") return null;
  let exp = 0n;
  if (exponent !== undefined) {
    exp = BigInt(exponent);
    if (exp < I64_MIN || exp > I64_MAX) return null;
  }
  const intDigits = int.replace(/^0+/, "");
  let digits;
  let point;
  if (intDigits === "") {
    const lead = frac.length - frac.replace(/^0+/, "").length;
    digits = frac.slice(lead);
    point = -BigInt(lead);
  } else {
    digits = intDigits + frac;
    point = BigInt(intDigits.length);
  }
  digits = digits.replace(/0+$/, "");
  if (digits === "") return ZERO;
  const e = point + exp;
  if (e < I64_MIN || e > I64_MAX) return null;
  return { neg: sign === "-", exp: e, digits };
}

/** The exact decimal of a JSON number as JavaScript holds it. */
export function decimalOfNumber(n) {
  if (!Number.isFinite(n)) return null;
  // String(n) is the shortest text that reads back as n ("0.1", "1e+21").
  return parseDecimal(String(n));
}

function cmpMagnitude(a, b) {
  if (a.digits === "" || b.digits === "") {
    return (a.digits === "" ? 0 : 1) - (b.digits === "" ? 0 : 1);
  }
  if (a.exp !== b.exp) return a.exp < b.exp ? -1 : 1;
  // Missing digits are zeros, and digit strings have no trailing zeros, so
  // plain string order is numeric order here.
  return a.digits < b.digits ? -1 : a.digits > b.digits ? 1 : 0;
}

export function compareDecimal(a, b) {
  if (a.neg !== b.neg) return a.neg ? -1 : 1;
  const m = cmpMagnitude(a, b);
  return a.neg ? -m : m;
}

function decimalOf(item) {
  if (typeof item === "string") return parseDecimal(item);
  if (typeof item === "number") return decimalOfNumber(item);
  return null;
}

// ---------------------------------------------------------------------------
// SemVer 2.0 (precedence; build metadata ignored) and RFC 3339 instants.

const SEMVER =
  /^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(?:-((?:0|[1-9]\d*|\d*[A-Za-z-][0-9A-Za-z-]*)(?:\.(?:0|[1-9]\d*|\d*[A-Za-z-][0-9A-Za-z-]*))*))?(?:\+([0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?$/;
const U64_MAX = 2n ** 64n - 1n;

export function parseSemver(s) {
  let t = s.trim();
  if (t.startsWith("v") || t.startsWith("V")) t = t.slice(1);
  const m = SEMVER.exec(t);
  if (!m) return null;
  const parts = [BigInt(m[1]), BigInt(m[2]), BigInt(m[3])];
  if (parts.some((p) => p > U64_MAX)) return null;
  return { parts, pre: m[4] ? m[4].split(".") : [] };
}

function cmpBig(a, b) {
  return a < b ? -1 : a > b ? 1 : 0;
}

function cmpIdentifier(a, b) {
  const an = /^\d+$/.test(a);
  const bn = /^\d+$/.test(b);
  if (an && bn) return cmpBig(BigInt(a), BigInt(b));
  if (an !== bn) return an ? -1 : 1;
  return a < b ? -1 : a > b ? 1 : 0;
}

export function compareSemver(a, b) {
  for (let i = 0; i < 3; i++) {
    const c = cmpBig(a.parts[i], b.parts[i]);
    if (c) return c;
  }
  if (!a.pre.length || !b.pre.length) return (b.pre.length ? 1 : 0) - (a.pre.length ? 1 : 0);
  for (let i = 0; i < Math.min(a.pre.length, b.pre.length); i++) {
    const c = cmpIdentifier(a.pre[i], b.pre[i]);
    if (c) return c;
  }
  return a.pre.length - b.pre.length;
}

const RFC3339 =
  /^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?(?:([Zz])|([+-])(\d{2}):(\d{2}))$/;

function daysIn(year, month) {
  if (month === 2) return year % 4 === 0 && (year % 100 !== 0 || year % 400 === 0) ? 29 : 28;
  return [4, 6, 9, 11].includes(month) ? 30 : 31;
}

/** An RFC 3339 timestamp as [seconds since the epoch, nanoseconds], or null. */
export function parseTime(s) {
  const m = RFC3339.exec(s.trim());
  if (!m) return null;
  const [y, mo, d, h, mi, sec] = m.slice(1, 7).map(Number);
  if (mo < 1 || mo > 12 || d < 1 || d > daysIn(y, mo) || h > 23 || mi > 59 || sec > 60) {
    return null;
  }
  let offset = 0;
  if (!m[8]) {
    const oh = Number(m[10]);
    const om = Number(m[11]);
    if (oh > 23 || om > 59) return null;
    offset = (oh * 60 + om) * 60 * (m[9] === "-" ? -1 : 1);
  }
  // A leap second (:60) is the last second of the minute with nanoseconds
  // past 10^9, as chrono keeps it.
  const leap = sec === 60 ? 1 : 0;
  const base = Date.UTC(y, mo - 1, d, h, mi, sec - leap);
  const date = new Date(base);
  date.setUTCFullYear(y); // Date.UTC maps years 0..99 to 1900..1999
  const secs = date.getTime() / 1000 - offset;
  const nanos = Number((m[7] || "").padEnd(9, "0").slice(0, 9)) + leap * 1e9;
  return [secs, nanos];
}

function compareTime(a, b) {
  return a[0] !== b[0] ? (a[0] < b[0] ? -1 : 1) : a[1] - b[1];
}

// ---------------------------------------------------------------------------
// Regular expressions: Rust `regex` syntax mapped onto JavaScript's where the
// two agree (leading inline flags become RegExp flags). A pattern JavaScript
// cannot read never matches here (the server accepted it; docs/engine.md
// says Rust syntax is the reference).

function compileRegex(pattern) {
  let flags = "u";
  let source = pattern;
  const lead = /^\(\?([imsx]+)\)/.exec(pattern);
  if (lead && !lead[1].includes("x")) {
    for (const f of new Set(lead[1])) flags += f;
    source = pattern.slice(lead[0].length);
  }
  try {
    return new RegExp(source, flags);
  } catch {
    return null;
  }
}

// ---------------------------------------------------------------------------
// Operators.

const USER_ID_ATTRIBUTES = ["targetingKey", "userId"];
const NEGATED = { not_equals: "equals", not_in: "in", not_contains: "contains", not_exists: "exists" };
const OPERATORS = new Set([
  "equals", "not_equals", "contains", "in", "not_in", "starts_with", "ends_with", "matches",
  "gt", "gte", "lt", "lte", "semver_eq", "semver_gt", "semver_lt", "before", "after",
  "exists", "not_exists", "not_contains",
]);

function isScalar(v) {
  return typeof v === "string" || typeof v === "number" || typeof v === "boolean";
}

/** A pre-folded operand compared by the engine's equality. */
function scalar(v) {
  if (typeof v === "string") return { lower: fold(v), num: parseDecimal(v) };
  if (typeof v === "number") return { lower: String(v), num: decimalOfNumber(v) };
  return { lower: v ? "true" : "false", num: null };
}

function scalarEquals(s, item) {
  switch (typeof item) {
    case "string":
      if (fold(item) === s.lower) return true;
      break;
    case "boolean":
      return s.lower === (item ? "true" : "false");
    case "number":
      break;
    default:
      return false;
  }
  if (s.num === null) return false;
  const d = decimalOf(item);
  return d !== null && compareDecimal(d, s.num) === 0;
}

function fail(field, reason) {
  const e = new Error(`${field}: ${reason}`);
  e.field = field;
  throw e;
}

/** Compiles one condition into a predicate over the context. */
function compileCondition(path, attribute, operator, value) {
  if (typeof attribute !== "string" || attribute === "") fail(`${path}.attribute`, "required");
  if (typeof operator !== "string") fail(`${path}.operator`, "required");
  if (!OPERATORS.has(operator)) fail(`${path}.operator`, `unknown operator ${JSON.stringify(operator)}`);
  const negated = operator in NEGATED;
  const positive = NEGATED[operator] ?? operator;
  const userId = USER_ID_ATTRIBUTES.includes(attribute);
  let test;
  if (positive === "exists") {
    test = null;
  } else {
    if (value === undefined || value === null) fail(`${path}.value`, `required for operator ${operator}`);
    const needString = () => {
      if (typeof value !== "string") fail(`${path}.value`, "expected a string");
      return value;
    };
    switch (positive) {
      case "equals": {
        if (!isScalar(value)) fail(`${path}.value`, "expected a string, number or boolean");
        const s = scalar(value);
        test = (item) => scalarEquals(s, item);
        break;
      }
      case "contains": {
        if (!isScalar(value)) fail(`${path}.value`, "expected a string, number or boolean");
        const s = scalar(value);
        test = (item) => typeof item === "string" && fold(item).includes(s.lower);
        test.member = (item) => scalarEquals(s, item);
        break;
      }
      case "in": {
        let items;
        if (typeof value === "string") {
          items = value.split(",").map((x) => x.trim()).filter((x) => x !== "");
        } else if (Array.isArray(value)) {
          if (!value.every(isScalar)) fail(`${path}.value`, "expected scalars");
          items = value;
        } else {
          fail(`${path}.value`, "expected an array or a comma-separated string");
        }
        if (items.length === 0) fail(`${path}.value`, "list must not be empty");
        const list = items.map(scalar);
        test = (item) => list.some((s) => scalarEquals(s, item));
        break;
      }
      case "starts_with": {
        const t = fold(needString());
        test = (item) => typeof item === "string" && fold(item).startsWith(t);
        break;
      }
      case "ends_with": {
        const t = fold(needString());
        test = (item) => typeof item === "string" && fold(item).endsWith(t);
        break;
      }
      case "matches": {
        const re = compileRegex(needString());
        test = (item) => re !== null && typeof item === "string" && re.test(item);
        break;
      }
      case "gt":
      case "gte":
      case "lt":
      case "lte": {
        const operand =
          typeof value === "number" ? decimalOfNumber(value) : typeof value === "string" ? parseDecimal(value) : null;
        if (operand === null) fail(`${path}.value`, "expected a number");
        const accept = { gt: [1], gte: [1, 0], lt: [-1], lte: [-1, 0] }[positive];
        test = (item) => {
          const d = decimalOf(item);
          return d !== null && accept.includes(compareDecimal(d, operand));
        };
        break;
      }
      case "semver_eq":
      case "semver_gt":
      case "semver_lt": {
        const v = parseSemver(needString());
        if (v === null) fail(`${path}.value`, "invalid semantic version");
        const want = { semver_eq: 0, semver_gt: 1, semver_lt: -1 }[positive];
        test = (item) => {
          const x = typeof item === "string" ? parseSemver(item) : null;
          return x !== null && Math.sign(compareSemver(x, v)) === want;
        };
        break;
      }
      case "before":
      case "after": {
        const t = parseTime(needString());
        if (t === null) fail(`${path}.value`, "invalid RFC 3339 timestamp");
        const want = positive === "before" ? -1 : 1;
        test = (item) => {
          const x = typeof item === "string" ? parseTime(item) : null;
          return x !== null && Math.sign(compareTime(x, t)) === want;
        };
        break;
      }
    }
  }
  return (ctx) => {
    let v;
    if (userId) {
      v = userIdOf(ctx);
    } else {
      v = Object.prototype.hasOwnProperty.call(ctx, attribute) ? ctx[attribute] : undefined;
      if (attribute === "targetingKey" || v === null) v = undefined;
    }
    if (v === undefined) return negated && test === null;
    let hit;
    if (test === null) hit = true;
    else if (Array.isArray(v)) hit = v.some(test.member ?? test);
    else hit = test(v);
    return hit !== negated;
  };
}

/** The user id: a non-empty string `targetingKey`, else `userId`. */
export function userIdOf(ctx) {
  for (const name of USER_ID_ATTRIBUTES) {
    const v = Object.prototype.hasOwnProperty.call(ctx, name) ? ctx[name] : undefined;
    if (typeof v === "string" && v !== "") return v;
  }
  return undefined;
}

// ---------------------------------------------------------------------------
// Numbers as bucket values: the text serde_json writes for the number the
// server would read (integers digit for digit; floats in ryu's shortest form:
// "1.5", "1e20", "1.0e-7" style rules below).

function numberText(n) {
  if (Number.isInteger(n) && n >= -(2 ** 63) && n < 2 ** 64) return BigInt(n).toString();
  const [mant, e] = n.toExponential().split("e");
  const neg = mant.startsWith("-");
  const digits = mant.replace("-", "").replace(".", "");
  const kk = Number(e) + 1; // position of the decimal point
  const len = digits.length;
  let out;
  if (kk >= len && kk <= 16) out = `${digits}${"0".repeat(kk - len)}.0`;
  else if (kk > 0 && kk <= 16) out = `${digits.slice(0, kk)}.${digits.slice(kk)}`;
  else if (kk > -5 && kk <= 0) out = `0.${"0".repeat(-kk)}${digits}`;
  else if (len === 1) out = `${digits}e${kk - 1}`;
  else out = `${digits[0]}.${digits.slice(1)}e${kk - 1}`;
  return neg ? `-${out}` : out;
}

function bucketValue(ctx, by) {
  if (by === null) return userIdOf(ctx);
  const v = Object.prototype.hasOwnProperty.call(ctx, by) ? ctx[by] : undefined;
  if (typeof v === "string") return v === "" ? undefined : v;
  if (typeof v === "number") return Number.isFinite(v) ? numberText(v) : undefined;
  if (typeof v === "boolean") return v ? "true" : "false";
  return undefined;
}

// ---------------------------------------------------------------------------
// Flags.

const TYPES = {
  boolean: (v) => typeof v === "boolean",
  string: (v) => typeof v === "string",
  number: (v) => typeof v === "number",
  json: (v) => v !== null && v !== undefined,
};

function toMilli(p, field) {
  if (typeof p !== "number" || !Number.isFinite(p) || p < 0 || p > 100) fail(field, "must be between 0 and 100");
  const scaled = p * 1000;
  const rounded = Math.round(scaled);
  if (Math.abs(scaled - rounded) > 1e-6) fail(field, "at most 3 decimal places are allowed");
  return rounded;
}

/**
 * Compiles one flag definition (as the API shows it; server-kept fields are
 * ignored). Throws an Error naming the field when the definition is invalid.
 */
export function compileFlag(def) {
  const key = def.key;
  if (typeof key !== "string" || !/^[A-Za-z0-9._-]{1,128}$/.test(key)) fail("key", "invalid flag key");
  const type = def.type ?? "boolean";
  const accepts = TYPES[type];
  if (!accepts) fail("type", `unknown variant \`${type}\``);
  let defaultValue = def.default_value ?? null;
  if (defaultValue === null) {
    if (type !== "boolean") fail("default_value", `required for ${type} flags`);
    defaultValue = false;
  } else if (!accepts(defaultValue)) fail("default_value", `expected ${type}`);
  const disabledValue = type === "boolean" ? false : defaultValue;

  const variants = (def.variants ?? []).map((v, i) => {
    if (!accepts(v.value)) fail(`variants[${i}].value`, `expected ${type}`);
    return { value: v.value, variant: v.key, weight: v.weight };
  });
  const weighted = variants.some((v) => v.weight !== undefined && v.weight !== null);
  const on = variants.length ? variants[0] : type === "boolean" ? { value: true, variant: null } : null;

  let split = null;
  if (def.rollout_percentage !== undefined && def.rollout_percentage !== null) {
    const threshold = toMilli(def.rollout_percentage, "rollout_percentage");
    split = { kind: "rollout", threshold, fraction: threshold % 1000 !== 0 };
  } else if (weighted) {
    let acc = 0;
    const bounds = variants.map((v, i) => (acc += toMilli(v.weight, `variants[${i}].weight`)));
    if (acc !== 100000) fail("variants", "weights must sum to 100");
    split = { kind: "weighted", bounds, fraction: bounds.some((b) => b % 1000 !== 0) };
  }

  const targeted = new Set(def.targeted_users ?? []);
  const rules = (def.rules ?? []).map((rule, i) => {
    const path = `rules[${i}]`;
    const conds = rule.conditions
      ? rule.conditions.map((c, j) => compileCondition(`${path}.conditions[${j}]`, c.attribute, c.operator, c.value))
      : [compileCondition(path, rule.attribute, rule.operator, rule.value)];
    if (rule.variant === undefined || rule.variant === null) fail(`${path}.variant`, "required");
    let served;
    if (variants.length) {
      served = variants.find((v) => v.variant === rule.variant);
      if (!served) fail(`${path}.variant`, `unknown variant ${JSON.stringify(rule.variant)}`);
    } else {
      if (!accepts(rule.variant)) fail(`${path}.variant`, `expected ${type}`);
      served = { value: rule.variant, variant: null };
    }
    return { priority: rule.priority ?? 0, index: i, conds, served };
  });
  // Ascending priority, ties in list order.
  rules.sort((a, b) => a.priority - b.priority || a.index - b.index);

  const bucketBy =
    def.bucket_by === undefined || def.bucket_by === null || USER_ID_ATTRIBUTES.includes(def.bucket_by)
      ? null
      : def.bucket_by;
  return {
    key,
    type,
    enabled: def.enabled === true,
    defaultValue,
    disabledValue,
    on,
    targeted,
    rules,
    split,
    variants,
    bucketBy,
    seed: fnvText(FNV_OFFSET, `${key}:`),
    isStatic: rules.length === 0 && targeted.size === 0 && split === null,
  };
}

function result(value, variant, reason) {
  return { value, variant, reason, errorCode: null };
}

/** Evaluates a compiled flag for `ctx` (steps 2–6 of docs/engine.md). */
export function evaluateFlag(f, ctx) {
  if (!f.enabled) return result(f.disabledValue, null, "DISABLED");
  if (f.on && f.targeted.size) {
    const uid = userIdOf(ctx);
    if (uid !== undefined && f.targeted.has(uid)) return result(f.on.value, f.on.variant, "TARGETING_MATCH");
  }
  rules: for (const rule of f.rules) {
    for (const c of rule.conds) if (!c(ctx)) continue rules;
    return result(rule.served.value, rule.served.variant, "TARGETING_MATCH");
  }
  if (f.split) {
    const bv = bucketValue(ctx, f.bucketBy);
    if (bv !== undefined && (f.split.kind === "weighted" || f.split.threshold > 0)) {
      const pos = positionOf(fnvText(f.seed, bv), f.split.fraction);
      if (f.split.kind === "rollout") {
        if (f.on && pos < f.split.threshold) return result(f.on.value, f.on.variant, "SPLIT");
      } else {
        const i = f.split.bounds.findIndex((b) => b > pos);
        if (i >= 0) return result(f.variants[i].value, f.variants[i].variant, "SPLIT");
      }
    }
  }
  return result(f.defaultValue, null, f.isStatic ? "STATIC" : "DEFAULT");
}

const NOT_FOUND = Object.freeze({ value: null, variant: null, reason: "ERROR", errorCode: "FLAG_NOT_FOUND" });

/** An immutable set of compiled flags. */
export class Snapshot {
  /** @param {Iterable<object>} defs flag definitions */
  constructor(defs = []) {
    this.flags = new Map();
    for (const d of defs) {
      const f = compileFlag(d);
      if (this.flags.has(f.key)) fail("key", "duplicate flag key");
      this.flags.set(f.key, f);
    }
  }

  evaluate(key, ctx = {}) {
    const f = this.flags.get(key);
    return f ? evaluateFlag(f, ctx ?? {}) : NOT_FOUND;
  }

  /** A snapshot with `def` added or replaced (the others shared). */
  withFlag(def) {
    const next = Object.create(Snapshot.prototype);
    next.flags = new Map(this.flags);
    const f = compileFlag(def);
    next.flags.set(f.key, f);
    return next;
  }

  /** A snapshot without flag `key`. */
  withoutFlag(key) {
    const next = Object.create(Snapshot.prototype);
    next.flags = new Map(this.flags);
    next.flags.delete(key);
    return next;
  }
}
