#!/usr/bin/env bash
# Stop the daemons that tools/slurm/start_slurm.sh started: slurmd, slurmctld and munged
# (munged only when start_slurm.sh started it), each by the process id in its pid file,
# and only if that process still runs the expected program.
# Then removes the slurm.conf and gres.conf that start_slurm.sh wrote (and only those): a
# slurm.conf naming a controller that no longer runs makes every Slurm client call wait about
# 10 s, and the Slurm executor plugin runs `scontrol show config` each time snakemake starts,
# with any executor. Leaves packages, the munge key and the state folder in place.
set -uo pipefail

STATE_DIR=${POLNEURONS_SLURM_STATE:-/run/polneurons-slurm}
CONF_DIR=${POLNEURONS_SLURM_CONF_DIR:-/etc/slurm} # where start_slurm.sh writes (a test moves it)
CONF=$CONF_DIR/slurm.conf
GRES_CONF=$CONF_DIR/gres.conf
MARKER="# written by polneurons tools/slurm/start_slurm.sh"

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
for conf in "$CONF" "$GRES_CONF"; do
    if [[ -f $conf ]] && grep -qxF "$MARKER" "$conf"; then
        say "removing $conf (written by start_slurm.sh)"
        rm -f "$conf"
    fi
done
exit 0
