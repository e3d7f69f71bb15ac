"""Running inside gpt4free: the provider rebased onto the installed gpt4free's own classes.

gpt4free finds what it needs on a provider class by attribute — ``get_create_function``
in 0.4.x, ``live`` and ``use_stream_timeout`` in the 8.x releases, whatever the next one
adds. Rather than copy those, :func:`follow` makes the installed release's
``AsyncGeneratorProvider`` and ``ProviderModelMixin`` the bases of a class (``Provider``)
so that every provider class below it inherits what that release expects, while its own
methods stay first in the MRO.

Lazily: importing gpt4free loads its whole package (tens of milliseconds on top of
``import chatgptt``, and its logger setup), which a program that never uses it should
not pay. So :func:`follow` rebases at once only when gpt4free's base module is already
imported; otherwise a finder on ``sys.meta_path`` waits for that module and rebases right
after it has run — before any gpt4free code can see a provider class, since gpt4free
imports its bases before anything that uses them — and then removes itself. Assigning
``__bases__`` makes CPython recompute the MRO of every subclass, including those created
before (``class Mirror(ChatGptt)``).
"""

from __future__ import annotations

import contextlib
import importlib.abc
import sys
import threading
import warnings
from collections.abc import Callable, Sequence
from importlib.machinery import ModuleSpec
from types import ModuleType

__all__ = ["BASE_MODULES", "follow", "gpt4free_bases", "rebase"]

#: Where gpt4free keeps ``AsyncGeneratorProvider`` and ``ProviderModelMixin``: the module
#: that defines them (0.2 onwards) and the older path that re-exports them.
BASE_MODULES = ("g4f.providers.base_provider", "g4f.Provider.base_provider")


def gpt4free_bases(module: ModuleType) -> tuple[type, ...] | None:
    """gpt4free's ``(AsyncGeneratorProvider, ProviderModelMixin)`` from its base module
    (the mixin only where the release has one), or ``None`` if it has no such classes."""
    provider = getattr(module, "AsyncGeneratorProvider", None)
    mixin = getattr(module, "ProviderModelMixin", None)
    if not isinstance(provider, type):
        return None
    return (provider, mixin) if isinstance(mixin, type) else (provider,)


def rebase(target: type, module: ModuleType) -> bool:
    """Make gpt4free's classes from ``module`` the bases of ``target``.

    Returns whether ``target`` now stands on them. If the classes are missing or cannot
    be bases (a layout or MRO conflict in some release), ``target`` keeps its bases and a
    ``RuntimeWarning`` says that gpt4free may not accept the provider.
    """
    bases = gpt4free_bases(module)
    if bases is None:
        warnings.warn(
            f"{module.__name__} has no AsyncGeneratorProvider: {target.__name__} stays "
            "standalone, and this gpt4free may not accept it as a provider",
            RuntimeWarning,
            stacklevel=2,
        )
        return False
    if target.__bases__ == bases:
        return True
    try:
        target.__bases__ = bases
    except TypeError as exc:
        warnings.warn(
            f"{target.__name__} cannot stand on the classes of {module.__name__} ({exc}): it "
            "stays standalone, and this gpt4free may not accept it as a provider",
            RuntimeWarning,
            stacklevel=2,
        )
        return False
    return True


class _RunsAfter(importlib.abc.Loader):
    """A module's own loader, then ``after(module)``; the module keeps the real loader."""

    def __init__(self, loader: importlib.abc.Loader, after: Callable[[ModuleType], None]):
        self._loader = loader
        self._after = after

    def create_module(self, spec: ModuleSpec) -> ModuleType | None:
        return self._loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        try:
            self._loader.exec_module(module)
        finally:
            # The wrapper leaves no trace: reloads, tracebacks and resources see the real one.
            module.__loader__ = self._loader
            if module.__spec__ is not None:
                module.__spec__.loader = self._loader
        self._after(module)


class _AfterImport(importlib.abc.MetaPathFinder):
    """Calls ``after(module)`` once, when the first of ``names`` to be imported with
    gpt4free's classes has run; then leaves ``sys.meta_path``."""

    def __init__(self, names: Sequence[str], after: Callable[[ModuleType], object]) -> None:
        self._names = frozenset(names)
        self._after = after
        self._searching = threading.local()

    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None,
        target: ModuleType | None = None,
    ) -> ModuleSpec | None:
        if fullname not in self._names or getattr(self._searching, "active", False):
            return None
        self._searching.active = True  # the finders asked below must not find us again
        try:
            spec = _find_with_others(self, fullname, path, target)
        finally:
            self._searching.active = False
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        spec.loader = _RunsAfter(spec.loader, self._loaded)
        return spec

    def _loaded(self, module: ModuleType) -> None:
        if gpt4free_bases(module) is None:
            return  # not this one: wait for another of the names
        with contextlib.suppress(ValueError):
            sys.meta_path.remove(self)
        self._after(module)


def _find_with_others(
    finder: object, fullname: str, path: Sequence[str] | None, target: ModuleType | None
) -> ModuleSpec | None:
    """The spec the rest of ``sys.meta_path`` finds for ``fullname``."""
    for other in list(sys.meta_path):
        find_spec = getattr(other, "find_spec", None)
        if other is finder or find_spec is None:
            continue
        spec: ModuleSpec | None = find_spec(fullname, path, target)
        if spec is not None:
            return spec
    return None


def follow(target: type, modules: Sequence[str] = BASE_MODULES) -> None:
    """Rebase ``target`` onto gpt4free's classes now if gpt4free is imported, else as soon
    as it is (the first of ``modules`` to load with the classes wins)."""
    for name in modules:
        module = sys.modules.get(name)
        if module is not None and gpt4free_bases(module) is not None:
            rebase(target, module)
            return
    sys.meta_path.insert(0, _AfterImport(modules, lambda module: rebase(target, module)))
