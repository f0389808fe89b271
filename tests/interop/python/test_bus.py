"""Interop: nats-py (the NATS project's Python client) subscribed to
Flagbase's embedded bus sees each flag change made through the API, in
order, with consecutive sequence numbers.

Needs FLAGBASE_URL (e.g. http://127.0.0.1:8080), FLAGBASE_NATS_URL (e.g.
nats://127.0.0.1:4222) and FLAGBASE_TOKEN (an ``fbk_`` API token of a
developer, used for both the API and the bus). Run by the Rust integration
test ``tests/integration/bus.rs``; see tests/interop/README.md.
"""

import asyncio
import json
import os

import pytest
import requests

import nats

KEY = "py-bus-interop"


def settings():
    names = ("FLAGBASE_URL", "FLAGBASE_NATS_URL", "FLAGBASE_TOKEN")
    values = [os.environ.get(n) for n in names]
    if not all(values):
        pytest.fail(f"set {', '.join(names)}; see tests/interop/README.md")
    return values


def api(method, url, token, **kwargs):
    r = requests.request(
        method, url, headers={"Authorization": f"Bearer {token}"}, timeout=30, **kwargs
    )
    assert r.status_code < 300, f"{method} {url}: {r.status_code} {r.text}"


async def follow_flag_changes():
    base, nats_url, token = settings()
    nc = await nats.connect(nats_url, token=token, allow_reconnect=False)
    received = asyncio.Queue()

    async def on_message(msg):
        await received.put((msg.subject, json.loads(msg.data)))

    await nc.subscribe("flagbase.flag.>", cb=on_message)
    # PING/PONG: the server has the subscription before anything changes.
    await nc.flush()

    loop = asyncio.get_running_loop()
    flags = f"{base}/api/v1/flags"
    changes = [
        ("POST", flags, {"json": {"key": KEY, "enabled": True, "default_value": False}}),
        ("PATCH", f"{flags}/{KEY}/toggle", {}),
        ("PATCH", f"{flags}/{KEY}/toggle", {}),
        ("DELETE", f"{flags}/{KEY}", {}),
    ]
    for method, url, kwargs in changes:
        await loop.run_in_executor(None, lambda: api(method, url, token, **kwargs))

    events = []
    for _ in changes:
        events.append(await asyncio.wait_for(received.get(), timeout=30))
    await nc.close()
    return events


def test_nats_py_subscriber_sees_each_api_flag_change_in_order():
    events = asyncio.run(follow_flag_changes())
    assert [subject for subject, _ in events] == [
        "flagbase.flag.created",
        "flagbase.flag.toggled",
        "flagbase.flag.toggled",
        "flagbase.flag.deleted",
    ]
    seqs = [body["seq"] for _, body in events]
    assert seqs == list(range(seqs[0], seqs[0] + len(events))), seqs
    assert all(body["key"] == KEY for _, body in events)
    assert [body["flag"]["enabled"] for _, body in events[:3]] == [True, False, True]
