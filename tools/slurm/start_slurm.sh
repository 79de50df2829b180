#!/usr/bin/env bash
# Start a real single-node Slurm (Debian's slurm-wlm + munge) on this machine, for tests.
#
# Idempotent: installs the packages only when missing, keeps an existing munge key, and
# does nothing but re-check readiness when the daemons it started are still running.
# Needs root. Everything it starts is recorded by process id under $STATE_DIR, and
# tools/slurm/stop_slurm.sh stops exactly those processes.
#
# The node has no real GPU but a GPU GRES (Gres=gpu:$GPUS in slurm.conf; gres.conf names
# empty regular files under $STATE_DIR as the devices: Debian's Slurm 22.05 marks the node
# INVAL for a gpu Count without File), so jobs that ask for GPUs (sbatch --gpus /
# --gres=gpu) are scheduled and `scontrol show job` shows what they asked for; the jobs
# themselves run on the CPU.
#
# Accounting is off (accounting_storage/none): `sacct` answers "accounting storage is
# disabled", so snakemake must be run with `--slurm-status-command squeue` here.
# MinJobAge=300 keeps finished jobs visible to squeue long enough for that.
#
# Environment:
#   POLNEURONS_SLURM_STATE    state, spool, log and pid folder [/run/polneurons-slurm]
#   POLNEURONS_SLURM_WAIT_S   bound on the readiness wait, seconds [60]
#   POLNEURONS_SLURM_GPUS     GPUs the node declares (GRES backed by empty files) [2]
set -euo pipefail

STATE_DIR=${POLNEURONS_SLURM_STATE:-/run/polneurons-slurm}
WAIT_S=${POLNEURONS_SLURM_WAIT_S:-60}
GPUS=${POLNEURONS_SLURM_GPUS:-2}
CONF=/etc/slurm/slurm.conf
GRES_CONF=/etc/slurm/gres.conf
MARKER="# written by polneurons tools/slurm/start_slurm.sh"
NODE=$(hostname -s)

say() { echo "start_slurm: $*"; }
# die PROBLEM FIX [EXIT_CODE]: exit codes 2 = not root, 3 = packages cannot be installed
# (callers such as the test skip on those), 1 = anything else.
die() {
    echo "start_slurm: ERROR: $1" >&2
    [[ -n ${2:-} ]] && echo "start_slurm: fix: $2" >&2
    exit "${3:-1}"
}

# Is the pid in file $1 alive and running program $2?
pid_alive() {
    local pid
    [[ -s $1 ]] || return 1
    pid=$(<"$1")
    [[ $pid =~ ^[0-9]+$ ]] || return 1
    [[ -r /proc/$pid/comm ]] || return 1
    [[ $(</proc/"$pid"/comm) == "$2" ]]
}

[[ $(id -u) -eq 0 ]] || die "must run as root (it installs packages and starts daemons)" \
    "run it with sudo, or as root" 2

# --- 1. packages --------------------------------------------------------------------------
export PATH=$PATH:/usr/sbin:/usr/bin
need=()
for exe in slurmctld slurmd sbatch munged; do
    command -v "$exe" >/dev/null 2>&1 || need+=("$exe")
