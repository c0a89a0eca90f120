"""The Linux backend's I/O: netlink sock_diag dumps, the /proc/net fallback.

Everything here reads; the parsing is in ``_netlink`` and ``_procnet``. One dump is
sent per (family, protocol) with the state bitmask and the filter bytecode, so the
kernel copies out only matching sockets, and a LISTEN-only request never walks
the established hash (``inet_diag_dump_icsk``). OS errors become portkit errors
here and nowhere else (``portkit.errors`` is imported only then: a listing that
succeeds does not load it).

It stays cheap to import: ``_socket`` rather than ``socket`` (whose enums cost
more than the whole ``ls -tln`` listing).
"""

from __future__ import annotations

import _socket
import errno as _errno
import gc

from portkit._sockrow import INODE, PIDS
from portkit.see import _netlink as nl

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable
    from typing import Any

    from portkit.see._owners import Owners, OwnerScan
    from portkit.see._query import Query
    from portkit.see._scan import Scan

__all__ = ["Dump", "cgroup_paths", "dump", "scan", "with_owners"]

AF_NETLINK = 16
_BUF = 1 << 16
# The kernel state number of an unconnected UDP socket and of a TCP listener.
_CLOSE, _LISTEN = 7, 10

_PROC_FILES = {
    (nl.AF_INET, nl.IPPROTO_TCP): "tcp",
    (nl.AF_INET6, nl.IPPROTO_TCP): "tcp6",
    (nl.AF_INET, nl.IPPROTO_UDP): "udp",
    (nl.AF_INET6, nl.IPPROTO_UDP): "udp6",
}

#: Set once netlink was found missing: the /proc files are used from then on.
_netlink_broken = False


class Dump:
    """What one listing read: raw rows per (family, protocol), listening ports per
    protocol, cgroup ids per inode (``extended`` only), which source was used, and
    whether the kernel applied the filters (False: the caller filters rows).

    ``listen_ports`` holds raw (network-order) port values, as the rows do."""

    __slots__ = ("batches", "listen_ports", "cgroups", "source", "filtered")

    def __init__(self) -> None:
        self.batches: list[tuple[int, int, nl.RawRows]] = []
        self.listen_ports: dict[int, set[int]] = {}
        self.cgroups: dict[int, int] = {}
        self.source = "netlink"
        self.filtered = True


def _open_netlink() -> _socket.socket:
    return _socket.socket(AF_NETLINK, _socket.SOCK_RAW, nl.NETLINK_SOCK_DIAG)


def _netlink_rows(
    sock: _socket.socket,
    family: int,
    proto: int,
    states: int,
    bytecode: bytes,
    seq: int,
    cgroups: dict[int, int] | None = None,
    health: int = 0,
) -> nl.RawRows:
    if health:
        # ls -i/-m/-o: each row keeps its tcp_info, skmeminfo and timer (_tcpinfo)
        from portkit.see._tcpinfo import HealthRows, ext_bits

        sock.send(nl.build_request(family, proto, states, bytecode, seq, ext_bits(health)))
        with_health = HealthRows(health)
        while data := sock.recv(_BUF):
            if cgroups is not None:
                for row, attrs in nl.walk_with_attrs(data)[0]:
                    raw = attrs.get(nl.ATTR_CGROUP_ID)
                    if raw is not None and len(raw) == 8:
                        cgroups[row[9]] = int.from_bytes(raw, "little")
            if with_health.add_chunk(data):
                break
        return with_health
    sock.send(nl.build_request(family, proto, states, bytecode, seq))
    rows = nl.RawRows()
    recv = sock.recv
    while True:
        data = recv(_BUF)  # one reply skb (at most 32 KiB), kept as it came
        if not data:
            break
        if cgroups is None:
            part, done = nl.chunk_part(data)
            rows.add(part)
        else:
            pairs, done = nl.walk_with_attrs(data)
            rows.add([row for row, _ in pairs])
            for row, attrs in pairs:
                raw = attrs.get(nl.ATTR_CGROUP_ID)
                if raw is not None and len(raw) == 8:
                    cgroups[row[9]] = int.from_bytes(raw, "little")
        if done:
            break
    return rows


