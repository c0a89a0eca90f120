"""``StrConstants``: the part of :class:`enum.StrEnum` portkit uses, without its import cost.

Importing :mod:`enum` (with the ``functools``, ``collections`` and ``operator`` it pulls
in) and building the model's three enumerations takes about 6 ms, half of a bare
interpreter start, and ``portkit lookup 22`` and ``portkit ls -tln`` are measured
against exactly that start (bench/lookup, bench/ls). So the model's enumerations are
built on this class at run time, while type checkers see :class:`enum.StrEnum`
(``model.py`` imports this module only outside ``TYPE_CHECKING``): members are typed as
members, and the runtime behaves the same for everything portkit does with them, which
``tests/test_constants.py`` checks against a real ``StrEnum``:

- members are ``str`` instances equal to their value, with ``.name`` and ``.value``;
- ``str(m)`` and ``format(m)`` give the value, ``repr(m)`` gives ``<Cls.NAME: 'value'>``;
- ``Cls(value)`` returns the member (``ValueError`` otherwise), ``Cls[name]`` by name;
- ``iter(Cls)``, ``len(Cls)``, ``Cls.__members__`` in definition order; pickling keeps identity.

Class attributes whose names start with ``_`` stay plain values, as in :mod:`enum`.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator
    from typing import Any

__all__ = ["StrConstants"]


class _ConstantsMeta(type):
    _member_map_: dict[str, Any]
    _value2member_map_: dict[str, Any]

    def __new__(mcs, name: str, bases: tuple[type, ...], namespace: dict[str, Any]) -> Any:
        values = {
            key: value
            for key, value in namespace.items()
            if not key.startswith("_") and type(value) is str
        }
        for key in values:
            del namespace[key]
        cls = super().__new__(mcs, name, bases, namespace)
        members: dict[str, Any] = {}
        by_value: dict[str, Any] = {}
        for key, value in values.items():
            member: Any = str.__new__(cls, value)  # type: ignore[arg-type]
            member._name_ = key
            members[key] = member
            by_value.setdefault(value, member)
            type.__setattr__(cls, key, member)
        type.__setattr__(cls, "_member_map_", members)
        type.__setattr__(cls, "_value2member_map_", by_value)
        return cls

    def __call__(cls, value: object) -> Any:
        try:
            return cls._value2member_map_[value]  # type: ignore[index]
        except (KeyError, TypeError):
            raise ValueError(f"{value!r} is not a valid {cls.__name__}") from None

    def __getitem__(cls, name: str) -> Any:
        return cls._member_map_[name]

    def __iter__(cls) -> Iterator[Any]:
        return iter(cls._member_map_.values())

    def __len__(cls) -> int:
        return len(cls._member_map_)

    def __contains__(cls, value: object) -> bool:
        return isinstance(value, cls) or value in cls._value2member_map_

    @property
    def __members__(cls) -> dict[str, Any]:
        return dict(cls._member_map_)

    def __setattr__(cls, name: str, value: object) -> None:
        if name in cls.__dict__.get("_member_map_", {}):
            raise AttributeError(f"cannot reassign member {name!r}")
        super().__setattr__(name, value)


class StrConstants(str, metaclass=_ConstantsMeta):
    """Base class: ``class Protocol(StrConstants): TCP = "tcp"``."""

    _name_: str

    @property
    def name(self) -> str:
        return self._name_

    @property
    def value(self) -> str:
        return str.__str__(self)

    def __str__(self) -> str:
        return str.__str__(self)

    def __format__(self, spec: str) -> str:
        return str.__format__(str.__str__(self), spec)

    def __repr__(self) -> str:
        return f"<{type(self).__name__}.{self._name_}: {str.__repr__(self)}>"

    def __reduce_ex__(self, protocol: object) -> tuple[Any, tuple[str]]:
        return type(self), (str.__str__(self),)

    __hash__ = str.__hash__
