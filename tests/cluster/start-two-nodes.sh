#!/usr/bin/env bash
# Start a real two-node SLURM cluster on this one machine for the multinode test. Each node is a
# network namespace (kxln1 10.77.0.1, kxln2 10.77.0.2) with its own hostname (UTS namespace) and
# /etc/hosts (STATE_DIR/hosts bound over it in a private mount namespace: nothing in /etc is
# written, and /sys/fs/cgroup, which slurmd needs, stays the host's); a bridge kxlbr0 joins them
# and the root namespace (10.77.0.254, where sbatch and squeue run); nothing routes further.
# kxln1 is also the head node (slurmctld). Each node has its own slurmd, address and ports, so no
# multiple-slurmd build is needed, and torchrun and gloo find each other by hostname as on a
# real cluster.
#
#   tests/cluster/start-two-nodes.sh STATE_DIR    # then: SLURM_CONF=STATE_DIR/slurm.conf sbatch
#
# The cluster has its own slurm.conf in STATE_DIR (clients find it through SLURM_CONF), so it runs
# beside start-slurm.sh's one-node cluster and shares only its munged (started by that script:
# its socket is a file, which the namespaces share). stop-two-nodes.sh removes it all.
# Exit status: 0 running; 3 cannot run here (reason on the last stdout line); else failure.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
STATE=$(mkdir -p "$1" && cd "$1" && pwd)
PARTITION=${KXL_SLURM_PARTITION:-kxltest}
NODES=(kxln1 kxln2)
BRIDGE=kxlbr0
NET=10.77.0

cannot() { echo "cannot start the two-node SLURM here: $*"; exit 3; }
log() { echo "start-two-nodes: $*"; }

[ "$(id -u)" = 0 ] || cannot "needs root (network namespaces, daemons)"
munge -n 2>/dev/null | unmunge >/dev/null 2>&1 || cannot "no munged answers (start-slurm.sh first)"
"$HERE/stop-two-nodes.sh" "$STATE" >/dev/null  # leftovers of an interrupted session
ip netns add kxlprobe 2>/dev/null || cannot "ip netns add failed (no CAP_SYS_ADMIN?)"
ip netns del kxlprobe

# --- network: one bridge, a veth pair per node ------------------------------------------------
ip link add "$BRIDGE" type bridge
ip addr add "$NET.254/24" dev "$BRIDGE"
ip link set "$BRIDGE" up
hosts="127.0.0.1 localhost"
for i in "${!NODES[@]}"; do hosts+=$'\n'"$NET.$((i + 1)) ${NODES[$i]}"; done
for i in "${!NODES[@]}"; do
    node=${NODES[$i]}
    ip netns add "$node"
    ip link add "kxlv$((i + 1))" type veth peer name kxl0 netns "$node"
    ip link set "kxlv$((i + 1))" master "$BRIDGE"
    ip link set "kxlv$((i + 1))" up
    ip -n "$node" addr add "$NET.$((i + 1))/24" dev kxl0
    ip -n "$node" link set kxl0 up
    ip -n "$node" link set lo up
done
echo "$hosts" > "$STATE/hosts"

# --- config ----------------------------------------------------------------------------------
rm -rf "$STATE/spool" && mkdir -p "$STATE/spool/ctld" "${NODES[@]/#/$STATE/spool/}"
MEM_MB=$(awk '/^MemTotal:/ {print int($2 / 1024)}' /proc/meminfo)
cat > "$STATE/slurm.conf" <<EOF
# Two nodes in network namespaces (tests/cluster/start-two-nodes.sh); see start-slurm.sh for the
# settings shared with the one-node cluster.
ClusterName=kxltwo
SlurmctldHost=${NODES[0]}($NET.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
MinJobAge=7200
ReturnToService=2
InactiveLimit=0
KillWait=5
SlurmdParameters=config_overrides
SlurmctldPidFile=$STATE/slurmctld.pid
SlurmdPidFile=$STATE/slurmd-%n.pid
SlurmdSpoolDir=$STATE/spool/%n
StateSaveLocation=$STATE/spool/ctld
SlurmctldLogFile=$STATE/slurmctld.log
SlurmdLogFile=$STATE/slurmd-%n.log
SlurmctldDebug=info
SlurmdDebug=info
EOF
# CPUs are declared (config_overrides), as on the one-node cluster: room for a 2-thread task.
for i in "${!NODES[@]}"; do
    echo "NodeName=${NODES[$i]} NodeAddr=$NET.$((i + 1)) CPUs=4 RealMemory=$MEM_MB State=UNKNOWN"
done >> "$STATE/slurm.conf"
echo "PartitionName=$PARTITION Nodes=ALL Default=YES MaxTime=INFINITE State=UP" \
    >> "$STATE/slurm.conf"

# --- daemons: each in its node's namespace, under its node's hostname --------------------------
export SLURM_CONF=$STATE/slurm.conf
in_node() {
    local node=$1; shift
    nsenter --net="/run/netns/$node" unshare --mount --uts \
        sh -c "mount --bind $STATE/hosts /etc/hosts && hostname $node && exec $*"
}
in_node "${NODES[0]}" slurmctld -i
for node in "${NODES[@]}"; do in_node "$node" slurmd -N "$node"; done
for _ in $(seq 120); do
    states=$(sinfo -h -N -o '%T' 2>/dev/null | sort -u | tr '\n' ' ' || true)
    [ "$states" = "idle " ] && break
    sleep 0.5
done
if [ "$states" != "idle " ]; then
    echo "start-two-nodes: nodes not idle (states: '${states:-none}'); last log lines:" >&2
    tail -n 20 "$STATE"/*.log >&2 || true
    exit 1
fi
log "SLURM is up: partition $PARTITION, nodes ${NODES[*]} ($NET.1-2); SLURM_CONF=$SLURM_CONF"
