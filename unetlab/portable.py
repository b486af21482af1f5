"""One class definition, written once against ``ops``, made once per framework.

A block is written as a function of ``ops`` (the layer vocabulary of
:mod:`unetlab.frameworks.torch_ops` or :mod:`unetlab.frameworks.jittor_ops`) that returns a
class.  Decorated with :func:`portable` at module level, the function's name holds a
:class:`PortableClass`: ``ResBlock.torch`` and ``ResBlock.jittor`` are the two framework classes,
each made on first use and then always the same object.  Their qualified names are
``ResBlock.torch`` and ``ResBlock.jittor`` in the defining module, so ``pickle``,
``copy.deepcopy`` and ``torch.save``/``torch.load`` find them again, also in a fresh process.
"""
from __future__ import annotations

from typing import Callable, Iterable

from .errors import UnetlabError
from .frameworks import FRAMEWORKS, ops_for


class PortableClass:
    """A class per framework from one ``factory(ops) -> class``.

    ``Block.torch`` / ``Block.jittor`` (or ``Block.of(ops)``, ``Block.in_framework(name)``) is
    the class for that framework.  Pass a ``PortableClass`` as a :class:`~unetlab.BlockDef`'s
    implementations.  Bind it to a module-level name equal to the factory's (``@portable`` does)
    so that the classes it makes can be pickled.
    """

    def __init__(self, factory: Callable, frameworks: Iterable[str] = FRAMEWORKS):
        self.factory = factory
        self.frameworks = tuple(frameworks)
        unknown = sorted(set(self.frameworks) - set(FRAMEWORKS))
        if unknown:
            raise UnetlabError(f"{factory.__qualname__}: unknown framework {unknown[0]!r} "
                               f"(frameworks: {', '.join(FRAMEWORKS)})")
        self.__module__ = factory.__module__
        self.__name__ = factory.__name__
        self.__qualname__ = factory.__qualname__
        self.__doc__ = factory.__doc__
        self._classes: dict[str, type] = {}

    def in_framework(self, framework: str) -> type:
        """The class for ``framework``, made on the first call."""
        if framework not in self._classes:
            if framework not in self.frameworks:
                raise UnetlabError(f"{self.__qualname__} has no {framework} class "
                                   f"(it has: {', '.join(self.frameworks)})")
            cls = self.factory(ops_for(framework))
            cls.__module__ = self.__module__
            cls.__qualname__ = f"{self.__qualname__}.{framework}"
            self._classes[framework] = cls
        return self._classes[framework]

    def of(self, ops) -> type:
        """The class for the framework whose layer vocabulary is ``ops``."""
        return self.in_framework(ops.NAME)

    def __getattr__(self, name: str) -> type:
        # ``Block.torch``: also how pickle finds a class by its qualified name
        if name in FRAMEWORKS and name in self.__dict__.get("frameworks", ()):
            return self.in_framework(name)
        raise AttributeError(name)

    def __reduce__(self):
        # pickled by reference, as a class is (pickle protocols < 4, torch.save's, reach
        # ``Block.torch`` as ``getattr(Block, "torch")`` and so pickle ``Block`` itself)
        return self.__qualname__

    def loaders(self) -> dict:
        """``{framework: zero-argument loader}``, the form :class:`BlockDef` keeps."""
        return {fw: _Loader(self, fw) for fw in self.frameworks}

    def __repr__(self) -> str:
        return f"<portable class {self.__module__}.{self.__qualname__}>"


class _Loader:
    def __init__(self, portable_class: PortableClass, framework: str):
        self.portable_class, self.framework = portable_class, framework

    def __call__(self) -> type:
        return self.portable_class.in_framework(self.framework)


def portable(factory: Callable | None = None, *, frameworks: Iterable[str] = FRAMEWORKS):
    """Decorate ``factory(ops) -> class`` to make a :class:`PortableClass` (see the module doc).

    ``@portable`` or ``@portable(frameworks=("torch",))``.
    """
    if factory is None:
        return lambda f: PortableClass(f, frameworks)
    return PortableClass(factory, frameworks)
