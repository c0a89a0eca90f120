"""Capture the sock_diag and /proc/net test data (run as root; makes its own netns).

    unshare --net python3 tests/data/proc_net_capture.py tests/data

Inside a fresh network namespace it opens a known set of sockets (TCP listeners on
IPv4 and IPv6, an established pair each, a TIME-WAIT socket, UDP bound and connected,
IPv4 and IPv6), then saves, for each (family, protocol), the raw netlink dump bytes
(``sock_diag_<tcp|udp><4|6>.bin``), the /proc/net file (``proc_net_<tcp|tcp6|udp|udp6>.txt``)
and ``ss -tuanH`` (``proc_net_ss.txt``) as the expected answer.
"""

import os
import socket
import struct
import subprocess
import sys
import time

out = sys.argv[1]
subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
keep = []
for fam, host in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")):
    srv = socket.socket(fam)
    srv.bind((host, 0))
    srv.listen(7)
    cli = socket.create_connection(srv.getsockname()[:2])
    acc, _ = srv.accept()
    keep += [srv, cli, acc]
    # TIME-WAIT: the side that closes first keeps it
    c2 = socket.create_connection(srv.getsockname()[:2])
    a2, _ = srv.accept()
    c2.close()
    time.sleep(0.05)
    a2.close()
    u = socket.socket(fam, socket.SOCK_DGRAM)
    u.bind((host, 0))
    u2 = socket.socket(fam, socket.SOCK_DGRAM)
    u2.bind((host, 0))
    u2.connect(u.getsockname()[:2])
    keep += [u, u2]
wild = socket.socket(socket.AF_INET6)
wild.bind(("::", 0))
wild.listen()
keep.append(wild)
time.sleep(0.1)

nl = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 4)
for fam, famname in ((2, "4"), (10, "6")):
    for proto, pname in ((6, "tcp"), (17, "udp")):
        req = struct.pack("=BBBxI", fam, proto, 0, 0xFFF) + bytes(48)
        nl.send(struct.pack("=IHHII", 16 + len(req), 20, 0x301, 1, 0) + req)
        chunks = []
        while True:
            data = nl.recv(65536)
            chunks.append(data)
            if struct.unpack_from("=IH", data, len(data) - 20) == (20, 3):
                break
        with open(os.path.join(out, f"sock_diag_{pname}{famname}.bin"), "wb") as f:
            for c in chunks:  # length-prefixed, one record per recv()
                f.write(struct.pack("=I", len(c)) + c)
for name in ("tcp", "tcp6", "udp", "udp6"):
    with open(f"/proc/net/{name}") as src:
        text = src.read()
    with open(os.path.join(out, f"proc_net_{name}.txt"), "w") as dst:
        dst.write(text)
ss = subprocess.run(["ss", "-tuanH"], capture_output=True, text=True, check=True).stdout
with open(os.path.join(out, "proc_net_ss.txt"), "w") as f:
    f.write(ss)
