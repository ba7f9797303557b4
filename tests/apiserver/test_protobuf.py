"""Protobuf request bodies: the decoder's mapping to JSON shape, and no crash on garbage."""

from __future__ import annotations

import random

import pytest

from controlplane.apiserver._protobuf import decode_protobuf
from controlplane.errors import ApiError


def _varint(value: int) -> bytes:
    out = b""
    while True:
        byte, value = value & 0x7F, value >> 7
        if value:
            out += bytes([byte | 0x80])
        else:
            return out + bytes([byte])


def ld(number: int, payload: bytes) -> bytes:
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def vi(number: int, value: int) -> bytes:
    return _varint(number << 3) + _varint(value & ((1 << 64) - 1))


def envelope(api_version: bytes, kind: bytes, raw: bytes) -> bytes:
    return b"k8s\x00" + ld(1, ld(1, api_version) + ld(2, kind)) + ld(2, raw)


def test_deployment_fields_map_to_json_names_and_types() -> None:
    meta = ld(1, b"web") + ld(11, ld(1, b"app") + ld(2, b"web")) + ld(8, vi(1, 0))  # zero creationTimestamp
    container = ld(1, b"c") + ld(2, b"nginx") + ld(6, vi(3, 8080) + ld(4, b"TCP") + vi(2, 0))
    container += ld(8, ld(2, ld(1, b"cpu") + ld(2, ld(1, b"500m"))))  # resources.requests
    template = ld(1, ld(11, ld(1, b"app") + ld(2, b"web"))) + ld(2, ld(2, container) + vi(4, 0))
    strategy = ld(1, b"RollingUpdate") + ld(2, ld(1, vi(1, 1) + ld(3, b"25%")))
    spec = vi(1, 0) + ld(2, ld(1, ld(1, b"app") + ld(2, b"web"))) + ld(3, template) + ld(4, strategy) + vi(5, 0)
    obj = decode_protobuf(envelope(b"apps/v1", b"Deployment", ld(1, meta) + ld(2, spec)))
    assert obj["apiVersion"] == "apps/v1" and obj["kind"] == "Deployment"
    assert obj["metadata"] == {"name": "web", "labels": {"app": "web"}}
    assert obj["spec"]["replicas"] == 0  # pointer field: an explicit 0 survives
    assert "minReadySeconds" not in obj["spec"]  # Go zero value: omitted like JSON would
    assert obj["spec"]["strategy"] == {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%"}}
    c = obj["spec"]["template"]["spec"]["containers"][0]
    assert c["ports"] == [{"containerPort": 8080, "protocol": "TCP"}]
    assert c["resources"] == {"requests": {"cpu": "500m"}}
    assert obj["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] == 0


@pytest.mark.parametrize("seed", range(3))
def test_garbage_is_a_clean_api_error(seed: int) -> None:
    rng = random.Random(seed)
    kinds = [(b"v1", b"Pod"), (b"v1", b"ConfigMap"), (b"apps/v1", b"Deployment"), (b"v1", b"Service"), (b"v1", b"Node")]
    for _ in range(3000):
        api_version, kind = rng.choice(kinds)
        raw = bytes(rng.randrange(256) for _ in range(rng.randrange(80)))
        if rng.random() < 0.5:
            raw = ld(1, ld(1, b"x") + ld(11, ld(1, b"a") + ld(2, b"b"))) + raw
        try:
            decode_protobuf(envelope(api_version, kind, raw))
        except ApiError as exc:
            assert exc.code in (400, 415)