def _proc_rows(procfs: str, pid: int | None, family: int, proto: int) -> nl.RawRows:
    from portkit.see._procnet import parse_lines

    base = f"{procfs}/{pid}/net" if pid is not None else f"{procfs}/thread-self/net"
    try:
        with open(f"{base}/{_PROC_FILES[family, proto]}") as f:
            return nl.RawRows([parse_lines(f, family)])
    except FileNotFoundError:
        return nl.RawRows()  # no IPv6 in this kernel, or the process exited
    except PermissionError as exc:
        from portkit.errors import PermissionDenied

        raise PermissionDenied(f"cannot read {base}", needed="root") from exc


def _tcp_listen_only(states: int) -> int:
    """``ss -l`` asks for LISTEN and CLOSE; for TCP that makes the kernel walk the whole
    established hash (``inet_diag_dump_icsk`` skips it only when LISTEN is the sole
    bit), to find CLOSE sockets that are not hashed there anyway. Ask for LISTEN alone.

    >>> _tcp_listen_only((1 << 10) | (1 << 7)) == 1 << 10
    True
    """
    listen = 1 << _LISTEN
    return listen if states & listen and not states & ~(listen | 1 << _CLOSE) else states


def _listen_mask(proto: int) -> int:
    return 1 << (_LISTEN if proto == nl.IPPROTO_TCP else _CLOSE)


def _collect_netlink(
    families: tuple[int, ...],
    protocols: tuple[int, ...],
    states: int,
    bytecode: bytes,
    want_roles: bool,
    extended: bool,
    out: Dump,
    health: int = 0,
) -> None:
    sock = _open_netlink()
    try:
        seq = 0
        for proto in protocols:
            lmask = _listen_mask(proto)
            # Roles need the listening ports. They come from a LISTEN-only dump even
            # when the rows hold them: the kernel walks only the listening hash for
            # it (well under a millisecond), cheaper than one Python pass over 100k
            # rows; but a request for LISTEN alone (``ls -tl``) is that dump already.
            # UDP "listeners" (unconnected sockets) share the UDP table, so there the
            # rows are reused when they have them all.
            request = _tcp_listen_only(states) if proto == nl.IPPROTO_TCP else states
            has_all = request == lmask if proto == nl.IPPROTO_TCP else bool(states & lmask)
            separate = want_roles and (bool(bytecode) or not has_all)
            ports: set[int] = set()
            for family in families:
                seq += 1
                try:
                    rows = _netlink_rows(
                        sock,
                        family,
                        proto,
                        request,
                        bytecode,
                        seq,
                        out.cgroups if extended else None,
                        health,
                    )
                except nl.NetlinkError as exc:
                    if exc.errno == _errno.ENOENT:  # this protocol's diag module is absent
                        out.batches.append(
                            (family, proto, _proc_rows("/proc", None, family, proto))
                        )
                        out.filtered = False
                        continue
                    raise
                out.batches.append((family, proto, rows))
                if want_roles:
                    if separate:
                        seq += 1
                        lrows = _netlink_rows(sock, family, proto, lmask, b"", seq)
                    else:
                        lrows = rows
                    ports.update(r[2] for r in lrows if r[3] == 0)
            out.listen_ports[proto] = ports
    finally:
        sock.close()


def _collect_proc(
    families: tuple[int, ...], protocols: tuple[int, ...], pid: int | None, out: Dump
) -> None:
    out.source = "proc"
    out.filtered = False
    for proto in protocols:
        ports: set[int] = set()
        lstate = _LISTEN if proto == nl.IPPROTO_TCP else _CLOSE
        for family in families:
            rows = _proc_rows("/proc", pid, family, proto)
            out.batches.append((family, proto, rows))
            ports.update(r[2] for r in rows if r[1] == lstate and r[3] == 0)
        out.listen_ports[proto] = ports


