#!/usr/bin/env python3
"""Independent reference implementation of Flagbase bucketing.

Generates spec/evaluation/{hashing,rollout,variants}.json. It shares no code
with the Rust engine, so the vectors are a genuine cross-check rather than a
recording of whatever the engine happens to do. Run from anywhere:

    python3 spec/tools/reference.py
"""
import json
import os

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "evaluation")


def fnv1a32(data: bytes) -> int:
    h = 0x811C9DC5
    for b in data:
        h ^= b
        h = (h * 0x01000193) & 0xFFFFFFFF
    return h


def position(flag_key: str, bucket_value: str) -> int:
    base = (flag_key + ":" + bucket_value).encode("utf-8")
    bucket = fnv1a32(base) % 100
    sub = fnv1a32(base + b":fraction") % 1000
    return bucket * 1000 + sub


def milli(p) -> int:
    return round(p * 1000)


def hashing():
    pairs = [
        ("new-checkout-flow", "user-42"),
        ("new-checkout-flow", "user-1"),
        ("new-checkout-flow", "user-3"),
        ("new-checkout-flow", ""),
        ("a", "b"),
        ("dark-mode", "42"),
        ("dark-mode", "alice@example.com"),
        ("pricing.v2", "org_123"),
        ("unicode", "ユーザー"),
        ("emoji", "🚀-user"),
        ("x" * 128, "user-1"),
    ]
    cases = []
    for key, value in pairs:
        inp = key + ":" + value
        h = fnv1a32(inp.encode("utf-8"))
        cases.append({
            "description": f"FNV-1a-32 of {inp[:40]!r}",
            "flag_key": key,
            "bucket_value": value,
            "input": inp,
            "hash": h,
            "bucket": h % 100,
            "fraction_hash": fnv1a32((inp + ":fraction").encode("utf-8")),
            "position": position(key, value),
        })
    return cases


def rollout():
    cases = []
    key = "new-checkout-flow"
    users = [f"user-{i}" for i in range(1, 13)] + ["user-42"]
    for pct in [0, 25, 50, 73, 74, 100]:
        flag = {"key": key, "enabled": True, "rollout_percentage": pct}
        for u in users:
            inside = position(key, u) < milli(pct)
            cases.append({
                "description": f"{pct}% rollout, {u} (bucket {position(key, u) // 1000})",
                "flag": flag,
                "context": {"targetingKey": u},
                "expected": {"value": inside, "variant": None,
                             "reason": "SPLIT" if inside else "DEFAULT"},
            })
    # Fractional percentages: pick users whose bucket is exactly the integer
    # part, so only the sub-bucket decides.
    fkey = "fractional"
    for pct in [12.5, 37.125, 0.001, 99.999]:
        whole = int(pct)
        found = 0
        for i in range(100000):
            u = f"u{i}"
            pos = position(fkey, u)
            if pos // 1000 != whole:
                continue
            inside = pos < milli(pct)
            cases.append({
                "description": f"{pct}% rollout, {u} at position {pos}",
                "flag": {"key": fkey, "enabled": True, "rollout_percentage": pct},
                "context": {"targetingKey": u},
                "expected": {"value": inside, "variant": None,
                             "reason": "SPLIT" if inside else "DEFAULT"},
            })
            found += 1
            if found == 4:
                break
    # bucket_by a custom attribute, including a number (hashed as its text).
    bflag = {"key": "org-rollout", "enabled": True, "rollout_percentage": 50,
             "bucket_by": "orgId"}
    for org in ["acme", "globex", "initech", 42, 7]:
        inside = position("org-rollout", str(org)) < 50000
        cases.append({
            "description": f"bucket_by orgId={org!r}",
            "flag": bflag,
            "context": {"targetingKey": "same-user", "orgId": org},
            "expected": {"value": inside, "variant": None,
                         "reason": "SPLIT" if inside else "DEFAULT"},
        })
    cases.append({
        "description": "bucket_by attribute absent: not in the rollout",
        "flag": {**bflag, "rollout_percentage": 100},
        "context": {"targetingKey": "user-1"},
        "expected": {"value": False, "variant": None, "reason": "DEFAULT"},
    })
    cases.append({
        "description": "no targeting key: not in a 100% rollout",
        "flag": {"key": key, "enabled": True, "rollout_percentage": 100},
        "context": {},
        "expected": {"value": False, "variant": None, "reason": "DEFAULT"},
    })
    cases.append({
        "description": "userId attribute is an alias of the targeting key",
        "flag": {"key": key, "enabled": True, "rollout_percentage": 74},
        "context": {"userId": "user-42"},
        "expected": {"value": True, "variant": None, "reason": "SPLIT"},
    })
    cases.append({
        "description": "rollout with unweighted variants serves the first variant",
        "flag": {"key": "banner", "type": "string", "enabled": True,
                 "default_value": "none", "rollout_percentage": 100,
                 "variants": [{"key": "big", "value": "BIG"},
                              {"key": "small", "value": "small"}]},
        "context": {"targetingKey": "user-1"},
        "expected": {"value": "BIG", "variant": "big", "reason": "SPLIT"},
    })
    return cases


