"""``Provider`` with and without gpt4free, and how it comes to stand on gpt4free's classes:
at once when gpt4free is imported first, right after gpt4free's base module runs when it is
imported later, never when it is not imported (``import chatgptt`` stays cheap)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import types
import uuid
import warnings
from importlib.machinery import SourceFileLoader
from importlib.util import find_spec
from typing import Any, ClassVar

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chatgptt import ChatGptt, UnknownModelError, _gpt4free
from chatgptt._gpt4free import follow, gpt4free_bases, rebase
from chatgptt.providers import Provider, Standalone
from chatgptt.testing import provider_for
from tests.chatgptt.gpt4free_support import REQUIRED_ENV

HELLO = [{"role": "user", "content": "Hello"}]
#: Skipped without gpt4free — unless the run requires it (make test, make compat): then they fail.
needs_gpt4free = pytest.mark.skipif(
    find_spec("g4f") is None and not os.environ.get(REQUIRED_ENV),
    reason="gpt4free is not installed",
)


def run_python(script: str) -> str:
    """Run ``script`` in a fresh interpreter (a clean ``sys.modules``), a RuntimeWarning
    (``rebase`` giving up) an error; its stdout. (0.4.5.4 warns of deprecations on import.)"""
    done = subprocess.run(
        [sys.executable, "-W", "error::RuntimeWarning", "-c", textwrap.dedent(script)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


# --- Provider's own methods ------------------------------------------------------------------


def test_create_completion_streams_or_gives_one_chunk(emulator) -> None:
    provider = provider_for(emulator)
    streamed = list(provider.create_completion("gpt-4o", HELLO, stream=True))
    whole = list(provider.create_completion("gpt-4o", HELLO, stream=False))
    assert "".join(streamed) == "Hello from upstream: Hello"
    assert whole == ["Hello from upstream: Hello"]


async def test_create_async_collects_the_answer(emulator) -> None:
    assert (
        await provider_for(emulator).create_async("gpt-4o", HELLO) == "Hello from upstream: Hello"
    )


def test_model_listing_takes_gpt4frees_keyword_arguments() -> None:
    assert ChatGptt.get_models(api_key="sk-x", timeout=10) == ["gpt-4", "gpt-4o", "gpt-4o-mini"]
    assert ChatGptt.get_model("gpt-4-turbo", api_key="sk-x") == "gpt-4"


def test_models_as_gpt4free_users_name_them() -> None:
    """gpt4free passes ``"auto"`` for the default (its API's own example) and its users
    write names in any case."""
    assert ChatGptt.get_model("auto") == ChatGptt.default_model
    assert ChatGptt.get_model("AUTO") == ChatGptt.default_model
    assert ChatGptt.get_model("GPT-4o") == "gpt-4o"
    assert ChatGptt.get_model("GPT-4-Turbo") == "gpt-4"  # an alias, in another case
    with pytest.raises(UnknownModelError, match="'GPT-5'"):
        ChatGptt.get_model("GPT-5")


class _Bare(Provider):
    """A provider with no aliases (gpt4free's mixin defaults them to None) and no list."""

    default_model: ClassVar[str | None] = "only"
    models: ClassVar[list[str]] = []
    model_aliases: ClassVar[dict[str, str]] = None  # type: ignore[assignment]

    @classmethod
    def create_async_generator(cls, model: str, messages: Any, **kwargs: Any) -> Any:
        raise NotImplementedError


def test_models_without_aliases_or_a_list() -> None:
    assert _Bare.get_models() == ["only"]
    assert _Bare.get_model("") == "only"
    assert _Bare.get_model("auto") == "only"
    with pytest.raises(UnknownModelError, match="'other'"):
        _Bare.get_model("other")


# --- rebasing, on stand-in classes -----------------------------------------------------------


def _hierarchy() -> tuple[type, type]:
    """A fresh ``Target`` (standing on a stand-in for ``Standalone``) and a subclass of it."""

    class Base(Standalone):
        pass

    class Target(Base):
        @classmethod
        def get_model(cls, model: str | None, **kwargs: Any) -> str:
            return "ours"

    class Leaf(Target):
        pass

    return Target, Leaf


def _gpt4free_like(name: str = "stand_in") -> types.ModuleType:
    module = types.ModuleType(name)
    exec(
        textwrap.dedent(
            """
            from abc import ABC
            class AsyncGeneratorProvider(ABC):
                live = 0
                def get_create_function(cls): ...
            class ProviderModelMixin:
                def get_model(cls, model): return "theirs"
            """
        ),
        module.__dict__,
    )
    return module


def test_rebase_puts_gpt4frees_classes_under_the_target_and_its_subclasses() -> None:
    target, leaf = _hierarchy()
    module = _gpt4free_like()
    assert rebase(target, module)
    assert target.__bases__ == (module.AsyncGeneratorProvider, module.ProviderModelMixin)
    assert issubclass(leaf, module.AsyncGeneratorProvider)
    assert leaf.live == 0
    assert leaf.get_model("x") == "ours"
    assert rebase(target, module)  # again: nothing to do


def test_rebase_refuses_classes_that_cannot_be_bases_with_a_warning() -> None:
    """gpt4free's bases are ABCs, as ours; a release whose bases are plain classes has
    another object layout, which CPython refuses to swap in."""
    target, _ = _hierarchy()
    module = types.ModuleType("odd")
    module.AsyncGeneratorProvider = type("AsyncGeneratorProvider", (), {})  # type: ignore[attr-defined]
    before = target.__bases__
    with pytest.warns(RuntimeWarning, match="cannot stand on the classes of odd"):
        assert not rebase(target, module)
    assert target.__bases__ == before


def test_rebase_without_the_classes_warns() -> None:
    target, _ = _hierarchy()
    with pytest.warns(RuntimeWarning, match="odd has no AsyncGeneratorProvider"):
        assert not rebase(target, types.ModuleType("odd"))


VALUES = st.sampled_from(["absent", None, 1, "class"])


@given(provider=VALUES, mixin=VALUES)
def test_gpt4free_bases_takes_classes_only(provider: Any, mixin: Any) -> None:
    module = types.ModuleType("m")
    made = {}
    for name, value in (("AsyncGeneratorProvider", provider), ("ProviderModelMixin", mixin)):
        if value != "absent":
            made[name] = type(name, (), {}) if value == "class" else value
            setattr(module, name, made[name])
    bases = gpt4free_bases(module)
    if provider != "class":
        assert bases is None
    elif mixin == "class":
        assert bases == (made["AsyncGeneratorProvider"], made["ProviderModelMixin"])
    else:
        assert bases == (made["AsyncGeneratorProvider"],)


# --- following an import, with a real package on disk -------------------------------------


@pytest.fixture
def package(tmp_path, monkeypatch) -> str:
    """A fresh package on ``sys.path``: ``base`` has gpt4free-like classes, ``empty`` none,
    ``broken`` raises."""
    name = f"gpt4free_stand_in_{uuid.uuid4().hex}"
    root = tmp_path / name
    root.mkdir()
    (root / "__init__.py").write_text("")
    (root / "base.py").write_text(
        "from abc import ABC\n\n\nclass AsyncGeneratorProvider(ABC):\n    live = 0\n\n\n"
        "class ProviderModelMixin:\n    pass\n"
    )
    (root / "empty.py").write_text("")
    (root / "broken.py").write_text("raise ImportError('broken on purpose')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield name
    for module in [key for key in sys.modules if key.startswith(name)]:
        del sys.modules[module]


@pytest.fixture
def meta_path(monkeypatch) -> list[Any]:
    """``sys.meta_path``, restored after the test."""
    monkeypatch.setattr(sys, "meta_path", list(sys.meta_path))
    return sys.meta_path


def _waiting(meta_path: list[Any]) -> list[Any]:
    return [finder for finder in meta_path if isinstance(finder, _gpt4free._AfterImport)]


def test_follow_rebases_right_after_the_module_runs_then_leaves(package: str, meta_path) -> None:
    target, leaf = _hierarchy()
    already, before = len(_waiting(meta_path)), target.__bases__
    follow(target, modules=(f"{package}.base",))
    assert len(_waiting(meta_path)) == already + 1
    assert target.__bases__ == before
    base = __import__(f"{package}.base", fromlist=["_"])
    assert issubclass(leaf, base.AsyncGeneratorProvider)
    assert len(_waiting(meta_path)) == already
    # The module keeps its real loader.
    assert type(base.__loader__) is SourceFileLoader
    assert type(base.__spec__.loader) is SourceFileLoader


def test_follow_waits_past_a_module_without_the_classes(package: str, meta_path) -> None:
    target, leaf = _hierarchy()
    follow(target, modules=(f"{package}.empty", f"{package}.base"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        __import__(f"{package}.empty")
    assert not hasattr(leaf, "live")
    base = __import__(f"{package}.base", fromlist=["_"])
    assert issubclass(leaf, base.AsyncGeneratorProvider)


def test_a_module_that_fails_to_import_fails_as_it_would_and_is_not_adopted(
    package: str, meta_path
) -> None:
    target, _ = _hierarchy()
    follow(target, modules=(f"{package}.broken",))
    with pytest.raises(ImportError, match="broken on purpose"):
        __import__(f"{package}.broken")
    assert _waiting(meta_path), "still waiting for a module that loads"


def test_follow_rebases_at_once_when_the_module_is_already_imported(
    package: str, meta_path
) -> None:
    base = __import__(f"{package}.base", fromlist=["_"])
    target, leaf = _hierarchy()
    waiting = len(_waiting(meta_path))
    follow(target, modules=(f"{package}.base",))
    assert issubclass(leaf, base.AsyncGeneratorProvider)
    assert len(_waiting(meta_path)) == waiting


# --- the real thing, in fresh interpreters ---------------------------------------------------


def test_importing_chatgptt_does_not_import_gpt4free() -> None:
    assert run_python("import sys, chatgptt; print('g4f' in sys.modules)") == "False\n"


@needs_gpt4free
def test_gpt4free_imported_later_adopts_classes_made_before() -> None:
    out = run_python(
        """
        import sys
        import chatgptt
        from chatgptt.providers import Standalone

        class Mirror(chatgptt.ChatGptt):
            url = "http://127.0.0.1:9"

        import g4f
        from g4f.providers.base_provider import AsyncGeneratorProvider, ProviderModelMixin
        assert issubclass(Mirror, AsyncGeneratorProvider), Mirror.__mro__
        assert issubclass(Mirror, ProviderModelMixin)
        assert Standalone not in Mirror.__mro__
        assert not any(type(f).__name__ == "_AfterImport" for f in sys.meta_path)
        print("ok")
        """
    )
    assert out == "ok\n"


@needs_gpt4free
def test_gpt4free_imported_first_is_adopted_at_once() -> None:
    out = run_python(
        """
        import sys
        import g4f
        from g4f.providers.base_provider import AsyncGeneratorProvider
        from chatgptt import ChatGptt
        assert issubclass(ChatGptt, AsyncGeneratorProvider)
        assert not any(type(f).__name__ == "_AfterImport" for f in sys.meta_path)
        print("ok")
        """
    )
    assert out == "ok\n"


def test_without_gpt4free_everything_works(emulator) -> None:
    out = run_python(
        f"""
        import sys
        sys.modules["g4f"] = None  # as if not installed: importing it fails
        from chatgptt import ChatGptt
        from chatgptt.providers import Provider, Standalone

        class Local(ChatGptt):
            url = {emulator.url!r}

        assert Local.__mro__[-4:] == (Provider, Standalone, __import__("abc").ABC, object)
        print("".join(Local.create_completion("gpt-4o", [{{"role": "user", "content": "Hi"}}])))
        """
    )
    assert out == "Hello from upstream: Hi\n"
