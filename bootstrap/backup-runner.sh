#!/bin/sh
# libresh backup runner: backs up, restores and lists one instance's data with restic.
#
# It runs the same way in a backup Job's container (postgres image + the restic binary) and on
# a test machine: every input is an environment variable or a mounted directory. POSIX sh, so
# busybox (Alpine images) and dash both run it.
#
#   LIBRESH_ACTION        init | backup | restore | snapshots | forget | scheduled (backup,
#                         then forget) | meta (a backup's record and Secrets, encrypted)
#   LIBRESH_INSTANCE      instance name (tag instance:NAME)
#   LIBRESH_REPOSITORY_OF whose repository RESTIC_REPOSITORY is (each instance has its own,
#                         with its own key): any other LIBRESH_INSTANCE is refused
#   LIBRESH_STORAGE_CHECK init: the storage's own repository, which must be there before an
#                         instance's is made (a path whose disk is not mounted has none)
#   LIBRESH_LOCK_WAIT     how long restic waits for a lock another run holds (restic 0.16+:
#                         --retry-lock; default 5m), then fails with code 17
#   LIBRESH_BACKUP_ID     backup: the id to give (default: a UTC timestamp);
#                         restore: the backup to restore (default: the newest complete one)
#   LIBRESH_APP, LIBRESH_VERSION, LIBRESH_REASON   recorded as tags on a backup
#   LIBRESH_VOLUMES_DIR   directory holding one directory per volume (the Job mounts /data)
#   LIBRESH_VOLUMES       names of the volumes to back up / restore, space separated
#   LIBRESH_DATABASES_DIR directory holding one directory per database: the instance's
#                         connection Secret, mounted (files host, port, database, username,
#                         password, uri; older Secrets and hand-made directories: only `uri`)
#   LIBRESH_DATABASES     names of the databases, space separated
#   LIBRESH_META_DIR      the instance record and Secrets, mounted (backup only; optional)
#   LIBRESH_KEEP_DAILY, LIBRESH_KEEP_WEEKLY, LIBRESH_KEEP_MONTHLY   forget: retention
#   LIBRESH_PAD_FILE      meta: the one-time pad the record and Secrets are encrypted with
#   LIBRESH_RESULT_FILE   where the one-line JSON result goes (the Job: /dev/termination-log)
#   RESTIC_REPOSITORY, RESTIC_PASSWORD_FILE (or RESTIC_PASSWORD), AWS_*   restic's own
#   TMPDIR                the runner's own files, Secrets among them (the Job: memory)
#   RESTIC_CACHE_DIR      restic's cache; restic's temporary pack files go to its tmp/
#                         (the Job: a disk volume: they are large)
#
# A backup is a group of snapshots sharing the tag backup:ID: one per database (pg_dump streamed
# into restic: no temporary copy of the dump), then one of the volumes' files with the record
# and Secrets (in /.libresh-meta). That last one is written only once every dump is stored and
# carries the tag `complete`: it is the proof that the backup is whole. A failed backup's parts
# are forgotten. Restores only ever read complete backups. (One restic run per part and no
# more: each run pays restic's key derivation, most of a second.)
#
# Exit codes (also in the result's "code"): 0 ok, 1 unexpected failure, 2 bad input,
# 10 no repository, 11 storage unreachable, 12 wrong repository password, 13 storage full,
# 14 no such backup, 15 database dump or restore failed (also: the server is newer than this
# pg_dump), 16 volume files failed (also: the repository was locked once a volume was emptied),
# 17 the repository is locked by another run of this instance (a backup, its retention);
# 129, 130, 143: stopped by SIGHUP, SIGINT, SIGTERM (the Job deleted or past its deadline): the
# staged Secrets are removed first.
#
# No password is ever on a command line (argv is readable by every user of the node, in
# /proc/PID/cmdline and ps): pg_dump and psql connect through libpq's environment, see
# with_database.
#
# Databases are dumped and restored with the app's own connection (its role owns the
# database, is no superuser): see empty_database_sql for what a restore may remove.

set -u
export TZ=UTC  # restic's times, as the listing prints them

STAGE_DIR=${TMPDIR:-/tmp}
WORK=$(mktemp -d "$STAGE_DIR/libresh-runner.XXXXXX") || exit 1
META_STAGE=
cleanup() {
    rm -rf "$WORK"
    # In the Job the stage is a mount point: its files go, the directory stays.
    [ -z "$META_STAGE" ] || rm -rf "$META_STAGE" 2>/dev/null
}
trap cleanup EXIT
RESULT_FILE=${LIBRESH_RESULT_FILE:-/dev/null}
HOST=libresh
# restic's temporary pack files (up to 16 MiB each, a few at once) next to its cache, on disk:
# TMPDIR is memory in the Job.
if [ -n "${RESTIC_CACHE_DIR:-}" ] && mkdir -p "$RESTIC_CACHE_DIR/tmp" 2>/dev/null; then
    export TMPDIR="$RESTIC_CACHE_DIR/tmp"
