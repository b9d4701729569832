"""Every websockets and hdrh name that ``wschat.bench`` and ``wschat.client`` use, in one place.

A release of either library that renames, removes or re-signs one of them fails here, by
name, instead of somewhere inside a load test. ``IMPORTED`` is what the packages import (an
``ast`` scan of their source must find exactly this set, so a new use cannot slip in
unlisted); ``MEMBERS`` is what they call or read on those objects, with the parameter names
they pass. ``hdrh``'s counts layout, which ``wschat.bench.stats`` writes itself, is pinned by
behaviour: its arithmetic must equal ``record_value`` (see ``Latency``'s docstring).
"""

from __future__ import annotations

import ast
import dataclasses
import importlib
import inspect
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hdrh.histogram import HdrHistogram
from websockets.client import ClientProtocol
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.http11 import Response
from websockets.uri import parse_uri

from wschat.bench.stats import LATENCY_MAX_US, SIGNIFICANT_FIGURES, Latency

PACKAGES = ("wschat/bench", "wschat/client")
LIBRARIES = ("websockets", "hdrh")
ROOT = Path(__file__).resolve().parents[2]

ANY = None  # a class or value that is used but not called by us
KWARGS = "**"  # the callable must pass unknown keywords on (to ``loop.create_connection``)
ATTR = ()  # a member that is read, not called

# name imported from a library → the parameter names we pass it (in the order we pass them)
IMPORTED: dict[str, tuple[str, ...] | None] = {
    "websockets.asyncio.client.ClientConnection": ANY,
    "websockets.asyncio.client.connect": (
        "uri",
        "subprotocols",
        "compression",
        "additional_headers",
        "user_agent_header",
        "proxy",
        "open_timeout",
        "ping_interval",
        "close_timeout",
        "max_size",
        KWARGS,  # sock, ssl, server_hostname
    ),
    "websockets.client.ClientProtocol": ("uri", "subprotocols", "max_size"),
    "websockets.exceptions.ConnectionClosed": ANY,
    "websockets.exceptions.InvalidHandshake": ANY,
    "websockets.exceptions.InvalidMessage": ANY,
    "websockets.exceptions.InvalidStatus": ANY,
    "websockets.exceptions.InvalidURI": ANY,
    "websockets.frames.CloseCode": ANY,
    "websockets.frames.Frame": ANY,
    "websockets.frames.Opcode": ANY,
    "websockets.http11.Response": ANY,
    "websockets.protocol.State": ANY,
    "websockets.typing.Subprotocol": ANY,
    "websockets.uri.parse_uri": ("uri",),
    "hdrh.histogram.HdrHistogram": (
        "lowest_trackable_value",
        "highest_trackable_value",
        "significant_figures",
    ),
}

