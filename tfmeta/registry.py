"""The method registry: one place that names every meta-learning method.

``tfmeta list``, the CLI's ``train METHOD`` and ``tfmeta.load`` (which
rebuilds the class named in an export's ``tfmeta.json``) all look methods up
here; nothing is imported by a name read from a file. A new method registers
itself where it is defined::

    @tfmeta.register("anil", "first-order ANIL: adapt the head only")
    class ANIL(tfmeta.MetaLearner):
        ...

``cli=False`` keeps a method out of ``tfmeta train`` (it still shows in
``tfmeta list``, marked, and loads), for methods that need a learner the
CLI's task families do not build (WarpGrad's warp layers).
"""

import collections

Method = collections.namedtuple("Method", ["name", "cls", "description", "cli"])

_METHODS = {}


def register(name, description, cli=True):
    """Class decorator: registers a ``MetaLearner`` subclass under ``name``.

    Args:
      name: the method's name, lower case, as ``tfmeta train`` and
        ``tfmeta list`` show it; a name taken by another class is refused.
      description: one line for ``tfmeta list``.
      cli: offer the method in ``tfmeta train`` (default ``True``);
        ``False`` for methods whose learner the CLI's task families cannot
        build.
    """
    def decorate(cls):
        known = _METHODS.get(name)
        if known is not None and known.cls.__qualname__ != cls.__qualname__:
            raise ValueError(f"method name {name!r} is taken by "
                             f"{known.cls.__qualname__}.")
        _METHODS[name] = Method(name, cls, description, bool(cli))
        return cls
    return decorate


def methods(cli_only=False):
    """``{name: Method}`` in registration order.

    Args:
      cli_only: only the methods ``tfmeta train`` offers (default ``False``).
    """
    return {k: m for k, m in _METHODS.items() if m.cli or not cli_only}


def get(name):
    """The class registered as ``name``; ``KeyError`` naming the choices.

    Args:
      name: a registered method name, e.g. ``"leap"``.
    """
    if name not in _METHODS:
        raise KeyError(f"unknown method {name!r}; choose from "
                       f"{sorted(_METHODS)}.")
    return _METHODS[name].cls


def by_class_name(class_name):
    """The registered class whose ``__name__`` is ``class_name`` (as
    ``tfmeta.json`` records it), or ``None``.

    Args:
      class_name: e.g. ``"Leap"``.
    """
    for method in _METHODS.values():
        if method.cls.__name__ == class_name:
            return method.cls
    return None
