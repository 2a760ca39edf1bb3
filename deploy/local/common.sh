# Shared by deploy/local/start and deploy/local/stop (sourced, not run): where the state lives,
# and how to tell whether a process from a pid file is still running and still ours.
# shellcheck shell=bash

# The repository's root (this file is in deploy/local/).
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)

# An absolute path for $1, relative paths taken from the current directory.
absolute() {
    case $1 in
        /*) printf '%s\n' "$1" ;;
        *) printf '%s\n' "$PWD/$1" ;;
    esac
}

state=$(absolute "${LIANXI_STATE_DIR:-$repo/lianxi-local}")
state=${state%/}
# (Used by the scripts that source this file.)
# shellcheck disable=SC2034
pids="$state/pids"   # NAME.pid: one process id each
run="$state/run"     # NAME.match: a piece of its command line, to recognise it again
# shellcheck disable=SC2034
logs="$state/logs"   # NAME.log: its stdout and stderr
# A state directory holds this file; `stop --purge` deletes no directory without it.
# shellcheck disable=SC2034
marker="$state/.lianxi-local"

say() { printf '%s\n' "$*"; }
die() {
    printf 'lianxi-local: %s\n' "$*" >&2
    exit 1
}

am_root() { [ "$(id -u)" -eq 0 ]; }

# Whether process $1 runs. A zombie (exited, not yet reaped: what becomes of an orphan on a
# machine whose init does not reap) counts as gone, although `kill -0` still finds it.
alive() {
    local stat
    if [ -d /proc/self ]; then
        stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
        stat=${stat##*) }
        case ${stat%% *} in
            Z | X | x) return 1 ;;
        esac
        return 0
    fi
    kill -0 "$1" 2>/dev/null
}

# Whether process $1 is still the one started as NAME $2: its command line contains what
# run/NAME.match recorded at start (another program may have been given a freed process id).
ours() {
    local expected cmdline
    expected=$(cat "$run/$2.match" 2>/dev/null) || return 1
    [ -n "$expected" ] || return 1
    if [ -r "/proc/$1/cmdline" ]; then
        cmdline=$(tr '\0' ' ' <"/proc/$1/cmdline")
    else
        cmdline=$(ps -o args= -p "$1" 2>/dev/null) || return 1
    fi
    [[ $cmdline == *"$expected"* ]]
}

# The process id in pids/NAME.pid, when it is a number.
pid_of() {
    local pid
    pid=$(head -n 1 "$pids/$1.pid" 2>/dev/null) || return 1
    [[ $pid =~ ^[0-9]+$ ]] || return 1
    printf '%s\n' "$pid"
}

# The names of the processes with a pid file, in the order given by the files' names.
recorded() {
    local file
    for file in "$pids"/*.pid; do
        [ -e "$file" ] || continue
        file=${file##*/}
        printf '%s\n' "${file%.pid}"
    done
}

# PostgreSQL's server programs: on the PATH, else the newest of Debian's versioned directories.
pg_bindir() {
    local initdb
    if initdb=$(command -v initdb 2>/dev/null); then
        # Its real directory, where psql and pg_ctl are too (not a directory of symlinks).
        dirname "$(readlink -f "$initdb")"
        return 0
    fi
    initdb=$(compgen -G "/usr/lib/postgresql/*/bin/initdb" | sort -V | tail -n 1) || true
    [ -n "$initdb" ] || return 1
    dirname "$initdb"
}

# The account that owns the cluster's data directory, which must run pg_ctl on it.
pg_owner() {
    stat -c %U "$state/postgres/data"
}

# Runs "$@" as account $1 (from /, which every account may enter): directly when that is who we
# are, through runuser when we are root, else refuses.
as_account() {
    local account=$1
    shift
    if [ "$(id -un)" = "$account" ]; then
        (cd / && "$@")
    elif am_root; then
        (cd / && runuser -u "$account" -- env HOME=/tmp "$@")
    else
        die "the PostgreSQL cluster in $state/postgres belongs to $account: run this as $account or as root"
    fi
}