def dump(
    families: tuple[int, ...],
    protocols: tuple[int, ...],
    states: int,
    bytecode: bytes,
    *,
    want_roles: bool = True,
    extended: bool = False,
    netns: str | None = None,
    netns_pid: int | None = None,
    health: int = 0,
) -> Dump:
    """Read the sockets of this (or another) network namespace.

    Args:
        families, protocols: what to dump (AF_* and IPPROTO_* numbers).
        states: kernel state bitmask.
        bytecode: inet_diag filter program (may be empty).
        want_roles: also find the listening ports (to tell servers from clients).
        extended: also read each socket's cgroup id.
        health: also read each socket's timer, tcp_info and skmeminfo (``_tcpinfo``'s
            ``WANT_*`` bits): the rows are then ``HealthRows``.
        netns: the namespace file to enter (``/run/netns/NAME``, ``/proc/PID/ns/net``).
        netns_pid: the pid behind ``netns`` when it is a process's, so the /proc
            fallback can read ``/proc/PID/net`` without entering.

    Raises:
        PermissionDenied: the namespace or /proc files could not be read.
    """
    out = Dump()

    def work() -> None:
        global _netlink_broken
        if not _netlink_broken:
            try:
                _collect_netlink(
                    families, protocols, states, bytecode, want_roles, extended, out, health
                )
                return
            except nl.NetlinkError as exc:
                if exc.errno != _errno.EINVAL or not bytecode:
                    _netlink_broken = True
                else:
                    # Bytecode this kernel rejects: dump unfiltered, filter in Python.
                    out.__init__()  # type: ignore[misc]
                    _collect_netlink(
                        families, protocols, states, b"", want_roles, extended, out, health
                    )
                    out.filtered = False
                    return
            except PermissionError as exc:
                from portkit.errors import PermissionDenied

                raise PermissionDenied("cannot read socket diagnostics", needed="root") from exc
            except OSError:
                _netlink_broken = True  # no NETLINK_SOCK_DIAG here (EPROTONOSUPPORT, ...)
            out.__init__()  # type: ignore[misc]
        _collect_proc(families, protocols, netns_pid if netns else None, out)

    # 100,000 rows are 100,000 new tuples: without this the cyclic collector walks
    # them again and again while they are built (about 15% of the CPU time), though
    # they cannot form cycles.
    paused = gc.isenabled()
    gc.disable()
    try:
        if netns is None:
            work()
        else:
            from portkit.see._netns import run_in_netns

            run_in_netns(netns, work)
    finally:
        if paused:
            gc.enable()
    return out


def proc_dump(
    families: tuple[int, ...], protocols: tuple[int, ...], pid: int | None = None
) -> Dump:
    """The /proc/net fallback on its own (tests compare it with netlink)."""
    out = Dump()
    _collect_proc(families, protocols, pid, out)
    return out


def cgroup_paths(ids: set[int], root: str = "/sys/fs/cgroup") -> dict[int, str]:
    """cgroup v2 ids (the directory's inode number) -> paths below the root."""
    import os

    found: dict[int, str] = {}
    if not ids:
        return found
    stack = [root]
    while stack and len(found) < len(ids):
        path = stack.pop()
        try:
            with os.scandir(path) as it:
                for entry in it:
                    if entry.is_dir(follow_symlinks=False):
                        try:
                            ino = entry.inode()
                        except OSError:
                            continue
                        if ino in ids:
                            found[ino] = entry.path[len(root) :] or "/"
                        stack.append(entry.path)
        except OSError:
            continue
    try:
        ino = os.stat(root).st_ino
        if ino in ids:
            found[ino] = "/"
    except OSError:
        pass
    return found


# --- the backend's scan: the dump and the owner pass, in parallel -----------------


