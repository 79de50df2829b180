#!/usr/bin/env bash
# Stop the daemons that tools/slurm/start_slurm.sh started: slurmd, slurmctld and munged
# (munged only when start_slurm.sh started it), each by the process id in its pid file,
# and only if that process still runs the expected program.
# Leaves packages, slurm.conf, the munge key and the state folder in place.
set -uo pipefail

STATE_DIR=${POLNEURONS_SLURM_STATE:-/run/polneurons-slurm}

say() { echo "stop_slurm: $*"; }

# stop_by_pidfile FILE PROGRAM: SIGTERM, wait up to 10 s, then SIGKILL.
stop_by_pidfile() {
    local file=$1 program=$2 pid
    [[ -s $file ]] || return 0
    pid=$(<"$file")
    if [[ $pid =~ ^[0-9]+$ && -r /proc/$pid/comm && $(</proc/"$pid"/comm) == "$program" ]]; then
        say "stopping $program (pid $pid)"
        kill -TERM "$pid" 2>/dev/null
        for _ in $(seq 1 50); do
            [[ -e /proc/$pid ]] || break
            sleep 0.2
        done
        if [[ -e /proc/$pid ]]; then
            say "$program (pid $pid) ignored SIGTERM; sending SIGKILL"
            kill -KILL "$pid" 2>/dev/null
        fi
    fi
    rm -f "$file"
}

stop_by_pidfile "$STATE_DIR"/slurmd.pid slurmd
stop_by_pidfile "$STATE_DIR"/slurmctld.pid slurmctld
stop_by_pidfile "$STATE_DIR"/munged.pid munged
exit 0
