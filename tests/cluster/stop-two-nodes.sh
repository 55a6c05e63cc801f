#!/usr/bin/env bash
# Stop the two-node SLURM of start-two-nodes.sh and remove its network: the daemons whose pids it
# recorded in STATE_DIR (never by name), then the network namespaces and the bridge.
# Safe to run when nothing (or half of it) is there.
#
#   tests/cluster/stop-two-nodes.sh STATE_DIR
set -uo pipefail

STATE=$1
NODES=(kxln1 kxln2)
export SLURM_CONF=$STATE/slurm.conf

# stop PIDFILE EXPECTED_COMM: TERM, wait up to 10 s, then KILL (as stop-slurm.sh).
stop() {
    local file=$1 comm=$2 pid
    [ -s "$file" ] || return 0
    pid=$(cat "$file")
    if kill -0 "$pid" 2>/dev/null && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$comm" ]; then
        kill -TERM "$pid"
        for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -0 "$pid" 2>/dev/null && kill -KILL "$pid"
        echo "stop-two-nodes: stopped $comm (pid $pid)"
    fi
    rm -f "$file"
}

if [ -s "$STATE/slurmctld.pid" ] && [ -e "$SLURM_CONF" ]; then
    jobs=$(timeout 10 squeue -h -o %i 2>/dev/null || true)
    [ -n "$jobs" ] && timeout 10 scancel $jobs 2>/dev/null
fi
for node in "${NODES[@]}"; do stop "$STATE/slurmd-$node.pid" slurmd; done
stop "$STATE/slurmctld.pid" slurmctld
for node in "${NODES[@]}"; do ip netns del "$node" 2>/dev/null; done
ip link del kxlbr0 2>/dev/null
exit 0
