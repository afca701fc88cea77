"""Rejection reasons are named once (gateway/reasons.py) and every one is documented where users look."""

from __future__ import annotations

import re

from gateway.reasons import Ignored, Reason
from tests.support import ROOT

README = ROOT / "README.md"


def test_every_reason_is_documented_in_the_readme() -> None:
    text = README.read_text(encoding="utf-8")
    missing = [r.value for r in [*Reason, *Ignored] if f"`{r.value}`" not in text and f'"{r.value}"' not in text]
    assert missing == []


def test_no_reason_is_a_bare_string_in_the_code() -> None:
    """A rejection written as a literal would bypass the enum (and the README check above)."""
    names = "|".join(r.value for r in [*Reason, *Ignored])
    bare = re.compile(rf'(PayloadRejected|Rejection)\(\s*"({names})"|ignored="({names})"')
    package = README.parent / "gateway"
    offenders = [str(p.relative_to(package)) for p in package.rglob("*.py") if bare.search(p.read_text())]
    assert offenders == []