# class → member → the parameter names we pass (ATTR: read, not called)
MEMBERS: dict[str, dict[str, tuple[str, ...]]] = {
    # wschat/bench/connection.py: the documented sans-I/O API only
    "websockets.client.ClientProtocol": {
        "connect": (),
        "send_request": ("request",),
        "receive_data": ("data",),
        "receive_eof": (),
        "events_received": (),
        "data_to_send": (),
        "send_text": ("data",),
        "send_close": ("code",),
        "fail": ("code", "reason"),
        "close_expected": (),
        "state": ATTR,
        "handshake_exc": ATTR,
        "close_code": ATTR,
    },
    # wschat/client/session.py (the probe of wschat/bench/runner.py runs on BenchConnection)
    "websockets.asyncio.client.ClientConnection": {
        "recv": (),
        "send": ("message",),
        "close": (),
        "subprotocol": ATTR,
        "close_code": ATTR,
        "close_reason": ATTR,
    },
    "websockets.exceptions.InvalidStatus": {"response": ATTR},
    "websockets.exceptions.ConnectionClosed": {"rcvd": ATTR},
    "websockets.frames.Close": {"code": ATTR},  # ConnectionClosed.rcvd
    "websockets.frames.Frame": {"opcode": ATTR, "data": ATTR, "fin": ATTR},
    "websockets.frames.Opcode": {"TEXT": ATTR, "BINARY": ATTR, "CONT": ATTR, "CLOSE": ATTR},
    "websockets.frames.CloseCode": {"ABNORMAL_CLOSURE": ATTR, "INVALID_DATA": ATTR},
    "websockets.protocol.State": {"OPEN": ATTR},
    "websockets.http11.Request": {"headers": ATTR},  # ClientProtocol.connect()'s
    "websockets.http11.Response": {
        "status_code": ATTR,
        "reason_phrase": ATTR,  # wschat/bench/runner.py: a refused upgrade's status line
        "headers": ATTR,
        "body": ATTR,
    },
    "websockets.datastructures.Headers": {"get": ("key",), "__setitem__": ("key", "value")},
    # wschat/bench/stats.py
    "hdrh.histogram.HdrHistogram": {
        "counts": ATTR,
        "unit_magnitude": ATTR,
        "sub_bucket_half_count_magnitude": ATTR,
        "sub_bucket_half_count": ATTR,
        "sub_bucket_mask": ATTR,
        "get_value_from_index": ("index",),
        "get_highest_equivalent_value": ("value",),
    },
}

# instances for the members that only exist once an object is built (set in __init__)
SAMPLES: dict[str, Callable[[], object]] = {
    "websockets.client.ClientProtocol": lambda: ClientProtocol(parse_uri("ws://localhost/")),
    "websockets.exceptions.InvalidStatus": lambda: InvalidStatus(Response(403, "no", Headers())),
    "websockets.exceptions.ConnectionClosed": lambda: ConnectionClosed(None, None),
    "hdrh.histogram.HdrHistogram": lambda: HdrHistogram(1, LATENCY_MAX_US, SIGNIFICANT_FIGURES),
}

# the names of the sans-I/O object as connection.py spells them: self.ws.X, ws.X
PROTOCOL_VARIABLES = {"ws"}
CONNECTION_VARIABLES = {"ws", "_ws"}  # ClientConnection in runner.py and session.py


def resolve(dotted: str) -> Any:
    module, _, name = dotted.rpartition(".")
    return getattr(importlib.import_module(module), name)


def check_parameters(target: Any, names: tuple[str, ...], where: str) -> None:
    parameters = inspect.signature(target).parameters
    kinds = {p.kind for p in parameters.values()}
    wanted = [n for n in names if n != KWARGS]
    missing = [n for n in wanted if n not in parameters]
    assert not missing, f"{where} no longer takes {missing}: {list(parameters)}"
    order = [n for n in parameters if n in wanted]
    assert order == wanted, f"{where} takes {wanted} in another order: {list(parameters)}"
    if KWARGS in names:
        assert inspect.Parameter.VAR_KEYWORD in kinds, f"{where} no longer passes **kwargs on"


@pytest.mark.parametrize("dotted", sorted(IMPORTED))
def test_each_imported_name_exists_with_its_parameters(dotted: str) -> None:
    target = resolve(dotted)
    names = IMPORTED[dotted]
    if names is not None:
        check_parameters(target, names, dotted)


@pytest.mark.parametrize(
    ("owner", "member"), [(o, m) for o in sorted(MEMBERS) for m in sorted(MEMBERS[o])]
)
def test_each_member_exists_with_its_parameters(owner: str, member: str) -> None:
    cls = resolve(owner)
    fields = {f.name for f in dataclasses.fields(cls)} if dataclasses.is_dataclass(cls) else set()
    if member in fields:
        found = True
    else:
        try:
            inspect.getattr_static(cls, member)
            found = True
        except AttributeError:  # an instance attribute, set in __init__
            found = owner in SAMPLES and hasattr(SAMPLES[owner](), member)
    assert found, f"{owner} has no {member}"
    names = MEMBERS[owner][member]
    if names is not ATTR:
        check_parameters(getattr(cls, member), names, f"{owner}.{member}")


