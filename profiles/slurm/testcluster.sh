#!/usr/bin/env bash
# A throwaway one-node SLURM cluster on this machine, to try profiles/slurm on (tests and laptops).
#
#   bash profiles/slurm/testcluster.sh up       install what is missing, start the daemons (harmless if running)
#   bash profiles/slurm/testcluster.sh status   which daemons run, the node's state
#   bash profiles/slurm/testcluster.sh env      the line that points SLURM commands at this cluster:
#                                               eval "$(bash profiles/slurm/testcluster.sh env)"
#   bash profiles/slurm/testcluster.sh down     cancel its jobs, stop the daemons, delete the state dir
#
# Needs root (slurmd runs jobs as their users) on Debian or Ubuntu. The cluster: munged, MariaDB
# (bound to 127.0.0.1), slurmdbd (accounting on: the SLURM executor plugin polls sacct), slurmctld
# and `slurmd -N localhost`; one node "localhost" with this machine's CPUs and 90 % of its memory,
# a GPU resource (GRES gpu, File=/dev/null, so a job asking for a GPU is scheduled and then runs
# on the CPU), one partition "test", account "root". Ports: slurmctld 16817, slurmd 16818,
# slurmdbd 16819, MariaDB 13306 (not the defaults, so a real installation is not disturbed).
#
# Everything it writes outside the checkout:
#   - $BYOL_SLURM_STATE (default /var/tmp/byol-slurm): configs (slurm.conf, gres.conf,
#     slurmdbd.conf), the munge key and socket, the MariaDB data, spool and state directories,
#     pid files and daemon logs. `down` deletes it.
#   - /etc/slurm/slurm.conf, a symbolic link to the state dir's (refused if another file is
#     there; `down` removes it): the SLURM executor plugin runs each job under a nested srun
#     and drops SLURM_CONF from its environment, so srun reads the compiled-in path.
#   - only when a command is missing: the Debian packages munge, mariadb-server, slurmdbd,
#     slurmctld, slurmd and slurm-client (apt-get install, apt-get update if needed), with what
#     their install scripts write (/etc/munge/munge.key, /etc/mysql, the users munge, mysql and
#     slurm; on a machine with systemd their own services start on the default ports, which this
#     cluster does not use). Remove them with apt-get purge.
# Nothing else: the daemons read their configs from the state dir (SLURM_CONF).
#
# Exit status of `up`: 0 running, 3 the packages are missing and cannot be installed (no apt-get,
# or the install failed), 1 anything else (not root; a daemon that did not start: the message
# names its log).
set -euo pipefail

STATE=${BYOL_SLURM_STATE:-/var/tmp/byol-slurm}
CLUSTER=byoltest
PARTITION=test
CTLD_PORT=16817
SLURMD_PORT=16818
DBD_PORT=16819
DB_PORT=13306
DB_PASSWORD=byol-testcluster  # reachable from 127.0.0.1 only, and the cluster is throwaway
PACKAGES=(munge mariadb-server slurmdbd slurmctld slurmd slurm-client)
COMMANDS=(munged mungekey mariadbd mariadb-install-db slurmdbd slurmctld slurmd sbatch sacct sacctmgr)

export SLURM_CONF=$STATE/etc/slurm.conf
export PATH=$PATH:/usr/sbin:/sbin  # the daemons, for a root shell that lacks them
DEFAULT_CONF=/etc/slurm/slurm.conf
MUNGE_SOCKET=$STATE/munge/munge.socket
DB_SOCKET=$STATE/mysql/mysqld.sock

say() { echo "testcluster: $*" >&2; }
die() { say "error: $*"; exit 1; }

# Wait up to $1 seconds for the command after it to succeed.
wait_for() {
    local seconds=$1; shift
    local deadline=$((SECONDS + seconds))
    until "$@" >/dev/null 2>&1; do
        [ "$SECONDS" -lt "$deadline" ] || return 1
        sleep 0.5
    done
}

pidfile() {  # munged and mariadbd write theirs as their own users, in their own directories
    case $1 in
        munged) echo "$STATE/munge/munged.pid" ;;
        mariadbd) echo "$STATE/mysql/mariadbd.pid" ;;
        *) echo "$STATE/run/$1.pid" ;;
    esac
}

running() {  # running NAME: its pid file names a live process
    local file
    file=$(pidfile "$1")
    [ -s "$file" ] && kill -0 "$(cat "$file")" 2>/dev/null
}

