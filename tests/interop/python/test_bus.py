"""Interop: nats-py (the NATS project's Python client) against Flagbase's
embedded bus: a subscriber sees each flag change made through the API, in
order, with consecutive sequence numbers; and the same list the Node and
async-nats suites cover: token auth, pub/sub, wildcards, queue groups,
headers, request/reply, no-responders, unsubscribe-after-N, permission
errors, and reconnection after Flagbase restarts.

Needs FLAGBASE_URL (e.g. http://127.0.0.1:8080), FLAGBASE_NATS_URL (e.g.
nats://127.0.0.1:4222) and FLAGBASE_TOKEN (an ``fbk_`` API token of a
developer, used for both the API and the bus). Run by the Rust integration
test ``tests/integration/bus_interop.rs``, which restarts Flagbase on the
same bus port when this suite publishes on ``interop.control.restart``; see
tests/interop/README.md.
"""

import asyncio
import json
import os

import pytest
import requests

import nats
from nats import errors

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


# A safety net against a hung suite, not a timing assertion.
PATIENCE = 30


async def connected(**kwargs):
    _, nats_url, token = settings()
    options = {"token": token, "allow_reconnect": False}
    options.update(kwargs)
    return await nats.connect(nats_url, **options)


def test_token_auth_admits_a_flagbase_token_and_refuses_a_wrong_one():
    async def run():
        nc = await connected()
        assert nc.connected_server_version.major >= 0
        assert nc._server_info.get("headers") is True
        await nc.close()
        _, nats_url, _ = settings()
        seen = []

        async def on_error(e):
            seen.append(e)

        with pytest.raises(Exception):
            await nats.connect(
                nats_url,
                token="fbk_nope_nope",
                allow_reconnect=False,
                max_reconnect_attempts=0,
                error_cb=on_error,
            )
        assert any("authorization violation" in str(e).lower() for e in seen), seen

    asyncio.run(run())


def test_pub_sub_with_wildcards():
    async def run():
        nc = await connected()
        star = await nc.subscribe("py.*.x")
        full = await nc.subscribe("py.>")
        await nc.flush()
        for subject in ("py.a.x", "py.a.b.c", "py.b.x"):
            await nc.publish(subject, subject.encode())
        got_star = [(await star.next_msg(PATIENCE)).subject for _ in range(2)]
        got_full = [(await full.next_msg(PATIENCE)).subject for _ in range(3)]
        assert got_star == ["py.a.x", "py.b.x"]
        assert got_full == ["py.a.x", "py.a.b.c", "py.b.x"]
        await nc.close()

    asyncio.run(run())


def test_queue_group_delivers_each_message_to_one_member():
    async def run():
        nc = await connected()
        got = asyncio.Queue()

        def collect(who):
            async def cb(msg):
                await got.put((who, msg.data))

            return cb

        await nc.subscribe("py.q", queue="workers", cb=collect("member"))
        await nc.subscribe("py.q", queue="workers", cb=collect("member"))
        await nc.subscribe("py.q", cb=collect("plain"))
        await nc.flush()
        sent = [str(i).encode() for i in range(20)]
        for data in sent:
            await nc.publish("py.q", data)
        seen = [await asyncio.wait_for(got.get(), PATIENCE) for _ in range(40)]
        members = sorted(d for who, d in seen if who == "member")
        plain = [d for who, d in seen if who == "plain"]
        assert members == sorted(sent), members
        assert plain == sent
        await nc.flush()
        assert got.empty(), "a message reached two members of the group"
        await nc.close()

    asyncio.run(run())


def test_headers_travel_with_the_message():
    async def run():
        nc = await connected()
        sub = await nc.subscribe("py.h")
        await nc.flush()
        await nc.publish("py.h", b"payload", headers={"X-Flag": "checkout"})
        msg = await sub.next_msg(PATIENCE)
        assert msg.data == b"payload"
        assert msg.headers == {"X-Flag": "checkout"}
        await nc.close()

    asyncio.run(run())


def test_request_reply_and_no_responders():
    async def run():
        nc = await connected()

        async def echo(msg):
            await msg.respond(b"echo:" + msg.data)

        await nc.subscribe("py.echo", cb=echo)
        await nc.flush()
        reply = await nc.request("py.echo", b"hi", timeout=PATIENCE)
        assert reply.data == b"echo:hi"
        with pytest.raises(errors.NoRespondersError):
            await nc.request("py.nobody.home", b"x", timeout=PATIENCE)
        await nc.close()

    asyncio.run(run())


def test_unsubscribe_after_n_messages():
    async def run():
        nc = await connected()
        sub = await nc.subscribe("py.max", max_msgs=3)
        await nc.flush()
        for i in range(5):
            await nc.publish("py.max", str(i).encode())
        got = [(await sub.next_msg(PATIENCE)).data for _ in range(3)]
        assert got == [b"0", b"1", b"2"]
        # The two left over were never delivered: a round trip on another
        # subject comes back first.
        probe = await nc.subscribe("py.max.probe")
        await nc.publish("py.max.probe", b"")
        await probe.next_msg(PATIENCE)
        assert sub.pending_msgs == 0
        await nc.close()

    asyncio.run(run())


def test_permission_errors_leave_the_connection_open():
    async def run():
        seen = asyncio.Queue()

        async def on_error(e):
            await seen.put(str(e))

        nc = await connected(error_cb=on_error)
        await nc.publish("flagbase.flag.disabled", b"forged")
        # nats-py lowercases the server's text.
        err = await asyncio.wait_for(seen.get(), PATIENCE)
        assert err.lower() == 'nats: permissions violation for publish to "flagbase.flag.disabled"', err
        await nc.subscribe("flagbase.user.>")
        err = await asyncio.wait_for(seen.get(), PATIENCE)
        assert err.lower() == 'nats: permissions violation for subscription to "flagbase.user.>"', err
        await nc.flush()
        assert nc.is_connected
        await nc.close()

    asyncio.run(run())


def test_reconnects_after_flagbase_restarts():
    async def run():
        reconnected = asyncio.Event()

        async def on_reconnect():
            reconnected.set()

        nc = await connected(
            allow_reconnect=True,
            max_reconnect_attempts=-1,
            reconnect_time_wait=0.1,
            reconnected_cb=on_reconnect,
        )
        sub = await nc.subscribe("py.after")
        await nc.flush()
        # The Rust test restarts Flagbase on the same bus port on this.
        await nc.publish("interop.control.restart", b"")
        await nc.flush()
        await asyncio.wait_for(reconnected.wait(), PATIENCE)
        await nc.flush()
        await nc.publish("py.after", b"still here")
        msg = await sub.next_msg(PATIENCE)
        assert msg.data == b"still here"
        await nc.close()

    asyncio.run(run())