def sources() -> list[Path]:
    return sorted(p for package in PACKAGES for p in (ROOT / package).glob("*.py"))


def test_every_library_import_is_listed() -> None:
    imported: dict[str, list[str]] = {}
    for path in sources():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [f"{node.module}.{alias.name}" for alias in node.names]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            else:
                continue
            for name in names:
                if name.split(".")[0] in LIBRARIES:
                    imported.setdefault(name, []).append(path.relative_to(ROOT).as_posix())
    unlisted = {n: where for n, where in imported.items() if n not in IMPORTED}
    assert not unlisted, f"add these to IMPORTED (and their members to MEMBERS): {unlisted}"
    unused = set(IMPORTED) - set(imported)
    assert not unused, f"no longer imported; drop them from IMPORTED: {sorted(unused)}"


def attributes_read(path: Path, variables: set[str]) -> set[str]:
    """Return the X of every ``v.X`` and ``self.v.X`` in ``path``, for v in ``variables``."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if not isinstance(node, ast.Attribute):
            continue
        base = node.value
        if isinstance(base, ast.Name) and base.id in variables:
            found.add(node.attr)
        elif (
            isinstance(base, ast.Attribute)
            and base.attr in variables
            and isinstance(base.value, ast.Name)
            and base.value.id == "self"
        ):
            found.add(node.attr)
    return found


@pytest.mark.parametrize(
    ("path", "variables", "owner"),
    [
        ("wschat/bench/connection.py", PROTOCOL_VARIABLES, "websockets.client.ClientProtocol"),
        (
            "wschat/client/session.py",
            CONNECTION_VARIABLES,
            "websockets.asyncio.client.ClientConnection",
        ),
    ],
)
def test_what_is_read_on_a_connection_is_listed(path: str, variables: set[str], owner: str) -> None:
    read = attributes_read(ROOT / path, variables)
    assert read, f"{path}: found no use of {variables}; has the variable been renamed?"
    unlisted = read - set(MEMBERS[owner])
    assert not unlisted, f"{path} reads {sorted(unlisted)} of {owner}: list them in MEMBERS"


def boundary_values() -> list[int]:
    """Return the values where hdrh's bucket arithmetic changes: around each power of two."""
    values = set(range(1, 4200))  # the whole first two buckets and the start of the third
    power = 1
    while power <= LATENCY_MAX_US:
        values.update(v for v in (power - 1, power, power + 1) if 1 <= v <= LATENCY_MAX_US)
        power <<= 1
    values.update((LATENCY_MAX_US - 1, LATENCY_MAX_US))
    return sorted(values)


def test_the_inline_bucket_arithmetic_is_record_value() -> None:
    # each value alone, so two wrong indexes cannot cancel out
    reference = HdrHistogram(1, LATENCY_MAX_US, SIGNIFICANT_FIGURES)
    for value in boundary_values()[4000:] + list(range(1, 4200, 97)):
        latency = Latency()
        latency.record_ns(value * 1000)
        counts = latency.counts()
        index = reference.get_counts_array_index(value)
        assert (counts[index], sum(counts)) == (1, 1), value
    assert len(counts) == reference.counts_len


def test_the_counts_array_is_what_record_value_fills() -> None:
    rng = random.Random(7)
    values = boundary_values() + [rng.randint(1, LATENCY_MAX_US) for _ in range(5000)]
    latency = Latency()
    reference = HdrHistogram(1, LATENCY_MAX_US, SIGNIFICANT_FIGURES)
    for value in values:
        latency.record_ns(value * 1000)
        assert reference.record_value(value)
    expected = [reference.get_count_at_index(i) for i in range(reference.counts_len)]
    assert list(latency.counts()) == expected
    assert latency.count == reference.get_total_count() == len(values)
