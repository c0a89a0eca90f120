"""The layout of a socket row, by name: ``row[LOCAL_PORT]`` instead of ``row[4]``.

A socket row is the tuple :attr:`portkit.model.SocketRecord.row` returns, in the order
of :data:`SOCKET_FIELDS`; the listing keeps rows as tuples (100,000 records cost more
than the listing itself). This module imports nothing, so the quickest commands can
name columns for free; in hot loops, bind the constants you need to locals.
"""

SOCKET_FIELDS = (
    "protocol",
    "family",
    "state",
    "local_ip",
    "local_port",
    "remote_ip",
    "remote_port",
    "recv_q",
    "send_q",
    "uid",
    "inode",
    "role",
    "pid",
    "process",
    "user",
    "pids",
    "cgroup",
)

(
    PROTOCOL,
    FAMILY,
    STATE,
    LOCAL_IP,
    LOCAL_PORT,
    REMOTE_IP,
    REMOTE_PORT,
    RECV_Q,
    SEND_Q,
    UID,
    INODE,
    ROLE,
    PID,
    PROCESS,
    USER,
    PIDS,
    CGROUP,
) = range(len(SOCKET_FIELDS))
