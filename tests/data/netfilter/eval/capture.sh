#!/bin/sh
# Captures the rulesets of this folder (see README.md), as root, each in a network
# namespace of its own with a private mount namespace: ufw and firewalld change only
# the namespace's rules and a copy of their /etc folders, never the host's. Needs ufw,
# firewalld, dbus-daemon, nftables and iptables (nft backend). Writes into the folder
# this script is in; the host's ruleset is compared before and after.
set -eu
HERE=$(cd "$(dirname "$0")" && pwd)
DATA=$(dirname "$HERE")
WORK=$(mktemp -d)
NS="pkcap-$$"
DBUS_PID=""
FW_PID=""
cleanup() {
    [ -n "$FW_PID" ] && kill "$FW_PID" 2>/dev/null || true
    [ -n "$DBUS_PID" ] && kill "$DBUS_PID" 2>/dev/null || true
    for n in ufw fw dock ufwdock; do ip netns del "$NS-$n" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT
before=$(nft list ruleset; iptables-legacy-save 2>/dev/null | grep -v '^#')
in_ns() { ns=$1; shift; ip netns exec "$NS-$ns" "$@"; }
save() { grep -v '^#' | grep -v '^# Warning'; }

# --- ufw (Debian 12's 0.36.2, iptables-nft): defaults plus the rules below -----------------
cp -a /etc/ufw "$WORK/ufw-etc"
ufw_rules='
ufw --force enable
ufw allow 22/tcp
ufw allow from 10.99.0.0/24 to any port 5432 proto tcp
ufw deny 8080/tcp
ufw reject 9090/tcp
ufw limit 2222/tcp
ufw allow 60000:61000/udp
ufw allow in on eth1 to any port 443 proto tcp
'
ip netns add "$NS-ufw"
in_ns ufw ip link set lo up
in_ns ufw unshare -m sh -c "mount --bind '$WORK/ufw-etc' /etc/ufw; $ufw_rules" >/dev/null
in_ns ufw iptables-save | save > "$HERE/ufw-iptables-save.txt"
in_ns ufw ip6tables-save | save > "$HERE/ufw-ip6tables-save.txt"
in_ns ufw nft -j list ruleset | python3 -m json.tool --indent 1 > "$HERE/ufw.json"

# --- ufw, then Docker's rules added the way dockerd adds them (FORWARD jumps on top) -------
rm -rf "$WORK/ufw-etc" && cp -a /etc/ufw "$WORK/ufw-etc"
ip netns add "$NS-ufwdock"
in_ns ufwdock ip link set lo up
in_ns ufwdock unshare -m sh -c "mount --bind '$WORK/ufw-etc' /etc/ufw; ufw --force enable; ufw allow 22/tcp" >/dev/null
# Docker's own chains and its nat table, from the capture of its daemon (../)
python3 - "$DATA/docker-iptables-save.txt" > "$WORK/docker-chains.txt" <<'EOF'
import sys
out, table = [], None
for line in open(sys.argv[1]).read().splitlines():
    if line.startswith("*"):
        table = line[1:]
        out.append(line)
    elif line.startswith(":") and table == "filter" and line.split()[0][1:] in ("INPUT", "FORWARD", "OUTPUT"):
        continue
    elif line.startswith("-A FORWARD"):
        continue
    else:
        out.append(line)
print("\n".join(out))
EOF
in_ns ufwdock iptables-nft-restore --noflush < "$WORK/docker-chains.txt"
n=1
grep '^-A FORWARD ' "$DATA/docker-iptables-save.txt" | sed 's/^-A FORWARD //' | while read -r rule; do
    # shellcheck disable=SC2086
    in_ns ufwdock iptables-nft -I FORWARD $n $rule
    n=$((n + 1))
done
in_ns ufwdock iptables-save | save > "$HERE/ufw-docker-iptables-save.txt"

# --- Docker with a DOCKER-USER rule that drops a source network --------------------------
ip netns add "$NS-dock"
in_ns dock iptables-nft-restore < "$DATA/docker-iptables-save.txt"
in_ns dock iptables-nft -I DOCKER-USER -s 10.246.0.0/24 -j DROP
in_ns dock iptables-save | save > "$HERE/docker-user-drop-iptables-save.txt"
in_ns dock nft -j list ruleset | python3 -m json.tool --indent 1 > "$HERE/docker-user-drop.json"

# --- firewalld 1.3 (nftables backend) without systemd: a private system bus --------------
cp -a /etc/firewalld "$WORK/fw-etc"
cat > "$WORK/bus.conf" <<EOF
<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path=$WORK/bus</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/><allow own="*"/>
    <allow send_destination="*" eavesdrop="true"/><allow receive_sender="*"/>
  </policy>
</busconfig>
EOF
ip netns add "$NS-fw"
in_ns fw ip link set lo up
cat > "$WORK/fw.sh" <<EOF
set -e
mount --bind '$WORK/fw-etc' /etc/firewalld
firewall-offline-cmd --zone=public --add-service=http
firewall-offline-cmd --zone=public --add-port=5432/tcp
firewall-offline-cmd --zone=public --add-rich-rule='rule family="ipv4" source address="10.99.0.0/24" port port="6379" protocol="tcp" accept'
firewall-offline-cmd --zone=public --add-rich-rule='rule family="ipv4" port port="9090" protocol="tcp" reject'
firewall-offline-cmd --zone=public --add-rich-rule='rule family="ipv4" port port="8081" protocol="tcp" drop'
firewall-offline-cmd --zone=public --add-forward-port=port=8443:proto=tcp:toport=443:toaddr=10.77.0.5
dbus-daemon --config-file='$WORK/bus.conf' --fork --print-pid > '$WORK/dbus.pid'
DBUS_SYSTEM_BUS_ADDRESS=unix:path='$WORK/bus' firewalld --nofork --nopid > '$WORK/firewalld.log' 2>&1 &
echo \$! > '$WORK/firewalld.pid'
for i in \$(seq 1 60); do
    nft list chain inet firewalld filter_IN_public_allow >/dev/null 2>&1 && break
    sleep 0.5
done
sleep 2
nft -j list ruleset | python3 -m json.tool --indent 1 > '$HERE/firewalld.json'
nft list ruleset > '$HERE/firewalld.nft'
cp /etc/firewalld/zones/public.xml '$HERE/firewalld-public.xml'
kill \$(cat '$WORK/firewalld.pid')
sleep 2
kill \$(cat '$WORK/dbus.pid')
EOF
in_ns fw unshare -m sh "$WORK/fw.sh"

after=$(nft list ruleset; iptables-legacy-save 2>/dev/null | grep -v '^#')
[ "$before" = "$after" ] || { echo "the host's ruleset changed" >&2; exit 1; }
echo "captured into $HERE"
