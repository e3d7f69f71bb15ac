"""The installed gpt4free for tests: imported quietly, or the test skipped with a reason.

``CHATGPTT_GPT4FREE_VERSION`` (set by ``make test`` and ``make compat``) names the release
the run must test against: then a missing or different gpt4free fails the tests instead
of skipping them, so a broken install cannot pass as green.
"""

from __future__ import annotations

import os
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from types import ModuleType

import pytest

__all__ = ["REQUIRED_ENV", "import_gpt4free", "isolate_gpt4free_files"]

REQUIRED_ENV = "CHATGPTT_GPT4FREE_VERSION"


def import_gpt4free() -> ModuleType:
    """gpt4free's ``g4f`` package with its update check off — it would query the package
    index (0.4.x synchronously, printing; 8.x in a thread) on the first call — or a skip."""
    required = os.environ.get(REQUIRED_ENV)
    try:
        installed: str | None = version("g4f")
    except PackageNotFoundError:
        installed = None
    if required and installed != required:
        pytest.fail(f"{REQUIRED_ENV}={required} but gpt4free {installed or 'is not'} installed")
    g4f = pytest.importorskip(
        "g4f", reason="gpt4free is not installed (`make test` and `make compat` install it)"
    )
    g4f.debug.version_check = False
    return g4f


def isolate_gpt4free_files(directory: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Point gpt4free's cookies directory (where 8.x appends a usage log per call, and
    where it looks for saved cookies and keys) at ``directory``."""
    import g4f.cookies

    monkeypatch.setattr(g4f.cookies.CookiesConfig, "cookies_dir", str(directory))