fi
# restic --json prints 60 progress lines a second, into $WORK/out (memory): one a minute.
export RESTIC_PROGRESS_FPS=0.0166

log() { printf '%s libresh-runner: %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }

descendants() {
    # Every process below this shell, from /proc/*/stat (pid (comm) state ppid ...).
    for stat in /proc/[0-9]*/stat; do
        IFS= read -r line <"$stat" 2>/dev/null || continue
        rest=${line##*) }
        # shellcheck disable=SC2086 # split on purpose: state ppid ...
        set -- $rest
        printf '%s %s\n' "${line%% *}" "$2"
    done | awk -v root="$$" '{ parent[$1] = $2 }
        END { for (p in parent) { q = p; n = 0
                while ((q in parent) && q != root && n++ < 64) q = parent[q]
                if (q == root && p != root) print p } }'
}

stopped() {
    # $1: the signal, $2: the exit code. The Job is deleted or past its deadline (SIGTERM, then
    # SIGKILL after the grace period): stop what runs, remove the staged Secrets, say so.
    trap '' TERM INT HUP
    # shellcheck disable=SC2046 # one argument per process
    kill -TERM $(descendants) 2>/dev/null
    wait
    cleanup
    trap - EXIT
    log "error: stopped by SIG$1"
    printf '{"ok":false,"code":%s,"error":"stopped by SIG%s"}\n' "$2" "$1" >"$RESULT_FILE"
    exit "$2"
}
trap 'stopped TERM 143' TERM
trap 'stopped INT 130' INT
trap 'stopped HUP 129' HUP

in_background() {
    # Runs "$@" and waits for it. A shell runs a trap only once its foreground command has
    # ended (POSIX, "Signals and Error Handling"), but at once while it waits: so the long
    # steps run in the background. (Their stdin is /dev/null: they read only their own pipes.)
    "$@" &
    wait $!
}

json_string() {
    # A JSON string literal: backslashes and quotes escaped, control characters dropped.
    printf '"%s"' "$(printf '%s' "$1" | tr -d '\000-\037' | sed 's/\\/\\\\/g; s/"/\\"/g')"
}

fail() {
    code=$1
    shift
    log "error: $*"
    printf '{"ok":false,"code":%s,"error":%s}\n' "$code" "$(json_string "$*")" >"$RESULT_FILE"
    exit "$code"
}

require() {
    for name in "$@"; do
        eval "value=\${$name:-}"
        [ -n "$value" ] || fail 2 "$name is not set"
    done
}

# restic 0.16+ waits for a lock held by another run (--retry-lock) instead of failing at once:
# a backup started while its schedule applies the retention waits for it, a bounded time.
# Older restic (Debian's 0.14, in the tests) has no such option and fails at once.
RETRY_LOCK=
# shellcheck disable=SC2046 # "restic MAJOR.MINOR.PATCH ...": two numbers
set -- $(command restic version 2>/dev/null | sed -n 's/^restic \([0-9]*\)\.\([0-9]*\)\..*/\1 \2/p')
if [ "${1:-0}" -gt 0 ] || [ "${2:-0}" -ge 16 ]; then
    RETRY_LOCK="--retry-lock=${LIBRESH_LOCK_WAIT:-5m}"
fi
restic() {
    case " $* " in
    *" --no-lock "* | " version "*) command restic "$@" ;;
    *) command restic ${RETRY_LOCK:+"$RETRY_LOCK"} "$@" ;;
    esac
}

# Runs restic with its stderr kept in $WORK/err (and shown), so failures can be explained.
run_restic() {
    restic "$@" 2>"$WORK/err"
    status=$?
    cat "$WORK/err" >&2
    return "$status"
}

restic_failure_code() {
    # The runner's code for why the last restic run failed, from its messages (restic 0.14 to
    # 0.18 print the same ones); nothing when it is none of these.
    case $(cat "$WORK/err" 2>/dev/null) in
    *"already locked"*) echo 17 ;;
    *"wrong password"*) echo 12 ;;
    *"no space left on device"* | *"QuotaExceeded"* | *"quota exceeded"*) echo 13 ;;
    *"dial tcp"* | *"no such host"* | *"connection refused"* | *"i/o timeout"* | \
        *"network is unreachable"* | *"permission denied"* | *"Permission denied"*) echo 11 ;;
    *"no snapshot found"* | *"no matching ID found"*) echo 14 ;;
    *"Is there a repository at the following location"* | *"repository does not exist"*) echo 10 ;;
    esac
}

