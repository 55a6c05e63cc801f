#!/usr/bin/env bash
# Start a real one-node SLURM cluster (Debian's slurm-wlm + munge) for the cluster tests.
#
#   tests/cluster/start-slurm.sh [STATE_DIR]      # default: tests/cluster/.state
#
# Installs slurm-wlm and munge with apt-get when they are missing, writes a one-node
# /etc/slurm/slurm.conf for localhost with fake GPUs (char devices made with mknod, so
# CUDA_VISIBLE_DEVICES is set exactly as on a real GPU node), starts munged (unless one already
# answers), slurmctld and slurmd directly (no systemd), and waits until the node is idle.
# The pids of the daemons it started go to STATE_DIR/*.pid; stop-slurm.sh stops only those.
#
# Exit status: 0 running; 3 SLURM cannot be started on this machine (not root, no apt-get, or a
# SLURM config that is not ours) - the reason is the last line of stdout; anything else: failure.
# Environment: KXL_SLURM_CPUS (default max(nproc, 16)), KXL_SLURM_GPUS (default 4),
# KXL_SLURM_PARTITION (default kxltest).
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
STATE=$(mkdir -p "${1:-$HERE/.state}" && cd "${1:-$HERE/.state}" && pwd)
MARK="# written by kxl tests/cluster/start-slurm.sh"
CONF_DIR=/etc/slurm
NGPU=${KXL_SLURM_GPUS:-4}
PARTITION=${KXL_SLURM_PARTITION:-kxltest}

cannot() { echo "cannot start SLURM here: $*"; exit 3; }
log() { echo "start-slurm: $*"; }

[ "$(id -u)" = 0 ] || cannot "needs root (installs packages, writes $CONF_DIR, starts daemons)"

install_packages() {
    command -v apt-get >/dev/null || cannot "slurm-wlm/munge are not installed and apt-get is absent"
    log "installing slurm-wlm and munge with apt-get"
    # Keep the packages' maintainer scripts from starting their own daemons (systemd or
    # sysv) on the standard ports: we start ours below. Only a policy file we created is removed.
    local policy=/usr/sbin/policy-rc.d made_policy=0
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' > "$policy" && chmod +x "$policy" && made_policy=1
    fi
    local rc=0
    { DEBIAN_FRONTEND=noninteractive apt-get update -qq \
        && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
            slurm-wlm munge; } > "$STATE/apt.log" 2>&1 || rc=$?
    [ "$made_policy" = 1 ] && rm -f "$policy"
    if [ "$rc" != 0 ]; then
        tail -5 "$STATE/apt.log"
        cannot "apt-get install slurm-wlm munge failed (exit $rc, see $STATE/apt.log)"
    fi
}

alive() { [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

# A cluster we started earlier and that still runs is stopped first: each session starts clean.
if alive "$STATE/slurmctld.pid" || alive "$STATE/slurmd.pid" || alive "$STATE/munged.pid"; then
    log "stopping the cluster a previous session left running"
    "$HERE/stop-slurm.sh" "$STATE"
fi

for bin in slurmctld slurmd sbatch squeue sinfo munged; do
    command -v "$bin" >/dev/null || { install_packages; break; }
done

for conf in slurm.conf gres.conf; do
    if [ -e "$CONF_DIR/$conf" ] && ! grep -qF "$MARK" "$CONF_DIR/$conf"; then
        cannot "$CONF_DIR/$conf exists and was not written by this script (a real SLURM host?)"
    fi
done
for port in 6817 6818; do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
        cannot "port $port is already in use (another slurmctld/slurmd is running)"
    fi
done

# --- munge: reuse a working one, else start our own as the munge user ---------------------------
if munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
    log "munged already running: reusing it"
else
    [ -s /etc/munge/munge.key ] || runuser -u munge -- mungekey --create >/dev/null
    install -d -o munge -g munge -m 0755 /run/munge
    runuser -u munge -- munged --pid-file=/run/munge/munged.pid
    cp /run/munge/munged.pid "$STATE/munged.pid"
    for _ in $(seq 50); do munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && break; sleep 0.1; done
fi

# --- config --------------------------------------------------------------------------------------
rm -rf "$STATE/spool" "$STATE/dev"
mkdir -p "$STATE/spool/slurmctld" "$STATE/spool/slurmd" "$STATE/dev"
for ((i = 0; i < NGPU; i++)); do
    # 195 is the NVIDIA character-device major; slurmd only stat()s these files.
    mknod "$STATE/dev/nvidia$i" c 195 "$i" || cannot "mknod of fake GPU devices failed in $STATE/dev"
done
NPROC=$(nproc)
CPUS=${KXL_SLURM_CPUS:-$((NPROC > 16 ? NPROC : 16))}
MEM_MB=$(awk '/^MemTotal:/ {print int($2 / 1024)}' /proc/meminfo)

mkdir -p "$CONF_DIR"
cat > "$CONF_DIR/slurm.conf" <<EOF
$MARK
# One node (localhost) with $NGPU fake GPUs. No slurmdbd: sacct is disabled, so the executor
# plugin must check job status with squeue; MinJobAge keeps finished jobs visible to it.
ClusterName=kxltest
SlurmctldHost=localhost
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
GresTypes=gpu
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
MinJobAge=7200
ReturnToService=2
InactiveLimit=0
KillWait=5
# CPUs/memory are declared, not probed: the node may be smaller than the CPUs it advertises
# (jobs only oversubscribe the real cores), as a fake node is for testing submission shapes.
SlurmdParameters=config_overrides
SlurmctldPidFile=$STATE/slurmctld.pid
SlurmdPidFile=$STATE/slurmd.pid
SlurmdSpoolDir=$STATE/spool/slurmd
StateSaveLocation=$STATE/spool/slurmctld
SlurmctldLogFile=$STATE/slurmctld.log
SlurmdLogFile=$STATE/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
NodeName=localhost NodeAddr=127.0.0.1 CPUs=$CPUS RealMemory=$MEM_MB Gres=gpu:$NGPU State=UNKNOWN
PartitionName=$PARTITION Nodes=localhost Default=YES MaxTime=INFINITE State=UP
EOF
cat > "$CONF_DIR/gres.conf" <<EOF
$MARK
NodeName=localhost Name=gpu File=$STATE/dev/nvidia[0-$((NGPU - 1))]
EOF

# --- daemons ---------------------------------------------------------------------------------------
rm -f "$STATE/slurmctld.log" "$STATE/slurmd.log"
slurmctld -i
slurmd -N localhost
ok=0
for _ in $(seq 120); do
    state=$(sinfo -h -N -n localhost -o '%T' 2>/dev/null || true)
    if [ "$state" = idle ]; then ok=1; break; fi
    sleep 0.5
done
if [ "$ok" != 1 ]; then
    echo "start-slurm: node did not become idle (state: '${state:-none}'); last log lines:" >&2
    tail -n 20 "$STATE/slurmctld.log" "$STATE/slurmd.log" >&2 || true
    exit 1
fi
log "SLURM is up: partition $PARTITION, node localhost, $CPUS CPUs, $MEM_MB MB, $NGPU GPUs"
log "state and logs in $STATE"
