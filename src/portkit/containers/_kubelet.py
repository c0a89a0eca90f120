"""Kubernetes names from the kubelet's log links (pure).

Where containerd or CRI-O runs a node's pods, no Docker-style API names them; the CRI
is gRPC, which portkit does not speak. The kubelet names every container's log for
the log shippers (fluent-bit, promtail read it the same way)::

    /var/log/containers/<pod>_<namespace>_<container>-<64 hex id>.log

Pod and namespace names cannot hold ``_`` (they are DNS labels and subdomains), nor
can container names, so the name splits without doubt.

    >>> found = parse_log_name("coredns-5d78c9869d-x2x7q_kube-system_coredns-" + "ab" * 32 + ".log")
    >>> found[0] == "ab" * 32, found[1:]
    (True, ('coredns-5d78c9869d-x2x7q', 'kube-system', 'coredns'))
"""

from __future__ import annotations

import re

__all__ = ["parse_log_name"]

_NAME = re.compile(
    r"^(?P<pod>[a-z0-9][a-z0-9.-]{0,252})_(?P<ns>[a-z0-9][a-z0-9-]{0,62})_"
    r"(?P<container>[a-z0-9][a-z0-9-]{0,62})-(?P<id>[0-9a-f]{64})\.log$"
)


def parse_log_name(name: str) -> tuple[str, str, str, str] | None:
    """``(container id, pod, namespace, container name)`` of a kubelet log link's
    file name, or None for any other name."""
    m = _NAME.match(name)
    if m is None:
        return None
    return m.group("id"), m.group("pod"), m.group("ns"), m.group("container")