repository_failure() {
    # Did the last restic run fail because of the repository or its storage?
    case $(restic_failure_code) in
    10 | 11 | 12 | 13 | 17) return 0 ;;
    esac
    return 1
}

explain_restic_failure() {
    # $1: what was being done; $2: the code when the cause is none restic names.
    case $(restic_failure_code) in
    12) fail 12 "wrong repository password while $1" ;;
    13) fail 13 "the backup storage is full ($1)" ;;
    11) fail 11 "the backup storage cannot be reached while $1: $(grep -m 1 -i 'fatal' "$WORK/err")" ;;
    14) fail 14 "there is no complete backup ${BACKUP_ID:-} of $LIBRESH_INSTANCE ($1)" ;;
    17) fail 17 "the repository of ${LIBRESH_INSTANCE:-this instance} is locked by another run (a backup or its retention) while $1: $(grep -m 1 -i 'locked' "$WORK/err")" ;;
    10) fail 10 "there is no restic repository at $RESTIC_REPOSITORY ($1): set up the storage with \`libresh backup storage set\`, or mount the disk that holds it" ;;
    esac
    fail "${2:-1}" "restic failed while $1: $(tail -n 1 "$WORK/err")"
}

do_init() {
    # Only ever on request, by libresh in libresh-system: `libresh backup storage set` (the
    # storage's own repository), an instance's first backup (its repository, once the
    # storage's own is there: a backup that created a repository would happily write into an
    # empty mount point when the backup disk is not mounted).
    require RESTIC_REPOSITORY
    if [ -n "${LIBRESH_STORAGE_CHECK:-}" ] && [ ! -f "$LIBRESH_STORAGE_CHECK/config" ]; then
        fail 10 "the backup storage is not there: no repository at $LIBRESH_STORAGE_CHECK (is the disk that holds it mounted? else set up the storage again with \`libresh backup storage set\`)"
    fi
    if run_restic cat config >/dev/null; then
        log "the repository exists already"
    else
        case $(restic_failure_code) in
        11 | 12) explain_restic_failure "opening the repository" ;;
        esac
        log "creating the restic repository"
        run_restic init >/dev/null || explain_restic_failure "creating the repository"
    fi
    printf '{"ok":true}\n' >"$RESULT_FILE"
}

summary_number() {
    # $1: field of restic's --json summary line in $WORK/out
    grep '"message_type":"summary"' "$WORK/out" | sed -n "s/.*\"$1\":\([0-9]*\).*/\1/p" | tail -n 1
}

backup_tags() {
    printf 'instance:%s,backup:%s,app:%s,version:%s,reason:%s,part:%s' "$LIBRESH_INSTANCE" \
        "$BACKUP_ID" "${LIBRESH_APP:-unknown}" "${LIBRESH_VERSION:-unknown}" \
        "${LIBRESH_REASON:-manual}" "$1"
}

forget_partial_backup() {
    log "forgetting the parts of the failed backup $BACKUP_ID"
    # By id: `restic forget --tag` without a policy forgets nothing.
    ids=$(restic snapshots --json --host "$HOST" --tag "instance:$LIBRESH_INSTANCE,backup:$BACKUP_ID" \
        2>/dev/null | grep -o '"id":"[0-9a-f]*"' | sed 's/"id":"\(.*\)"/\1/')
    # shellcheck disable=SC2086 # one argument per id
    [ -z "$ids" ] || restic forget $ids >/dev/null 2>&1 || true
}

check_volumes() {
    [ -n "${LIBRESH_VOLUMES:-}" ] || return 0
    require LIBRESH_VOLUMES_DIR
    for volume in $LIBRESH_VOLUMES; do
        [ -d "$LIBRESH_VOLUMES_DIR/$volume" ] || fail 2 "volume $volume is not mounted at $LIBRESH_VOLUMES_DIR/$volume"
    done
}

stage_meta() {
    # The record and Secrets go next to the volumes as .libresh-meta, into the same snapshot.
    # Mounted ConfigMaps and Secrets are symlink farms (..data/...): copy the visible files.
    # They are Secrets: private (umask), and in memory in the Job (a memory-backed volume is
    # mounted there, see libresh_cli/backup/jobs.py); removed when the runner ends, however.
    META_STAGE="$1/.libresh-meta"
    rm -rf "$META_STAGE" 2>/dev/null
    mkdir -p "$META_STAGE" && chmod 700 "$META_STAGE"
    [ -n "${LIBRESH_META_DIR:-}" ] || return 0
    (cd "$LIBRESH_META_DIR" && find . -name '..*' -prune -o -type f -print -o -type l -print) |
        (
            umask 077
            while read -r path; do
                mkdir -p "$META_STAGE/$(dirname "$path")"
                cp -L "$LIBRESH_META_DIR/$path" "$META_STAGE/$path"
            done
        )
}

