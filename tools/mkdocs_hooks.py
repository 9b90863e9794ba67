"""MkDocs hooks (mkdocs.yml ``hooks``): the API reference's docstrings use Sphinx roles
(``:class:`RpcContext```), which mkdocstrings leaves as text; the page shows the name alone."""

from __future__ import annotations

import re
from typing import Any

_ROLE = re.compile(r":(?:class|mod|data|func|meth|attr|exc|obj):(?=<code>)")


def on_page_content(html: str, **_: Any) -> str:
    return _ROLE.sub("", html)