install_packages() {
    local missing=()
    for command in "${COMMANDS[@]}"; do
        command -v "$command" >/dev/null || missing+=("$command")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    say "missing ${missing[*]}; installing ${PACKAGES[*]}"
    if ! command -v apt-get >/dev/null; then
        say "cannot install without apt-get: install ${PACKAGES[*]} (or your system's equivalents) yourself"
        exit 3
    fi
    export DEBIAN_FRONTEND=noninteractive
    if ! apt-get install -y -q "${PACKAGES[@]}" >"$STATE/log/apt.log" 2>&1; then
        apt-get update -q >>"$STATE/log/apt.log" 2>&1 || true
        if ! apt-get install -y -q "${PACKAGES[@]}" >>"$STATE/log/apt.log" 2>&1; then
            say "apt-get install failed; see $STATE/log/apt.log"
            exit 3
        fi
    fi
}

write_configs() {
    local cpus memory
    cpus=$(nproc)
    memory=$(awk '/^MemTotal:/ {print int($2 / 1024 * 0.9)}' /proc/meminfo)
    cat >"$STATE/etc/slurm.conf" <<EOF
# Written by profiles/slurm/testcluster.sh; rewritten at each \`up\`.
ClusterName=$CLUSTER
SlurmctldHost=localhost(127.0.0.1)
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
SlurmUser=root
AuthType=auth/munge
AuthInfo=socket=$MUNGE_SOCKET
CredType=cred/munge
StateSaveLocation=$STATE/slurmctld
SlurmdSpoolDir=$STATE/slurmd
SlurmctldPidFile=$STATE/run/slurmctld.pid
SlurmdPidFile=$STATE/run/slurmd.pid
SlurmctldLogFile=$STATE/log/slurmctld.log
SlurmdLogFile=$STATE/log/slurmd.log
# No cgroups: containers and laptops differ in what they allow.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/linux
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU_Memory
# A job without a memory request would otherwise take the whole node.
DefMemPerCPU=$((memory / cpus < 1024 ? memory / cpus : 1024))
# A request larger than the node is refused at submission instead of pending for ever.
EnforcePartLimits=ALL
ReturnToService=2
MinJobAge=600
GresTypes=gpu
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStoragePort=$DBD_PORT
# Connections to slurmdbd take their munge socket from here, not from AuthInfo.
AccountingStoragePass=$MUNGE_SOCKET
# Without it sacct's AllocTRES omits the GPU.
AccountingStorageTRES=gres/gpu
AccountingStoreFlags=job_comment
NodeName=localhost NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$memory Gres=gpu:1 State=UNKNOWN
PartitionName=$PARTITION Nodes=localhost Default=YES MaxTime=INFINITE State=UP
EOF
    echo "NodeName=localhost Name=gpu File=/dev/null" >"$STATE/etc/gres.conf"
    if [ -e "$DEFAULT_CONF" ] && [ "$(readlink "$DEFAULT_CONF")" != "$SLURM_CONF" ]; then
        die "$DEFAULT_CONF belongs to another cluster; jobs' srun would read it (move it away to use this test cluster)"
    fi
    mkdir -p "$(dirname "$DEFAULT_CONF")"
    ln -sfn "$SLURM_CONF" "$DEFAULT_CONF"
    (
        umask 077  # slurmdbd refuses a config others can read
        cat >"$STATE/etc/slurmdbd.conf" <<EOF
AuthType=auth/munge
AuthInfo=socket=$MUNGE_SOCKET
DbdHost=localhost
DbdAddr=127.0.0.1
DbdPort=$DBD_PORT
SlurmUser=root
PidFile=$STATE/run/slurmdbd.pid
LogFile=$STATE/log/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$DB_PORT
StorageUser=slurm
StoragePass=$DB_PASSWORD
StorageLoc=slurm_acct_db
EOF
    )
}

start_munge() {
    running munged && return 0
    if [ ! -s "$STATE/munge/munge.key" ]; then
        mungekey -c -k "$STATE/munge/munge.key"
    fi
    chown -R munge: "$STATE/munge"
    chmod 755 "$STATE/munge"  # clients (slurmctld, slurmd, sbatch) reach the socket in it
    chmod 600 "$STATE/munge/munge.key"
    # munged drops no privileges itself; it runs as the munge user that owns the key.
    runuser -u munge -- munged --socket="$MUNGE_SOCKET" --key-file="$STATE/munge/munge.key" \
        --pid-file="$(pidfile munged)" --log-file="$STATE/munge/munged.log" --seed-file="$STATE/munge/munged.seed"
    wait_for 10 running munged || die "munged did not start; see $STATE/munge/munged.log"
}