backup_files_from() {
    # shellcheck disable=SC2086 # the volume names are split on purpose
    cd "$1" && run_restic backup --json --host "$HOST" \
        --tag "$(backup_tags files),complete" ${LIBRESH_VOLUMES:-} .libresh-meta >"$WORK/out"
}

backup_files_and_meta() {
    # Relative paths: the snapshot holds /VOLUME/..., restored under any volumes directory.
    # Without volumes, a fixed place (not $WORK, whose name changes): retention groups
    # snapshots by their paths.
    base=${LIBRESH_VOLUMES_DIR:-}
    if [ -z "${LIBRESH_VOLUMES:-}" ]; then
        base="$STAGE_DIR/libresh-stage"
        mkdir -p "$base"
    fi
    stage_meta "$base"
    log "backing up volumes (${LIBRESH_VOLUMES:-none}) and the instance record"
    in_background backup_files_from "$base"
    status=$?
    rm -rf "$META_STAGE" 2>/dev/null
    # restic 3: some files could not be read, so the snapshot is incomplete: not a backup.
    [ "$status" -eq 0 ] || { forget_partial_backup; explain_restic_failure "backing up the volumes" 16; }
    files=$(summary_number total_files_processed)
    read_bytes=$(summary_number total_bytes_processed)
    added=$(summary_number data_added)
    FILES=${files:-0}
    BYTES=$((BYTES + ${read_bytes:-0}))
    ADDED=$((ADDED + ${added:-0}))
}

percent_decode() {
    # $1 with each %XX replaced by its byte, into $decoded (no command line: printf and the
    # arithmetic are the shell's own).
    rest=$1
    decoded=
    while :; do
        case $rest in
        *%*) ;;
        *) break ;;
        esac
        decoded=$decoded${rest%%\%*}
        rest=${rest#*\%}
        case $rest in
        [0-9A-Fa-f][0-9A-Fa-f]*)
            hex=${rest%"${rest#??}"}
            rest=${rest#??}
            byte=$(printf "\\$(printf '%03o' "$((0x$hex))")x")
            decoded=$decoded${byte%x}
            ;;
        *) decoded=$decoded% ;;
        esac
    done
    decoded=$decoded$rest
}

read_connection() {
    # Sets db_host, db_port, db_name, db_user, db_password, db_sslmode for database $1, from
    # its Secret's keys, or from its uri (postgresql://USER:PASSWORD@HOST:PORT/NAME?sslmode=X)
    # when the keys are missing. The uri gives sslmode either way.
    dir="$LIBRESH_DATABASES_DIR/$1"
    uri=
    [ ! -r "$dir/uri" ] || uri=$(cat "$dir/uri")
    db_sslmode=
    case $uri in
    *\?*)
        query=${uri#*\?}
        case "&$query" in
        *"&sslmode="*)
            db_sslmode=${query#*sslmode=}
            db_sslmode=${db_sslmode%%&*}
            ;;
        esac
        ;;
    esac
    if [ -r "$dir/host" ] && [ -r "$dir/port" ] && [ -r "$dir/database" ] &&
        [ -r "$dir/username" ] && [ -r "$dir/password" ]; then
        db_host=$(cat "$dir/host") db_port=$(cat "$dir/port") db_name=$(cat "$dir/database")
        db_user=$(cat "$dir/username") db_password=$(cat "$dir/password")
        return 0
    fi
    [ -n "$uri" ] || fail 2 "no connection for database $1 at $dir/uri"
    rest=${uri#*://}
    rest=${rest%%\?*}
    authority=${rest%%/*}
    db_name=
    case $rest in */*) db_name=${rest#*/} ;; esac
    userinfo=
    case $authority in *@*) userinfo=${authority%@*} authority=${authority##*@} ;; esac
    db_user=${userinfo%%:*}
    db_password=
    case $userinfo in *:*) db_password=${userinfo#*:} ;; esac
    case $authority in
    \[*\]:*) db_host=${authority%]:*} db_host=${db_host#[} db_port=${authority##*]:} ;;
    \[*\]) db_host=${authority#[} db_host=${db_host%]} db_port= ;;
    *:*) db_host=${authority%:*} db_port=${authority##*:} ;;
    *) db_host=$authority db_port= ;;
    esac
    for field in db_host db_name db_user db_password; do
        eval "percent_decode \"\$$field\""
        eval "$field=\$decoded"
    done
}

