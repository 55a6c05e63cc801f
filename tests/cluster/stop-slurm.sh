#!/usr/bin/env bash
# Stop the one-node SLURM that start-slurm.sh started: only the daemons whose pids it recorded
# in STATE_DIR (never by name), after cancelling the jobs still in that cluster.
#
#   tests/cluster/stop-slurm.sh [STATE_DIR]      # default: tests/cluster/.state
set -uo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
STATE=${1:-$HERE/.state}
MARK="# written by kxl tests/cluster/start-slurm.sh"

# stop PIDFILE EXPECTED_COMM: TERM, wait up to 10 s, then KILL; skip a pid now reused by another
# program (its /proc/PID/comm no longer names the daemon).
stop() {
    local file=$1 comm=$2 pid
    [ -s "$file" ] || return 0
    pid=$(cat "$file")
    if kill -0 "$pid" 2>/dev/null && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$comm" ]; then
        kill -TERM "$pid"
        for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -0 "$pid" 2>/dev/null && kill -KILL "$pid"
        echo "stop-slurm: stopped $comm (pid $pid)"
    fi
    rm -f "$file"
}

if [ -s "$STATE/slurmctld.pid" ] && command -v scancel >/dev/null; then
    # The cluster is private to the tests: nothing in it outlives them.
    jobs=$(squeue -h -o %i 2>/dev/null || true)
    [ -n "$jobs" ] && scancel $jobs 2>/dev/null
fi
stop "$STATE/slurmd.pid" slurmd
stop "$STATE/slurmctld.pid" slurmctld
stop "$STATE/munged.pid" munged
for conf in /etc/slurm/slurm.conf /etc/slurm/gres.conf; do
    if [ -e "$conf" ] && grep -qF "$MARK" "$conf"; then rm -f "$conf"; fi
done
exit 0
