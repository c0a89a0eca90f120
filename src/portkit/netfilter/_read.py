"""Reading a network namespace's NAT rules (I/O).

``nft -j list ruleset`` first (libnftables' JSON: every nftables table, those of
iptables-nft included). Where its DNAT rules are iptables-nft's ``xt`` targets (no
address in the JSON), ``iptables-nft-save -t nat`` (``ip6tables-nft-save``) says
them. Legacy x_tables are invisible to nftables: when the namespace has a legacy nat
table (``/proc/net/ip_tables_names`` lists it), ``iptables-legacy-save`` reads it;
without ``-t`` it dumps only the tables that exist, where ``-t nat`` would load and
create one.

The tools run as argv lists (no shell), inside the namespace with ``nsenter --net=PATH``
when one is given (no fork of this process: callers read rules from threads), with a
deadline and a cap on their output; ``LC_ALL=C`` keeps their errors readable. A tool
that is not installed is a note, not an error; a permission problem says what is
missing.
"""

from __future__ import annotations

import os
import selectors
import shutil
import subprocess
import time

from portkit.errors import PermissionDenied, PortkitError

__all__ = ["MAX_OUTPUT", "TIMEOUT", "legacy_tables", "netns_file", "run_tool"]

#: Bytes of a tool's output read at most (a kube-proxy host's ruleset is a few MB).
MAX_OUTPUT = 64 * 1024 * 1024
#: Seconds a tool may take.
TIMEOUT = 10.0
_DENIED = ("Operation not permitted", "Permission denied", "you must be root")


def netns_file(netns: str) -> str:
    """A namespace given by path (``/run/netns/lab``, ``/proc/812/ns/net``) or by its
    ``ip netns`` name (``lab``) -> its path."""
    return netns if "/" in netns else f"/run/netns/{netns}"


def _bounded(argv: list[str], timeout: float, limit: int) -> tuple[int, bytes, bytes]:
    env = {**os.environ, "LC_ALL": "C"}
    proc = subprocess.Popen(
        argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
    )
    assert proc.stdout is not None
    assert proc.stderr is not None
    out, err = bytearray(), bytearray()
    deadline = time.monotonic() + timeout
    try:
        with selectors.DefaultSelector() as sel:
            sel.register(proc.stdout, selectors.EVENT_READ, out)
            sel.register(proc.stderr, selectors.EVENT_READ, err)
            while sel.get_map():
                left = deadline - time.monotonic()
                if left <= 0:
                    raise PortkitError(f"{argv[0]} did not finish within {timeout:g} s")
                for key, _ in sel.select(left):
                    data = os.read(key.fd, 1 << 16)
                    if not data:
                        sel.unregister(key.fileobj)
                        continue
                    buf = key.data
                    buf += data
                    if buf is out and len(out) > limit:
                        raise PortkitError(f"{argv[0]} wrote more than {limit} bytes")
                    if buf is err and len(err) > 1 << 16:
                        del err[1 << 15 :]
        code = proc.wait(max(deadline - time.monotonic(), 0.5))
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    finally:
        proc.stdout.close()
        proc.stderr.close()
    return code, bytes(out), bytes(err)


def run_tool(
    argv: list[str], netns: str | None = None, timeout: float = TIMEOUT, limit: int = MAX_OUTPUT
) -> str | None:
    """The tool's stdout, or None when it is not installed.

    Raises:
        PermissionDenied: the tool (or entering the namespace) needs CAP_NET_ADMIN /
            CAP_SYS_ADMIN, which this process lacks.
        PortkitError: no such namespace; the tool failed otherwise, ran too long, or
            wrote too much.
    """
    if shutil.which(argv[0]) is None:
        return None
    full = argv
    if netns is not None:
        path = netns_file(netns)
        if not os.path.exists(path):
            raise PortkitError(f"no network namespace at {path}")
        full = ["nsenter", f"--net={path}", "--", *argv]
    try:
        code, out, err = _bounded(full, timeout, limit)
    except OSError as exc:
        raise PortkitError(f"cannot run {argv[0]}: {exc.strerror}") from exc
    if code != 0:
        text = " ".join(err.decode("utf-8", "replace").split())
        if any(mark in text for mark in _DENIED):
            where = f" of {netns}" if netns else ""
            what = "enter the namespace" if text.startswith("nsenter") else f"run {argv[0]}"
            raise PermissionDenied(
                f"cannot read the NAT rules{where} ({what}: {text[:120]})",
                needed="root or CAP_NET_ADMIN" + (" and CAP_SYS_ADMIN" if netns else ""),
            )
        raise PortkitError(f"{' '.join(argv)} failed: {text[:200] or f'exit {code}'}")
    return out.decode("utf-8", "replace")


def legacy_tables(netns: str | None = None, family: int = 4) -> set[str] | None:
    """The legacy x_tables tables of the namespace (``{"nat", "filter"}``); None when
    that cannot be told (no permission to read the list). Inside another namespace
    the list is read by a ``cat`` there (``/proc/self/net`` is the reader's)."""
    name = "ip6_tables_names" if family == 6 else "ip_tables_names"
    if netns is None:
        try:
            with open(f"/proc/net/{name}") as f:
                return set(f.read().split())
        except FileNotFoundError:
            return set()  # no x_tables in this kernel (or not loaded): none
        except OSError:
            return None
    try:
        text = run_tool(["cat", f"/proc/self/net/{name}"], netns, timeout=5.0, limit=1 << 16)
    except PortkitError:
        return None
    return set(text.split()) if text is not None else None