def scan(
    query: Query, netns_path: str | None, netns_pid: int | None, procfs: str, roles: bool
) -> Scan:
    """Run ``query``: rows in kernel order, owners attached when the query asks.

    The owner pass (BPF or /proc, ``_owners``) runs in worker processes while the
    sockets are dumped. Where the kernel did all the filtering, the raw rows are kept
    undecoded (:class:`~portkit.see._scan.Scan` decodes them on first use).
    """
    from portkit.see._rows import decode
    from portkit.see._scan import Scan

    pending = None
    if query.owners:
        from portkit.see._owners import OwnerScan

        # The owner pass (BPF or /proc) runs in worker processes while the sockets
        # are dumped.
        pending = OwnerScan(procfs)
    try:
        found = dump(
            query.families,
            query.protocols,
            query.state_mask(),
            query.bytecode(),
            want_roles=roles,
            extended=query.extended,
            netns=netns_path,
            netns_pid=netns_pid,
            health=query.health,
        )
    except BaseException:
        if pending is not None:
            pending.cancel()
        raise
    if found.filtered and not query.extended and not query.owner_filtered:
        if pending is None:
            return Scan(None, 0, found.source, found.batches, found.listen_ports)
        from itertools import chain

        inodes = chain.from_iterable(
            col for _, _, raw in found.batches for col in raw.inode_columns()
        )
        shown = sum(len(raw) for _, _, raw in found.batches)
        owners, names, hidden = _owner_maps(inodes, shown, procfs, pending)
        return Scan(None, hidden, found.source, found.batches, found.listen_ports, owners, names)
    health = None
    if query.health:
        from portkit.see._tcpinfo import health_map

        health = health_map(found.batches)  # before any row is filtered out
    rows: list[tuple[Any, ...]] = []
    for family, proto, raw in found.batches:
        batch = decode(raw, family, proto, found.listen_ports.get(proto, ()))
        if not found.filtered:
            cache: dict[str, tuple[int, int]] = {}
            batch = [r for r in batch if query.matches(r, cache)]
        rows.extend(batch)
    hidden = 0
    if pending is not None:
        rows, hidden = with_owners(rows, query, procfs, pending)
    if query.extended and found.cgroups:
        from portkit.see._rows import with_cgroups

        ids = {found.cgroups[r[INODE]] for r in rows if r[INODE] in found.cgroups}
        paths = cgroup_paths(ids)
        rows = with_cgroups(
            rows, {ino: paths[cg] for ino, cg in found.cgroups.items() if cg in paths}
        )
    return Scan(rows, hidden, found.source, health=health)


def _owner_maps(
    shown: Iterable[int], count: int, procfs: str, pending: OwnerScan | None = None
) -> tuple[Owners, dict[int, tuple[str | None, str | None]], int]:
    """``({inode: (pid...)}, {pid: (name, user)}, hidden)``: every socket's holders
    (from a scan started earlier or from one done now), and names and users of the
    processes holding the ``count`` inodes ``shown`` (of the first holder of every
    socket, when most of them are shown: the map's own order is the cheap one)."""
    from itertools import chain
    from operator import itemgetter

    from portkit.see._owners import process_info, scan_owners

    if pending is not None:
        owners, hidden = pending.result(None)
    else:
        owners, hidden = scan_owners(None, procfs)
    # Both run in C (map/filter/chain); looking 100,000 shown inodes up in the map
    # jumps around memory (about 20 ms), reading its values in order does not (2 ms).
    if 2 * count >= len(owners):
        pids = set(map(itemgetter(0), owners.values()))
    else:
        pids = set(chain.from_iterable(filter(None, map(owners.get, shown))))
    info = process_info(pids, procfs)
    return owners, {pid: (pi.name, pi.user) for pid, pi in info.items()}, hidden


def with_owners(
    rows: list[tuple[Any, ...]], query: Query, procfs: str, pending: OwnerScan | None = None
) -> tuple[list[tuple[Any, ...]], int]:
    """Attach owners (pid, process, user, pids) to ``rows``; drop the rows an owner
    filter of ``query`` rejects. Returns the rows and the hidden processes' count."""
    from portkit.see._rows import attach_owners

    owners, names, hidden = _owner_maps([r[INODE] for r in rows], len(rows), procfs, pending)
    rows = attach_owners(rows, owners, names)
    if query.owner_filtered:
        rows = [
            r
            for r in rows
            if r[PIDS]
            and query.owner_matches(
                r[PIDS], tuple(names.get(p, ("", ""))[0] or "" for p in r[PIDS])
            )
        ]
    return rows, hidden
