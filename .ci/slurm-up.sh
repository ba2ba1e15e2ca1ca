#!/usr/bin/env bash
# Start a one-node SLURM cluster on this machine (for CI and for developers), as root.
#
#   bash .ci/slurm-up.sh          # install slurm-wlm + munge if missing, write the config, start, wait
#   bash .ci/slurm-up.sh --down   # stop it
#
# The node is this machine with all its CPUs and memory; jobs share it by CPU (select/cons_tres,
# CR_Core_Memory). ProctrackType=proctrack/linuxproc and TaskPlugin=task/none need no cgroup setup,
# so it starts in seconds inside a container. State and logs live under /tmp/robustmri-slurm.
set -euo pipefail
STATE=/tmp/robustmri-slurm
if [[ "${1:-}" == "--down" ]]; then
  pkill -x slurmd || true; pkill -x slurmctld || true; pkill -x munged || true
  exit 0
fi
if [[ $(id -u) -ne 0 ]]; then echo "slurm-up: run as root (it starts munged, slurmctld and slurmd)" >&2; exit 2; fi
if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q >/dev/null
  apt-get install -y -q slurm-wlm munge >/dev/null
fi
HOST=$(hostname -s)
CPUS=$(nproc)
MEM_MB=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 - 1024 ))
mkdir -p "$STATE"/{spool,ctld,log} /etc/slurm /etc/munge /run/munge /var/log/munge /var/lib/munge
if [[ ! -s /etc/munge/munge.key ]]; then
  dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key status=none
fi
chown -R munge:munge /etc/munge /run/munge /var/log/munge /var/lib/munge 2>/dev/null || true
chmod 0700 /etc/munge; chmod 0400 /etc/munge/munge.key
cat > /etc/slurm/slurm.conf <<CONF
ClusterName=robustmri
SlurmctldHost=$HOST
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/spool
SlurmctldPidFile=$STATE/slurmctld.pid
SlurmdPidFile=$STATE/slurmd.pid
SlurmctldLogFile=$STATE/log/slurmctld.log
SlurmdLogFile=$STATE/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
ReturnToService=2
MpiDefault=none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SlurmctldTimeout=30
SlurmdTimeout=30
InactiveLimit=0
KillWait=5
UnkillableStepTimeout=180
MinJobAge=300
NodeName=$HOST CPUs=$CPUS RealMemory=$MEM_MB State=UNKNOWN
PartitionName=debug Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
CONF
pgrep -x munged >/dev/null || (munged --force 2>/dev/null || runuser -u munge -- munged --force)
pgrep -x slurmctld >/dev/null || slurmctld -c
pgrep -x slurmd >/dev/null || slurmd -c
for _ in $(seq 1 60); do
  if sinfo -h -o '%T' 2>/dev/null | grep -qE '^(idle|mixed|allocated)'; then
    echo "slurm-up: node $HOST ($CPUS CPUs, $MEM_MB MB) is $(sinfo -h -o '%T')"
    exit 0
  fi
  sleep 1
done
echo "slurm-up: the node did not come up; see $STATE/log/" >&2
sinfo >&2 || true
tail -20 "$STATE"/log/*.log >&2 || true
exit 1
