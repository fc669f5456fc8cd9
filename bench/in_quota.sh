#!/usr/bin/env bash
# Runs a command in a CPU quota, as a container's (Community Cloud gives 0.078–2 cores of a big
# host): the same cores, but the command gets at most CPUS cores' worth of time per 100 ms.
# Needs root and the cgroup cpu controller (v2 cpu.max, or v1 cpu.cfs_quota_us).
#
#   bash bench/in_quota.sh 0.5 python -m bnlr info      # cpus: 1 (affinity 2, quota 0.5, …)
#   python bench/load_cap.py --quota 0.5                 # the server alone in the quota
set -euo pipefail
cpus=${1:?usage: bash bench/in_quota.sh CPUS COMMAND [ARGS…]}
shift
period=100000
quota=$(awk -v c="$cpus" -v p="$period" 'BEGIN { printf "%d", c * p }')
name="bnlr-quota-$cpus"
if [ -f /sys/fs/cgroup/cgroup.controllers ]; then # v2, unified
    dir=/sys/fs/cgroup/$name
    mkdir -p "$dir"
    echo "$quota $period" >"$dir/cpu.max"
    echo $$ >"$dir/cgroup.procs"
elif [ -d /sys/fs/cgroup/cpu ]; then # v1
    dir=/sys/fs/cgroup/cpu/$name
    mkdir -p "$dir"
    echo "$period" >"$dir/cpu.cfs_period_us"
    echo "$quota" >"$dir/cpu.cfs_quota_us"
    echo $$ >"$dir/tasks"
else
    echo "in_quota.sh: no cgroup cpu controller here" >&2
    exit 2
fi
exec "$@"