start_mariadb() {
    running mariadbd && return 0
    if [ ! -d "$STATE/mysql/data/mysql" ]; then
        mariadb-install-db --no-defaults --user=mysql --datadir="$STATE/mysql/data" \
            --auth-root-authentication-method=socket --skip-test-db >"$STATE/log/mariadb-install.log" 2>&1 \
            || die "mariadb-install-db failed; see $STATE/log/mariadb-install.log"
    fi
    chown -R mysql: "$STATE/mysql"
    setsid mariadbd --no-defaults --user=mysql --datadir="$STATE/mysql/data" --socket="$DB_SOCKET" \
        --pid-file="$(pidfile mariadbd)" --bind-address=127.0.0.1 --port=$DB_PORT --skip-name-resolve \
        --tmpdir="$STATE/mysql" --log-error="$STATE/mysql/mariadbd.log" --innodb-buffer-pool-size=32M \
        </dev/null >/dev/null 2>&1 &
    wait_for 60 mariadb-admin --no-defaults --socket="$DB_SOCKET" ping || die "MariaDB did not start; see $STATE/mysql/mariadbd.log"
    mariadb --no-defaults --socket="$DB_SOCKET" -u root <<EOF
CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY '$DB_PASSWORD';
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';
EOF
}

start_slurmdbd() {
    running slurmdbd && return 0
    slurmdbd || die "slurmdbd did not start; see $STATE/log/slurmdbd.log"
    wait_for 30 sacctmgr -n list cluster || die "slurmdbd does not answer; see $STATE/log/slurmdbd.log"
    if ! sacctmgr -n -P list cluster format=cluster | grep -qx "$CLUSTER"; then
        sacctmgr -i add cluster "$CLUSTER" >/dev/null
    fi
}

start_slurmctld() {
    running slurmctld && return 0
    slurmctld || die "slurmctld did not start; see $STATE/log/slurmctld.log"
    wait_for 30 scontrol ping || die "slurmctld does not answer; see $STATE/log/slurmctld.log"
}

start_slurmd() {
    if ! running slurmd; then
        # -N: the node is "localhost" whatever this machine's host name is.
        slurmd -N localhost || die "slurmd did not start; see $STATE/log/slurmd.log"
    fi
    if ! wait_for 30 node_ready; then
        scontrol update nodename=localhost state=resume >/dev/null 2>&1 || true
        wait_for 15 node_ready || die "node localhost is $(sinfo -h -N -o '%T %E' 2>&1); see $STATE/log/slurmd.log and slurmctld.log"
    fi
}

node_ready() {
    sinfo -h -N -n localhost -o %T | grep -Eq '^(idle|mixed|allocated)'
}

up() {
    [ "$(id -u)" -eq 0 ] || die "needs root (slurmd runs each job as its user; munged and MariaDB run as their own)"
    mkdir -p "$STATE"/{etc,log,run,slurmctld,slurmd,munge,mysql}
    chmod 755 "$STATE"
    install_packages
    write_configs
    start_munge
    start_mariadb
    start_slurmdbd
    start_slurmctld
    start_slurmd
    say "up: partition $PARTITION, account root; point commands at it with: export SLURM_CONF=$SLURM_CONF"
}

stop() {  # stop NAME: TERM its process and wait for it to exit
    running "$1" || return 0
    local pid
    pid=$(cat "$(pidfile "$1")")
    kill "$pid"
    wait_for 30 bash -c "! kill -0 $pid" || { say "$1 ($pid) ignored TERM; killing it"; kill -9 "$pid" || true; }
}

down() {
    [ -d "$STATE" ] || { say "nothing to stop ($STATE does not exist)"; return 0; }
    if running slurmctld; then
        # Running jobs' slurmstepd outlive slurmd: cancel them first and let them end.
        squeue -h -o %i | xargs -r scancel --full 2>/dev/null || true
        wait_for 30 bash -c '[ -z "$(squeue -h -t running,completing -o %i)" ]' || say "jobs still running: $(squeue -h 2>&1)"
    fi
    for daemon in slurmd slurmctld slurmdbd mariadbd munged; do
        stop "$daemon"
    done
    if [ "$(readlink "$DEFAULT_CONF")" = "$SLURM_CONF" ]; then
        rm "$DEFAULT_CONF"
    fi
    rm -rf "$STATE"
    say "down"
}

status() {
    for daemon in munged mariadbd slurmdbd slurmctld slurmd; do
        if running "$daemon"; then echo "$daemon: running (pid $(cat "$(pidfile "$daemon")"))"; else echo "$daemon: stopped"; fi
    done
    if running slurmctld; then
        sinfo -N -o '%N %T %c %m %G'
        echo "export SLURM_CONF=$SLURM_CONF"
    fi
}

case "${1:-}" in
    up) up ;;
    down) down ;;
    status) status ;;
    env) echo "export SLURM_CONF=$SLURM_CONF" ;;
    *) echo "usage: bash profiles/slurm/testcluster.sh up|down|status|env" >&2; exit 2 ;;
esac
