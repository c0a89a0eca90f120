"""portkit._constants.StrConstants behaves as enum.StrEnum does, for what portkit uses."""

from __future__ import annotations

import copy
import enum
import json
import pickle
import subprocess
import sys

import pytest

from portkit._constants import StrConstants
from portkit.model import Protocol, RangeClass, TcpState


class Light(StrConstants):
    """A test enumeration."""

    ALPHA = "a"
    BETA = "b"
    _hidden = "not a member"

    @property
    def shout(self) -> str:
        return self.value.upper()


class Real(enum.StrEnum):
    """The same, on the real StrEnum."""

    ALPHA = "a"
    BETA = "b"
    _ignore_ = ("_hidden",)

    @property
    def shout(self) -> str:
        return self.value.upper()


OPS = [
    lambda c: [m.name for m in c],
    lambda c: [m.value for m in c],
    lambda c: [str(m) for m in c],
    lambda c: [f"{m}|{m:>3}" for m in c],
    lambda c: repr(c.ALPHA).replace(c.__name__, "X"),
    lambda c: c("b").name,
    lambda c: c["BETA"].value,
    lambda c: len(c),
    lambda c: c.ALPHA == "a" and "a" == c.ALPHA,
    lambda c: hash(c.ALPHA) == hash("a"),
    lambda c: isinstance(c.ALPHA, str) and isinstance(c.ALPHA, c),
    lambda c: sorted(c.__members__),
    lambda c: c.ALPHA.shout,
    lambda c: json.dumps({"k": c.BETA}),
    lambda c: {c.ALPHA: 1}["a"],
    lambda c: c.ALPHA in c,
    lambda c: pickle.loads(pickle.dumps(c.BETA)) is c.BETA,
    lambda c: copy.deepcopy(c.BETA) is c.BETA,
    lambda c: c.ALPHA.upper(),
    lambda c: frozenset(c) == {c.ALPHA, c.BETA},
]


@pytest.mark.parametrize("op", OPS)
def test_same_behaviour_as_strenum(op: object) -> None:
    assert op(Light) == op(Real)  # type: ignore[operator]


def test_bad_value_and_name() -> None:
    for cls in (Light, Real):
        with pytest.raises(ValueError, match="is not a valid"):
            cls("zz")
        with pytest.raises(KeyError):
            cls["ZZ"]


def test_private_attributes_are_not_members() -> None:
    assert Light._hidden == "not a member"
    assert "_hidden" not in Light.__members__


def test_members_cannot_be_reassigned() -> None:
    with pytest.raises(AttributeError):
        Light.ALPHA = "z"  # type: ignore[misc]


def test_model_enumerations_are_light_at_run_time() -> None:
    assert isinstance(Protocol.TCP, StrConstants)
    assert [p.value for p in Protocol] == ["tcp", "udp", "sctp", "dccp"]
    assert TcpState("LISTEN") is TcpState.LISTEN
    assert RangeClass.WELL_KNOWN.ports.end == 1023
    code = "import sys, portkit.model; print('enum' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
