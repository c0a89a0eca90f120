"""The pure folds behind traffic and forecasts: the ledger, the exhaustion forecast, and
the exporter's families for them."""

from __future__ import annotations

import math

from hypothesis import given
from hypothesis import strategies as st

from portkit.exporter.metrics import families
from portkit.exporter.snapshot import Snapshot
from portkit.model import Endpoint, PortRange, Protocol, SocketRecord, TcpState
from portkit.see import _tcpinfo as ti
from portkit.see._forecast import TIME_WAIT_SECONDS, exhaustion_seconds, forecasts, time_wait_ages
from portkit.see._traffic import Ledger, PortTraffic

EPH = PortRange(40000, 40299)


def _info(**fields: int) -> tuple[int | None, ...]:
    values: list[int | None] = [0] * len(ti.TCP_INFO_FIELDS)
    values[ti.STATE] = 1
    for name, value in fields.items():
        values[ti.TCP_INFO_FIELDS.index(name)] = value
    return tuple(values)


def _row(state: TcpState, lport: int, rport: int, role: str, inode: int = 0) -> tuple[object, ...]:
    return SocketRecord(
        Protocol.TCP, 4, state, "10.0.0.1", lport, "10.0.0.2", rport, inode=inode, role=role
    ).row


def test_exhaustion_by_hand() -> None:
    # 100 TIME-WAIT sockets made over the last 4 s at 25/s; 300 ports: 8 s left
    remaining = [TIME_WAIT_SECONDS - i / 25 for i in range(100)]
    assert exhaustion_seconds(300, 0, remaining, 25.0) == 8.0
    assert exhaustion_seconds(300, 300, [], 1.0) == 0.0  # already held
    assert exhaustion_seconds(300, 0, [], 0.0) is None  # no new connections
    assert exhaustion_seconds(300, 0, remaining, 4.0) == 50.0  # the old ones still held
    assert exhaustion_seconds(300, 0, remaining, 3.0) is None  # levels off at 180


@given(
    st.integers(1, 2000),
    st.integers(0, 500),
    st.lists(st.floats(0, 60), max_size=300),
    st.floats(0, 500, allow_nan=False),
)
def test_exhaustion_is_the_first_moment_it_is_full(
    capacity: int, active: int, remaining: list[float], rate: float
) -> None:
    def held(s: float) -> float:
        return active + sum(1 for r in remaining if r > s) + rate * min(s, TIME_WAIT_SECONDS)

    got = exhaustion_seconds(capacity, active, remaining, rate)
    if got is None:
        assert all(held(s) < capacity for s in (0, 10, 30, 59.9, 60, 600))
    else:
        assert 0 <= got <= TIME_WAIT_SECONDS
        assert held(got) >= capacity - 1e-6
        if got > 0.01:
            assert held(got - 0.01) < capacity + 1e-6 or any(
                abs(r - (got - 0.01)) < 0.02 for r in remaining
            )


def test_forecasts_from_held_ports_and_ages() -> None:
    key = ("10.0.0.1", "10.0.0.2", 5432)
    ages = {key: [TIME_WAIT_SECONDS - i / 25 for i in range(100)]}  # aged 0..3.96 s
    (f,) = forecasts({key: 101}, ages, EPH)  # and one open connection
    assert (f.ip, f.port, f.in_use, f.time_wait, f.capacity) == ("10.0.0.2", 5432, 101, 100, 300)
    assert math.isclose(f.rate, 100 / 3.96, rel_tol=1e-3)
    assert f.seconds is not None and 7.5 < f.seconds < 8.0
    # without timers (-1): the population is taken as 60 s old
    (g,) = forecasts({key: 101}, {key: [-1.0] * 100}, EPH)
    assert math.isclose(g.rate, 100 / 60)
    assert g.seconds is None
    assert forecasts({key: 101}, ages, EPH, only={("10.9.9.9", 1)}) == ()


def test_time_wait_ages_from_a_dump() -> None:
    """The client side's TIME-WAIT sockets, grouped by destination, from raw rows."""
    from portkit.see import _netlink as nl

    def raw(state: int, sport: int, dport: int) -> tuple[object, ...]:
        src, dst = bytes([10, 0, 0, 1]) + bytes(12), bytes([10, 0, 0, 2]) + bytes(12)
        return (2, state, nl.htons(sport), nl.htons(dport), src, dst, 0, 0, 0, 0)

    rows = nl.RawRows(
        [[raw(6, 40001, 5432), raw(6, 40002, 5432), raw(1, 40003, 5432), raw(6, 80, 40010)]]
    )
    ages = time_wait_ages([(2, 6, rows)], {6: {nl.htons(80)}}, EPH)
    assert ages == {("10.0.0.1", "10.0.0.2", 5432): [-1.0, -1.0]}


def test_ledger_keeps_totals_growing() -> None:
    led = Ledger()
    assert led.update({1: (80, 10, 20, 0, 2)}, [])[80] == (10, 20, 0, 2)
    assert led.update({1: (80, 30, 40, 1, 5)}, [])[80] == (30, 40, 1, 5)
    # another socket on the same port, the first one gone without an event yet
    assert led.update({2: (80, 1, 1, 0, 1)}, [])[80] == (31, 41, 1, 6)
    # the first one's destroy event: its final counts replace the last ones seen
    assert led.update({2: (80, 1, 1, 0, 1)}, [(1, 80, (33, 44, 1, 6))])[80] == (34, 45, 1, 7)
    # a connection never seen (opened and closed between readings) counts too
    got = led.update({2: (80, 1, 1, 0, 1)}, [(9, 80, (100, 0, 0, 3))], {80})
    assert got[80] == (134, 45, 1, 10)
    # and one on a port that is no listener's does not
    got = led.update({2: (80, 1, 1, 0, 1)}, [(10, 5555, (7, 7, 7, 7))], {80})
    assert 5555 not in got


def test_families_for_traffic_and_forecast() -> None:
    rows = [
        SocketRecord(Protocol.TCP, 4, TcpState.LISTEN, "0.0.0.0", 80, send_q=128, role="server").row
    ]
    rows += [_row(TcpState.TIME_WAIT, 40000 + i, 5432, "client") for i in range(30)]
    ages = {("10.0.0.1", "10.0.0.2", 5432): [59.0 - 0.1 * i for i in range(30)]}
    snap = Snapshot.from_rows(rows, EPH, time_wait=ages)
    snap.traffic = {80: PortTraffic((1000, 2000, 3, 40), [0.001, 0.002, 0.010])}
    dests = (Endpoint.parse("10.0.0.2:5432"), Endpoint.parse("10.9.9.9:1"))
    fams = {f.name: f for f in families(snap, destinations=dests)}
    sent = fams["portkit_port_sent_bytes"]
    assert sent.kind == "counter" and sent.samples == [(("tcp", "80"), 1000.0)]
    assert fams["portkit_port_retransmitted_segments"].samples == [(("tcp", "80"), 3.0)]
    ((labels, (count, total, quantiles)),) = fams["portkit_port_rtt_seconds"].samples
    assert (labels, count, quantiles[0.5], quantiles[0.99]) == (("tcp", "80"), 3, 0.002, 0.010)
    assert math.isclose(total, 0.013)
    seconds = dict(fams["portkit_ephemeral_exhaustion_seconds"].samples)
    assert seconds[("10.9.9.9:1",)] == math.inf
    assert 0 < seconds[("10.0.0.2:5432",)] < math.inf
    assert dict(fams["portkit_destination_time_wait"].samples)[("10.0.0.2:5432",)] == 30
    assert snap.stats.forecasts and snap.stats.forecasts[0].time_wait == 30