with_database() {
    # Runs "$@" (pg_dump, psql) connected to database $1 through libpq's environment: PGHOST,
    # PGPORT, PGDATABASE, PGUSER, PGSSLMODE, and PGPASSWORD, exported in a subshell, so in the
    # environment of that one command only (not restic's, not the runner's). Chosen over a
    # PGPASSFILE: a process's environment is readable only by its owner and root
    # (/proc/PID/environ is 0400 and needs ptrace rights), as a 0600 file would be, while
    # nothing is written anywhere, nothing is left behind when the Job is killed, and any
    # password works (a .pgpass line needs ':' and '\' escaped and cannot hold a newline).
    # Never on the command line: argv (/proc/PID/cmdline, ps) is readable by every user.
    read_connection "$1"
    shift
    (
        unset PGSERVICE PGSERVICEFILE PGPASSFILE PGOPTIONS
        export PGHOST="$db_host" PGDATABASE="$db_name" PGUSER="$db_user" PGPASSWORD="$db_password"
        if [ -n "$db_port" ]; then export PGPORT="$db_port"; else unset PGPORT; fi
        if [ -n "$db_sslmode" ]; then export PGSSLMODE="$db_sslmode"; else unset PGSSLMODE; fi
        exec "$@"
    )
}

check_dump_client() {
    # pg_dump refuses a server of a newer major version than its own ("pg_dump cannot dump
    # from PostgreSQL servers newer than its own major version; it will refuse to even try",
    # pg_dump docs), and dumps any older one (back to 9.2). Said here, before anything is
    # stored, from the numbers of the real binaries: the server's server_version_num and
    # this pg_dump's --version. When the server cannot be asked, pg_dump says why below.
    database=$1
    read_connection "$database"  # its `fail` ends the runner: not in a command substitution
    server=$(with_database "$database" psql --no-psqlrc --tuples-only --no-align \
        --command='SHOW server_version_num' 2>/dev/null) || return 0
    client=$(pg_dump --version | sed -n 's/^pg_dump (PostgreSQL) \([0-9][0-9]*\).*/\1/p')
    case $server in '' | *[!0-9]*) return 0 ;; esac
    [ -n "$client" ] || fail 15 "cannot tell the version of this runner's pg_dump ($(pg_dump --version))"
    server_major=$((server / 10000))
    if [ "$server_major" -gt "$client" ]; then
        fail 15 "database $database runs PostgreSQL $server_major, newer than this backup runner's pg_dump $client, which cannot dump it (pg_dump refuses servers newer than itself); the runner image must be PostgreSQL $server_major or newer"
    fi
}

dump_into_restic() {
    {
        with_database "$1" pg_dump --no-owner --no-privileges 2>"$WORK/dump-err"
        echo $? >"$WORK/dump-status"
    } | run_restic backup --json --host "$HOST" --tag "$(backup_tags "db:$1")" \
        --stdin --stdin-filename "databases/$1.sql" >"$WORK/out"
}

dump_database() {
    # pg_dump's output goes straight into restic: no copy of the dump on disk. Its exit status
    # travels through a file, since POSIX sh has no pipefail.
    database=$1
    read_connection "$database"
    log "dumping database $database"
    in_background dump_into_restic "$database"
    status=$?
    cat "$WORK/dump-err" >&2
    # When restic stops for a reason of its own (password, storage), pg_dump fails too (its pipe
    # is gone): restic's reason is the one to give.
    if [ "$status" -ne 0 ] && repository_failure; then
        forget_partial_backup
        explain_restic_failure "storing the dump of $database" 15
    fi
    if [ "$(cat "$WORK/dump-status")" != 0 ]; then
        forget_partial_backup
        fail 15 "pg_dump of $database failed: $(tail -n 1 "$WORK/dump-err")"
    fi
    [ "$status" -eq 0 ] || { forget_partial_backup; explain_restic_failure "storing the dump of $database" 15; }
    read_bytes=$(summary_number total_bytes_processed)
    added=$(summary_number data_added)
    BYTES=$((BYTES + ${read_bytes:-0}))
    ADDED=$((ADDED + ${added:-0}))
}

record_field() {
    # A top-level string field of the mounted instance record (libresh writes it with
    # json.dumps(indent=1, sort_keys=True): top-level keys are the lines indented by one space).
    sed -n "s/^ \"$1\": \"\([^\"]*\)\",\{0,1\}\$/\1/p" "$LIBRESH_META_DIR/record/record.json" 2>/dev/null | head -n 1
}

