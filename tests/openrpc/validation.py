"""Validate documents against the shipped OpenRPC meta-schema, offline."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from jsonschema import Draft7Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT7

HERE = Path(__file__).parent


def _load(name: str) -> Any:
    return json.loads((HERE / name).read_text())


def openrpc_validator() -> Draft7Validator:
    meta = _load("json-schema-tools-meta-schema.json")
    registry: Registry[Any] = Registry().with_resources(
        [
            (uri, Resource.from_contents(meta, default_specification=DRAFT7))
            for uri in ("https://meta.json-schema.tools", "https://meta.json-schema.tools/")
        ]
    )
    return Draft7Validator(_load("openrpc-meta-schema.json"), registry=registry)


def errors(document: Any) -> list[str]:
    """Every way ``document`` breaks the OpenRPC meta-schema (empty when valid)."""
    found = openrpc_validator().iter_errors(document)
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in found]
