#!/usr/bin/env bash
# A real one-node SLURM cluster on localhost for the SLURM profile test (no systemd, no slurmdbd).
# Partitions `gpu` (default) and `cpu` match profiles/slurm/config.yaml. The node has
# $PAIRREL_SLURM_GPUS (default 4) fake GPUs, so independent GPU jobs can run side by side.
# Idempotent: returns at once when a controller already answers.
set -euo pipefail

if command -v sinfo >/dev/null && sinfo -h >/dev/null 2>&1; then
  echo "slurm: already running"; exit 0
fi
if ! command -v slurmctld >/dev/null; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurmctld slurmd slurm-client munge >/dev/null
fi

host=$(hostname -s)
cpus=$(nproc)
gpus=${PAIRREL_SLURM_GPUS:-4}
mem=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 - 1024 ))
conf_dir=/etc/slurm
mkdir -p "$conf_dir" /var/spool/slurmctld /var/spool/slurmd /var/log/slurm /run/munge /var/lib/munge /var/log/munge

cat > "$conf_dir/slurm.conf" <<CONF
ClusterName=pairrel-local
SlurmctldHost=$host
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
GresTypes=gpu
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
ReturnToService=2
MinJobAge=600
NodeName=$host CPUs=$cpus RealMemory=$mem Gres=gpu:$gpus State=UNKNOWN
PartitionName=gpu Nodes=$host Default=YES MaxTime=INFINITE State=UP OverSubscribe=YES
PartitionName=cpu Nodes=$host MaxTime=INFINITE State=UP OverSubscribe=YES
CONF
# A GPU gres needs one device file per GPU (a file-less gres marks the node INVAL); empty
# regular files stand in for /dev/nvidiaN (no cgroup device constraint reads them).
fake_dev=/var/lib/pairrel-slurm/fake-gpu
mkdir -p "$fake_dev"
: > "$conf_dir/gres.conf"
for i in $(seq 0 $(( gpus - 1 ))); do
  touch "$fake_dev/nvidia$i"
  echo "NodeName=$host Name=gpu File=$fake_dev/nvidia$i" >> "$conf_dir/gres.conf"
done

if [ ! -s /etc/munge/munge.key ]; then
  mkdir -p /etc/munge
  dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key 2>/dev/null
fi
chown -R munge:munge /etc/munge /run/munge /var/lib/munge /var/log/munge 2>/dev/null || true
chmod 400 /etc/munge/munge.key
pgrep -x munged >/dev/null || su -s /bin/sh munge -c /usr/sbin/munged || /usr/sbin/munged --force
pgrep -x slurmctld >/dev/null || slurmctld -c
pgrep -x slurmd >/dev/null || slurmd -N "$host"

for _ in $(seq 1 30); do
  if sinfo -h -o '%T' 2>/dev/null | grep -qE 'idle|mixed'; then
    echo "slurm: up ($(sinfo -h -o '%P %T' | tr '\n' ' '))"; exit 0
  fi
  sleep 1
done
echo "slurm: node did not become idle" >&2
sinfo >&2 || true
exit 1