do_backup() {
    require LIBRESH_INSTANCE RESTIC_REPOSITORY
    BACKUP_ID=${LIBRESH_BACKUP_ID:-$(date -u +%Y%m%dT%H%M%SZ)}
    # The record says what runs now: a CronJob's environment was written at scheduling time,
    # and an upgrade since must not leave its backups tagged with the old version.
    if [ -n "${LIBRESH_META_DIR:-}" ] && [ -n "$(record_field version)" ]; then
        LIBRESH_APP=$(record_field app)
        LIBRESH_VERSION=$(record_field version)
    fi
    FILES=0 BYTES=0 ADDED=0
    check_volumes
    for database in ${LIBRESH_DATABASES:-}; do
        check_dump_client "$database"
    done
    # No separate check that the repository opens: the first restic run says why it does not.
    for database in ${LIBRESH_DATABASES:-}; do
        dump_database "$database"
    done
    backup_files_and_meta
    log "backup $BACKUP_ID complete: $FILES files, $BYTES bytes read, $ADDED bytes added"
    printf '{"ok":true,"backup":%s,"files":%s,"bytes":%s,"added":%s}\n' \
        "$(json_string "$BACKUP_ID")" "${FILES:-0}" "${BYTES:-0}" "${ADDED:-0}" >"$RESULT_FILE"
}

list_complete_backups() {
    # $WORK/list: one line per complete backup, "ID TIME VERSION REASON APP", oldest first.
    # Without a lock: listing must work on a full disk too.
    run_restic snapshots --no-lock --json --host "$HOST" --tag "instance:$LIBRESH_INSTANCE,complete,part:files" \
        >"$WORK/out" || explain_restic_failure "listing snapshots"
    sed 's/},{/}\n{/g' "$WORK/out" | while read -r snapshot; do
        id=$(printf '%s' "$snapshot" | grep -o '"backup:[^"]*"' | sed 's/"backup:\(.*\)"/\1/')
        [ -n "$id" ] || continue
        time=$(printf '%s' "$snapshot" | sed -n 's/.*"time":"\([^".]*\)[^"]*".*/\1/p')
        version=$(printf '%s' "$snapshot" | grep -o '"version:[^"]*"' | sed 's/"version:\(.*\)"/\1/')
        reason=$(printf '%s' "$snapshot" | grep -o '"reason:[^"]*"' | sed 's/"reason:\(.*\)"/\1/')
        app=$(printf '%s' "$snapshot" | grep -o '"app:[^"]*"' | sed 's/"app:\(.*\)"/\1/')
        printf '%s %sZ %s %s %s\n' "$id" "$time" "$version" "$reason" "$app"
    done | sort -k2 >"$WORK/list"
}

find_newest_backup() {
    # Sets BACKUP_ID (not a command substitution: its `fail` must end the runner).
    list_complete_backups
    BACKUP_ID=$(tail -n 1 "$WORK/list" | cut -d ' ' -f 1)
}

load_from_restic() {
    database=$1
    {
        printf '%s\n' '\set ON_ERROR_STOP on' 'BEGIN;'
        empty_database_sql
        restic dump --host "$HOST" --tag "instance:$LIBRESH_INSTANCE,backup:$BACKUP_ID,part:db:$database" \
            latest "/databases/$database.sql" 2>"$WORK/err"
        dumped=$?
        echo "$dumped" >"$WORK/dump-status"
        [ "$dumped" -ne 0 ] || echo 'COMMIT;'
    } | with_database "$database" psql --quiet --no-psqlrc >/dev/null 2>"$WORK/psql-err"
}

restore_database() {
    database=$1
    read_connection "$database"
    log "restoring database $database"
    # One transaction: the database is emptied (so tables a failed upgrade added go too), the
    # dump is loaded, and COMMIT is sent only when restic streamed the whole dump. Anything
    # less and psql ends without COMMIT, so the server rolls the whole restore back.
    # The dump has no owners and no privileges (--no-owner --no-privileges): what it makes
    # belongs to the role that restores, the app's own (the instance's, or a clone's).
    in_background load_from_restic "$database"
    status=$?
    cat "$WORK/err" "$WORK/psql-err" >&2
    # psql stops at the first error, and restic, writing into its closed pipe, stops too: then
    # psql's error is the reason, unless restic names one of the repository's.
    if [ "$status" -ne 0 ] && [ -s "$WORK/psql-err" ] && ! repository_failure; then
        fail 15 "loading the dump of $database failed (nothing was changed): $(grep -m 1 'ERROR' "$WORK/psql-err" || tail -n 1 "$WORK/psql-err")"
    fi
    if [ "$(cat "$WORK/dump-status")" != 0 ]; then
        explain_restic_failure "reading the dump of $database (nothing was changed)" 15
    fi
    [ "$status" -eq 0 ] || fail 15 "loading the dump of $database failed (nothing was changed): $(tail -n 1 "$WORK/psql-err")"
}