def pick(bounds, pos):
    for i, b in enumerate(bounds):
        if pos < b:
            return i
    raise AssertionError("weights do not cover the space")


def variants():
    cases = []
    flags = [
        {"key": "checkout-button-color", "type": "string", "enabled": True,
         "default_value": "grey",
         "variants": [{"key": "red", "value": "#f00", "weight": 25},
                      {"key": "green", "value": "#0f0", "weight": 25},
                      {"key": "blue", "value": "#00f", "weight": 25},
                      {"key": "yellow", "value": "#ff0", "weight": 25}]},
        {"key": "thirds", "type": "number", "enabled": True, "default_value": 0,
         "variants": [{"key": "one", "value": 1, "weight": 33.333},
                      {"key": "two", "value": 2, "weight": 33.333},
                      {"key": "three", "value": 3, "weight": 33.334}]},
        {"key": "ab-test", "enabled": True,
         "variants": [{"key": "control", "value": False, "weight": 50},
                      {"key": "treatment", "value": True, "weight": 50}]},
        {"key": "layout", "type": "json", "enabled": True, "default_value": {"cols": 1},
         "variants": [{"key": "never", "value": {"cols": 9}, "weight": 0},
                      {"key": "two", "value": {"cols": 2}, "weight": 10.5},
                      {"key": "three", "value": {"cols": 3}, "weight": 89.5}]},
    ]
    for flag in flags:
        bounds, acc = [], 0
        for v in flag["variants"]:
            acc += milli(v["weight"])
            bounds.append(acc)
        for i in range(1, 11):
            u = f"user-{i}"
            pos = position(flag["key"], u)
            v = flag["variants"][pick(bounds, pos)]
            cases.append({
                "description": f"{flag['key']}: {u} at position {pos}",
                "flag": flag,
                "context": {"targetingKey": u},
                "expected": {"value": v["value"], "variant": v["key"], "reason": "SPLIT"},
            })
    cases.append({
        "description": "weighted variants without a targeting key serve the default",
        "flag": flags[0],
        "context": {"plan": "pro"},
        "expected": {"value": "grey", "variant": None, "reason": "DEFAULT"},
    })
    cases.append({
        "description": "a matching rule beats the weighted split",
        "flag": {**flags[0], "rules": [{"attribute": "plan", "operator": "equals",
                                       "value": "pro", "variant": "blue"}]},
        "context": {"targetingKey": "user-1", "plan": "PRO"},
        "expected": {"value": "#00f", "variant": "blue", "reason": "TARGETING_MATCH"},
    })
    cases.append({
        "description": "targeted users get the first variant",
        "flag": {**flags[0], "targeted_users": ["vip"]},
        "context": {"targetingKey": "vip"},
        "expected": {"value": "#f00", "variant": "red", "reason": "TARGETING_MATCH"},
    })
    return cases


def write(name, cases):
    assert cases
    with open(os.path.join(OUT, name), "w", encoding="utf-8") as f:
        json.dump(cases, f, indent=2, ensure_ascii=False)
        f.write("\n")


if __name__ == "__main__":
    assert fnv1a32(b"new-checkout-flow:user-42") == 4236282073
    write("hashing.json", hashing())
    write("rollout.json", rollout())
    write("variants.json", variants())
