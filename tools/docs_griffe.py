"""A griffe extension for the API reference (mkdocs.yml: mkdocstrings' ``extensions``).

geogan's docstrings are written for ``help()`` and Sphinx alike: ``:class:`TrainConfig```,
``:func:`~geogan.raster.open_raster```. mkdocstrings renders docstrings as Markdown, where such
a role would show as text, so each becomes code: `TrainConfig`, `open_raster`.
"""
from __future__ import annotations

import re

import griffe

ROLE = re.compile(r":(?:class|func|meth|mod|attr|data|exc|obj):`(~?)([^`]+)`")


def plain_roles(text: str) -> str:
    """``:class:`~a.B``` -> `` `B` ``; ``:func:`a.f``` -> `` `a.f` ``."""
    return ROLE.sub(lambda m: f"`{m.group(2).rsplit('.', 1)[-1] if m.group(1) else m.group(2)}`", text)


class SphinxRoles(griffe.Extension):
    def on_instance(self, *, obj: griffe.Object, **kwargs) -> None:
        if obj.docstring is not None:
            obj.docstring.value = plain_roles(obj.docstring.value)
