"""How long to wait, how fast to send, how many at once. Pure arithmetic on numbers.

* :class:`RttEstimator`: the probe timeout from measured round-trip times, as TCP
  computes its retransmission timeout (RFC 6298: ``srtt + 4 * rttvar``) and as nmap
  does per host, clamped to ``[min, max]``. A connect to a closed port gives an RTT
  for free, so on a LAN the timeout drops to the floor after the first answers.
* :class:`RateLimiter`: a token bucket capping probes per second.
* :func:`concurrency_for`: probes in flight allowed by the file-descriptor limit.

    >>> est = RttEstimator(initial=1.0, minimum=0.1, maximum=2.0)
    >>> est.timeout
    1.0
    >>> est.update(0.002); round(est.timeout, 3)
    0.1
"""

from __future__ import annotations

__all__ = [
    "DEFAULT_CONCURRENCY",
    "IPV6_ICMP_GRACE",
    "RateLimiter",
    "RttEstimator",
    "concurrency_for",
]

#: Probes in flight by default. Measured on a veth lab: an epoll connect engine is
#: fastest at about 500-1000 sockets; more buys nothing on a LAN and costs CPU.
DEFAULT_CONCURRENCY = 1000

#: Fds kept back for everything else the process has open (stdio, epoll, logs).
FD_RESERVE = 64

#: Some kernels report an ICMPv6 error to a connecting socket only at the first SYN
#: retransmit, one second after the SYN (measured: Linux 6.18 without IPV6_RECVERR).
#: An IPv6 probe is therefore never given up before this many seconds.
IPV6_ICMP_GRACE = 1.1


class RttEstimator:
    """Smoothed RTT and variance -> probe timeout (RFC 6298 section 2).

    Args:
        initial: the timeout before any sample (nmap: 1 s).
        minimum: the floor (nmap: 100 ms); the loop's own latency hides under it.
        maximum: the ceiling (nmap -T4: 1.25 s).
    """

    __slots__ = ("initial", "maximum", "minimum", "rttvar", "samples", "srtt", "timeout")

    def __init__(self, initial: float = 1.0, minimum: float = 0.1, maximum: float = 2.0) -> None:
        self.initial = initial
        self.minimum = minimum
        self.maximum = maximum
        self.srtt: float | None = None
        self.rttvar = 0.0
        self.samples = 0
        #: The probe timeout now (read once per probe: kept, not computed).
        self.timeout = initial

    def update(self, rtt: float) -> None:
        """Take one round-trip sample in seconds (only from a try that was not repeated).

        After 256 samples only every 16th counts: a full-range scan gives 65,535 of
        them and the estimate is long settled.
        """
        self.samples += 1
        if self.samples > 256 and self.samples & 15:
            return
        if self.srtt is None:
            self.srtt, self.rttvar = rtt, rtt / 2
        else:
            self.rttvar = 0.75 * self.rttvar + 0.25 * abs(self.srtt - rtt)
            self.srtt = 0.875 * self.srtt + 0.125 * rtt
        self.timeout = min(self.maximum, max(self.minimum, self.srtt + 4 * self.rttvar))


class FixedTimeout:
    """The same timeout whatever the samples (``--timeout`` given)."""

    __slots__ = ("samples", "timeout")

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self.samples = 0

    def update(self, rtt: float) -> None:
        self.samples += 1


class RateLimiter:
    """A token bucket: at most ``rate`` probes per second, bursts of ``burst``.

    The caller passes the clock reading, so the arithmetic is testable without time.

    >>> rl = RateLimiter(10, burst=1, now=0.0)
    >>> rl.wait(0.0), rl.take(0.0), rl.wait(0.0)
    (0.0, True, 0.1)
    """

    __slots__ = ("burst", "last", "rate", "tokens")

    def __init__(self, rate: float, *, burst: float | None = None, now: float = 0.0) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate = rate
        # A burst of 1/50 s worth of probes keeps the average without stalling the loop.
        self.burst = burst if burst is not None else max(1.0, rate / 50)
        self.tokens = self.burst
        self.last = now

    def _refill(self, now: float) -> None:
        if now > self.last:
            self.tokens = min(self.burst, self.tokens + (now - self.last) * self.rate)
            self.last = now

    def take(self, now: float) -> bool:
        """Spend one token if there is one."""
        self._refill(now)
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False

    def wait(self, now: float) -> float:
        """Seconds until a token is available (0 when one is)."""
        self._refill(now)
        return 0.0 if self.tokens >= 1.0 else (1.0 - self.tokens) / self.rate


def concurrency_for(requested: int | None, soft: int, hard: int) -> tuple[int, int]:
    """Probes in flight and the soft fd limit to ask for.

    Wants ``requested`` (default :data:`DEFAULT_CONCURRENCY`) sockets plus a reserve;
    raises the soft limit toward the hard one when that is needed, and otherwise
    shrinks the concurrency to what fits. Never less than 1.

    >>> concurrency_for(None, 1024, 1024)
    (960, 1024)
    >>> concurrency_for(2000, 1024, 1048576)
    (2000, 2064)
    """
    want = requested if requested is not None else DEFAULT_CONCURRENCY
    need = want + FD_RESERVE
    new_soft = soft
    if need > soft:
        new_soft = need if hard < 0 else min(need, hard)  # hard < 0: RLIM_INFINITY
    return max(1, min(want, new_soft - FD_RESERVE)), new_soft