empty_database_sql() {
    # What the restoring role may remove, and only that: it is the database's owner, not a
    # superuser, and cannot take other roles' objects.
    # - Every schema whose owner's rights it has (pg_has_role ... USAGE): its own, and from
    #   PostgreSQL 15 on `public`, which belongs to pg_database_owner, i.e. to the database's
    #   owner (PostgreSQL 15 release notes). A schema's owner may drop it with everything in it.
    # - On 13 and 14 (and on clusters upgraded from them) `public` belongs to the bootstrap
    #   superuser: the role drops what it owns in it (DROP OWNED, its own objects in this
    #   database only) and leaves the schema. A superuser skips DROP OWNED (the bootstrap
    #   superuser's objects are pinned) and drops every schema in the first step.
    # - Tables or views that other roles own and it cannot drop stop the restore, by name:
    #   the dump would fail on them or leave them behind.
    # pg_dump never writes CREATE SCHEMA public (pg_dump.c: "CREATE SCHEMA would fail"):
    # it is made again when it was dropped.
    cat <<'SQL'
SET client_min_messages = warning;
DO $libresh$
DECLARE
    schema_name name;
    leftover text;
BEGIN
    FOR schema_name IN
        SELECT nspname FROM pg_namespace
         WHERE nspname NOT LIKE 'pg\_%' AND nspname <> 'information_schema'
           AND pg_has_role(nspowner, 'USAGE')
    LOOP
        EXECUTE format('DROP SCHEMA %I CASCADE', schema_name);
    END LOOP;
    IF NOT (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) THEN
        DROP OWNED BY CURRENT_USER CASCADE;
    END IF;
    SELECT string_agg(format('%I.%I (owner %s)', n.nspname, c.relname,
                             pg_get_userbyid(c.relowner)), ', ')
      INTO leftover
      FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE n.nspname NOT LIKE 'pg\_%' AND n.nspname <> 'information_schema'
       AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f');
    IF leftover IS NOT NULL THEN
        RAISE EXCEPTION 'role % may not remove %: only their owner or a superuser may',
            current_user, leftover;
    END IF;
END
$libresh$;
CREATE SCHEMA IF NOT EXISTS public;
SQL
}

restore_volumes() {
    [ -n "${LIBRESH_VOLUMES:-}" ] || return 0
    require LIBRESH_VOLUMES_DIR
    # Emptied first, so files that appeared after the backup go; if restic stops half-way,
    # the snapshot is still there and a re-run finishes the restore.
    for volume in $LIBRESH_VOLUMES; do
        [ -d "$LIBRESH_VOLUMES_DIR/$volume" ] || fail 2 "volume $volume is not mounted at $LIBRESH_VOLUMES_DIR/$volume"
        log "restoring volume $volume"
        find "$LIBRESH_VOLUMES_DIR/$volume" -mindepth 1 -delete ||
            fail 16 "could not empty $LIBRESH_VOLUMES_DIR/$volume before restoring it"
        in_background run_restic restore --host "$HOST" --tag "instance:$LIBRESH_INSTANCE,backup:$BACKUP_ID,complete,part:files" \
            --include "/$volume" --target "$LIBRESH_VOLUMES_DIR" latest >/dev/null ||
            volume_failure "restoring volume $volume"
    done
}

volume_failure() {
    # The volume was emptied already: whatever the cause, files changed (16), even when the
    # cause is a lock (which alone would say "nothing changed").
    [ "$(restic_failure_code)" != 17 ] ||
        fail 16 "the repository was locked by another run while $1, after it was emptied"
    explain_restic_failure "$1" 16
}

do_restore() {
    require LIBRESH_INSTANCE RESTIC_REPOSITORY
    BACKUP_ID=${LIBRESH_BACKUP_ID:-}
    [ -n "$BACKUP_ID" ] || find_newest_backup
    [ -n "$BACKUP_ID" ] || fail 14 "there is no complete backup of $LIBRESH_INSTANCE in the repository"
    run_restic snapshots --no-lock --json --host "$HOST" --tag "instance:$LIBRESH_INSTANCE,backup:$BACKUP_ID,complete" \
        >"$WORK/out" || explain_restic_failure "listing snapshots"
    grep -q '"id"' "$WORK/out" || fail 14 "there is no complete backup $BACKUP_ID of $LIBRESH_INSTANCE"
    for database in ${LIBRESH_DATABASES:-}; do
        restore_database "$database"
    done
    restore_volumes
    log "restored backup $BACKUP_ID"
    printf '{"ok":true,"backup":%s}\n' "$(json_string "$BACKUP_ID")" >"$RESULT_FILE"
}

do_snapshots() {
    # One line per complete backup: "ID TIME VERSION REASON APP", newest last. The result file
    # (a termination message: 4 KiB at most) gets the newest 50.
    require LIBRESH_INSTANCE RESTIC_REPOSITORY
    list_complete_backups
    tail -n 50 "$WORK/list" >"$WORK/newest"
    cat "$WORK/newest"
    printf '{"ok":true,"backups":%s}\n' "$(json_string "$(tr '\n' ';' <"$WORK/newest")")" >"$RESULT_FILE"
}

