"""TypeScript from an OpenRPC document: a type per schema, and a typed client over client.js.

:func:`generate` turns the document ``rpc.discover`` answers (or ``manage.py rpcschema``
writes) into one TypeScript module (docs/guides/typescript.md):

- every ``components.schemas`` entry becomes an ``interface`` (an object with properties) or a
  ``type``; an inline object schema with a ``title`` (a dataclass or TypedDict described in
  place) becomes a named interface too, so that ``reports.build`` returns ``Promise<Report>``;
- every method gets ``<Name>Params`` and ``<Name>Result`` types, and a function in the ``Api``
  tree that ``createApi(client)`` builds over a ``RpcClient`` of client.js: names split on "."
  nest (``api.reports.build(...)``). Params go as one object by name (``api.add({a: 1, b: 2})``)
  unless the method's ``paramStructure`` is ``by-position`` (``api.add(1, 2)``): a call by name
  reads the same whatever the order, and survives a parameter added with a default. A method
  without params takes only the call options. The last argument is client.js's call options
  (``signal``, ``timeout``, ``onProgress``);
- client notifications (``"x-notification": true``) return ``Promise<void>``, as
  ``client.notify`` does;
- what the server pushes (``x-notifications``, ``rpc.progress`` among them) is the
  ``ServerNotifications`` map, and ``api.on(method, handler)`` registers a handler typed by it,
  as ``client.on`` does untyped.

Methods named ``rpc.*`` (reserved by JSON-RPC 2.0: sessions, discovery) and ``$/*`` (LSP's) are
client.js's own business and get no function. The output depends only on the document, so the
same document always gives the same text.
"""

# The parts, one job each: ``_names`` (identifiers, the names handed out, doc comments),
# ``_schemas`` (JSON Schema to types, $ref resolution, the schemas' declarations), ``_methods``
# (what the methods and pushes become) and ``_module`` (the module written out: the Api
# interface and createApi).

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from channels_rpc.typescript._module import _Module
from channels_rpc.typescript._schemas import TypeScriptError

__all__ = ["TypeScriptError", "generate"]

# Tracebacks name the error as users import it ("channels_rpc.typescript.TypeScriptError: ...").
TypeScriptError.__module__ = __name__


def generate(
    document: Mapping[str, Any], *, client_import: str = "./client.js", source: str = ""
) -> str:
    """The TypeScript module for ``document``, importing client.js's types from
    ``client_import``; ``source`` says in the header where the document came from."""
    if not isinstance(document.get("methods", []), list):
        raise TypeScriptError("the document's 'methods' is not a list")
    return _Module(document, client_import, source).render()