done
if ((${#need[@]})); then
    say "installing slurm-wlm and munge from Debian (missing: ${need[*]})"
    export DEBIAN_FRONTEND=noninteractive
    timeout -k 10 300 apt-get update -qq ||
        die "apt-get update failed" "check that the Debian package registry is reachable" 3
    timeout -k 10 600 apt-get install -y -qq slurm-wlm munge >/dev/null ||
        die "apt-get install slurm-wlm munge failed" "run it by hand to see why" 3
fi

mkdir -p "$STATE_DIR"/ctld "$STATE_DIR"/d
chmod 755 "$STATE_DIR"

# --- 2. munge -----------------------------------------------------------------------------
munge_ok() { munge -n 2>/dev/null | unmunge >/dev/null 2>&1; }
if ! munge_ok; then
    if [[ ! -s /etc/munge/munge.key ]]; then
        say "creating /etc/munge/munge.key"
        mkdir -p /etc/munge
        dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
    fi
    chown munge:munge /etc/munge /etc/munge/munge.key
    chmod 700 /etc/munge
    chmod 400 /etc/munge/munge.key
    mkdir -p /run/munge /var/log/munge /var/lib/munge
    chown munge:munge /run/munge /var/log/munge /var/lib/munge
    chmod 755 /run/munge
    say "starting munged"
    # --force: a stale socket left by a killed munged must not stop it.
    timeout -k 5 30 runuser -u munge -- /usr/sbin/munged --force ||
        die "munged did not start" "see /var/log/munge/munged.log"
    for _ in $(seq 1 50); do
        munge_ok && break
        sleep 0.2
    done
    munge_ok || die "munge -n | unmunge does not answer Success" "see /var/log/munge/munged.log"
    cp /run/munge/munged.pid "$STATE_DIR"/munged.pid
fi

# --- 3. slurm.conf ------------------------------------------------------------------------
cpus=$(nproc)
mem_total_mb=$(awk '/^MemTotal:/ {print int($2 / 1024)}' /proc/meminfo)
real_mem_mb=$((mem_total_mb * 85 / 100)) # below the machine's, or slurmd marks the node invalid

conf_text=$(
    cat <<EOF
$MARKER
# Single-node test cluster on localhost, GPUs counted but absent. Regenerated on every start.
ClusterName=polneurons
SlurmctldHost=$NODE(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
ReturnToService=2
# Finished jobs stay visible to squeue this long (snakemake's squeue status checks need it).
MinJobAge=300
# Seconds between SIGTERM and SIGKILL when a job is cancelled.
KillWait=5
InactiveLimit=0
StateSaveLocation=$STATE_DIR/ctld
SlurmdSpoolDir=$STATE_DIR/d
SlurmctldPidFile=$STATE_DIR/slurmctld.pid
SlurmdPidFile=$STATE_DIR/slurmd.pid
SlurmctldLogFile=$STATE_DIR/slurmctld.log
SlurmdLogFile=$STATE_DIR/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
# GPUs backed by empty files (gres.conf): GPU requests are scheduled, nothing runs on a GPU.
GresTypes=gpu
NodeName=$NODE NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$real_mem_mb Gres=gpu:$GPUS State=UNKNOWN
PartitionName=debug Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
EOF
)

running=0
if pid_alive "$STATE_DIR"/slurmctld.pid slurmctld && pid_alive "$STATE_DIR"/slurmd.pid slurmd; then
    running=1
fi

if [[ -e $CONF ]] && ! grep -qxF "$MARKER" "$CONF"; then
    die "$CONF exists and was not written by this script" \
        "move it away (it is not overwritten) or use that cluster directly"
fi
if ((running)) && [[ $(<"$CONF") != "$conf_text" ]]; then
    die "slurm is running with a different $CONF" "run tools/slurm/stop_slurm.sh, then this again"
fi
gres_text=$(printf '%s\n%s' "$MARKER" "NodeName=$NODE Name=gpu File=$STATE_DIR/gpu[0-$((GPUS - 1))]")
if [[ -e $GRES_CONF ]] && ! grep -qxF "$MARKER" "$GRES_CONF"; then
    die "$GRES_CONF exists and was not written by this script" \
        "move it away (it is not overwritten) or use that cluster directly"
fi
if ((running)) && [[ ! -e $GRES_CONF || $(<"$GRES_CONF") != "$gres_text" ]]; then
    die "slurm is running with a different $GRES_CONF" "run tools/slurm/stop_slurm.sh, then this again"
fi
mkdir -p /etc/slurm
printf '%s\n' "$conf_text" >"$CONF.tmp"
mv "$CONF.tmp" "$CONF"
for ((i = 0; i < GPUS; i++)); do
    : >"$STATE_DIR/gpu$i" # stand-in device files (nothing opens them: TaskPlugin=task/none)
done
printf '%s\n' "$gres_text" >"$GRES_CONF.tmp"
mv "$GRES_CONF.tmp" "$GRES_CONF"

# --- 4. daemons ---------------------------------------------------------------------------
if ((running)); then
    say "slurmctld and slurmd already running (pids $(<"$STATE_DIR"/slurmctld.pid), $(<"$STATE_DIR"/slurmd.pid))"
else
    if ! pid_alive "$STATE_DIR"/slurmctld.pid slurmctld; then
        say "starting slurmctld"
        timeout -k 5 30 slurmctld ||
            die "slurmctld did not start" "see $STATE_DIR/slurmctld.log"
    fi
    if ! pid_alive "$STATE_DIR"/slurmd.pid slurmd; then
        say "starting slurmd"
        timeout -k 5 30 slurmd || die "slurmd did not start" "see $STATE_DIR/slurmd.log"
    fi
fi

# --- 5. readiness: node idle, srun answers ------------------------------------------------
deadline=$((SECONDS + WAIT_S))
state=""
while ((SECONDS < deadline)); do
    state=$(timeout -k 2 5 sinfo -h -n "$NODE" -o '%T' 2>/dev/null | head -n1 || true)
    case $state in
    idle | mixed | allocated) break ;;
    drain* | down*)
        timeout -k 2 5 scontrol update NodeName="$NODE" State=RESUME >/dev/null 2>&1 || true
        ;;
    esac
    sleep 1
done
case $state in
idle | mixed | allocated) ;;
*)
    die "node $NODE is not ready after ${WAIT_S}s (sinfo state: '${state:-no answer}')" \
        "see $STATE_DIR/slurmctld.log and $STATE_DIR/slurmd.log"
    ;;
esac

left=$((deadline - SECONDS))
((left < 10)) && left=10
answer=$(timeout -k 5 "$left" srun -N1 -n1 -t 1 hostname 2>&1) ||
    die "srun hostname failed: $answer" "see $STATE_DIR/slurmctld.log and $STATE_DIR/slurmd.log"
say "ready: node $NODE $state, $cpus CPUs, RealMemory=${real_mem_mb}M, gpu:$GPUS, srun answered '$answer'"