do_meta() {
    # The record and Secrets of one backup, for `libresh restore --as` on a cluster that does
    # not have the instance. They leave through the Job's termination message, so they are
    # encrypted first with a one-time pad the CLI made (a Secret it deletes afterwards):
    # gzip'ed, XOR'ed byte by byte with the pad, in hex.
    require LIBRESH_INSTANCE RESTIC_REPOSITORY LIBRESH_BACKUP_ID LIBRESH_PAD_FILE
    [ -r "$LIBRESH_PAD_FILE" ] || fail 2 "no pad at $LIBRESH_PAD_FILE"
    BACKUP_ID=$LIBRESH_BACKUP_ID
    run_restic dump --host "$HOST" --tag "instance:$LIBRESH_INSTANCE,backup:$BACKUP_ID,complete,part:files" \
        latest /.libresh-meta >"$WORK/meta.tar" || explain_restic_failure "reading the record of backup $BACKUP_ID"
    mkdir "$WORK/m"
    (cd "$WORK/m" && tar -xf "$WORK/meta.tar") || fail 1 "the record of backup $BACKUP_ID cannot be unpacked"
    meta="$WORK/m/.libresh-meta"
    # The history is not needed to make the instance again, and the message is 4 KiB at most.
    sed -e '/^ "history": \[\],\{0,1\}$/d' -e '/^ "history": \[$/,/^ \],\{0,1\}$/d' \
        "$meta/record/record.json" >"$WORK/record.json" || fail 1 "backup $BACKUP_ID has no record"
    mv "$WORK/record.json" "$meta/record/record.json"
    mkdir -p "$meta/secrets"
    (cd "$meta" && tar -cf - record secrets) | gzip -9 >"$WORK/meta.gz"
    size=$(wc -c <"$WORK/meta.gz")
    if [ "$size" -gt 1900 ] || [ "$size" -gt "$(wc -c <"$LIBRESH_PAD_FILE")" ]; then
        fail 1 "the record and credentials of backup $BACKUP_ID are too large to hand over ($size bytes)"
    fi
    od -An -v -tu1 "$WORK/meta.gz" | tr -s ' ' '\n' | grep . >"$WORK/data"
    head -c "$size" "$LIBRESH_PAD_FILE" | od -An -v -tu1 | tr -s ' ' '\n' | grep . >"$WORK/pad"
    paste "$WORK/data" "$WORK/pad" | while read -r a b; do printf '%02x' $((a ^ b)); done >"$WORK/hex"
    printf '{"ok":true,"backup":%s,"meta":"%s"}\n' "$(json_string "$BACKUP_ID")" "$(cat "$WORK/hex")" >"$RESULT_FILE"
}

do_forget() {
    require LIBRESH_INSTANCE RESTIC_REPOSITORY
    log "applying retention: daily ${LIBRESH_KEEP_DAILY:-7}, weekly ${LIBRESH_KEEP_WEEKLY:-4}, monthly ${LIBRESH_KEEP_MONTHLY:-6}"
    # Grouped by tags: each part of a backup (files, each database, meta) is kept or forgotten
    # alike, so what stays is always whole backups.
    in_background run_restic forget --prune --host "$HOST" --tag "instance:$LIBRESH_INSTANCE" --group-by host,paths \
        --keep-daily "${LIBRESH_KEEP_DAILY:-7}" --keep-weekly "${LIBRESH_KEEP_WEEKLY:-4}" \
        --keep-monthly "${LIBRESH_KEEP_MONTHLY:-6}" >/dev/null || explain_restic_failure "applying retention"
    printf '{"ok":true}\n' >"$RESULT_FILE"
}

# Each instance's backups are in its own repository, opened with its own key: the runner works
# on that instance's backups only (a restore never reads snapshots another namespace wrote).
if [ -n "${LIBRESH_REPOSITORY_OF:-}" ] && [ "${LIBRESH_ACTION:-}" != init ] &&
    [ "${LIBRESH_INSTANCE:-}" != "$LIBRESH_REPOSITORY_OF" ]; then
    fail 2 "the repository of $LIBRESH_REPOSITORY_OF holds no backups of ${LIBRESH_INSTANCE:-another instance}"
fi

case ${LIBRESH_ACTION:-} in
init) do_init ;;
backup) do_backup ;;
restore) do_restore ;;
snapshots) do_snapshots ;;
forget) do_forget ;;
meta) do_meta ;;
scheduled) do_backup && do_forget ;;
*) fail 2 "LIBRESH_ACTION must be init, backup, restore, snapshots, forget, scheduled or meta (got '${LIBRESH_ACTION:-}')" ;;
esac
