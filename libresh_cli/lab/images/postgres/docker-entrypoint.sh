#!/bin/bash
# The lab's stand-in for the official postgres image's entrypoint: written here, following the
# behaviour documented by docker-library/postgres (docker-entrypoint.sh, README "Environment
# Variables" and "Initialization scripts"); see README.md beside this file for the facts and
# what differs. Not upstream's code.
#
# `postgres ...` (or flags alone): make PGDATA and the socket directory, and as root hand them
# to the postgres user and run again as that user; on an empty PGDATA run initdb with
# POSTGRES_USER/POSTGRES_PASSWORD, allow password logins from any host, start a server on the
# socket only, create POSTGRES_DB, run /docker-entrypoint-initdb.d/*, stop it; then exec the
# server. Anything else is exec'ed as it is.
set -Eeo pipefail

# VAR_FILE holds VAR's value (Docker secrets); both set is an error.
load_from_file() {
    local name=$1 default=${2:-} file_name="${1}_FILE"
    if [ -n "${!name:-}" ] && [ -n "${!file_name:-}" ]; then
        echo "error: both $name and $file_name are set (but are exclusive)" >&2
        exit 1
    fi
    local value=$default
    if [ -n "${!name:-}" ]; then
        value=${!name}
    elif [ -n "${!file_name:-}" ]; then
        value=$(<"${!file_name}")
    fi
    export "$name=$value"
    unset "$file_name"
}

read_settings() {
    load_from_file POSTGRES_PASSWORD
    load_from_file POSTGRES_USER postgres
    load_from_file POSTGRES_DB "$POSTGRES_USER"
    load_from_file POSTGRES_INITDB_ARGS
    POSTGRES_HOST_AUTH_METHOD=${POSTGRES_HOST_AUTH_METHOD:-}
    DATABASE_ALREADY_EXISTS=
    if [ -s "$PGDATA/PG_VERSION" ]; then
        DATABASE_ALREADY_EXISTS=true
    fi
}

prepare_directories() {
    mkdir -p "$PGDATA"
    chmod 700 "$PGDATA" || :
    mkdir -p /var/run/postgresql || :
    chmod 3775 /var/run/postgresql || :
    if [ -n "${POSTGRES_INITDB_WALDIR:-}" ]; then
        mkdir -p "$POSTGRES_INITDB_WALDIR"
        [ "$(id -u)" != 0 ] || chown -R postgres "$POSTGRES_INITDB_WALDIR"
        chmod 700 "$POSTGRES_INITDB_WALDIR"
    fi
    if [ "$(id -u)" = 0 ]; then
        find "$PGDATA" /var/run/postgresql \! -user postgres -exec chown postgres '{}' +
    fi
}

require_password() {
    if [ -z "$POSTGRES_PASSWORD" ] && [ "$POSTGRES_HOST_AUTH_METHOD" != trust ]; then
        cat >&2 <<'EOF'
Error: Database is uninitialized and superuser password is not specified.
       Set POSTGRES_PASSWORD to a non-empty value for the superuser
       (or POSTGRES_HOST_AUTH_METHOD=trust, not recommended).
EOF
        exit 1
    fi
}

run_initdb() {
    local extra=()
    if [ -n "${POSTGRES_INITDB_WALDIR:-}" ]; then
        extra=(--waldir "$POSTGRES_INITDB_WALDIR")
    fi
    # The password through a file descriptor, never on a command line. POSTGRES_INITDB_ARGS
    # is a string of shell words, as upstream documents it.
    eval 'initdb --username="$POSTGRES_USER" --pwfile=<(printf "%s\n" "$POSTGRES_PASSWORD") '"$POSTGRES_INITDB_ARGS"' "${extra[@]}" "$@"'
}

allow_host_logins() {
    # Upstream's image listens on every address (its postgresql.conf.sample says so; here
    # the sample is changed the same way by the recipe) and appends one "host all all all"
    # line whose method is POSTGRES_HOST_AUTH_METHOD, else the server's password_encryption.
    local method=$POSTGRES_HOST_AUTH_METHOD
    if [ -z "$method" ]; then
        method=$(postgres -D "$PGDATA" -C password_encryption)
    fi
    printf '\nhost all all all %s\n' "$method" >>"$PGDATA/pg_hba.conf"
}

# The documented helper for initialisation scripts: psql as POSTGRES_USER on POSTGRES_DB,
# over the socket, stopping at the first error.
docker_process_sql() {
    local command=(psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --no-password --no-psqlrc)
    if [ -n "$POSTGRES_DB" ]; then
        command+=(--dbname "$POSTGRES_DB")
    fi
    PGHOST= PGHOSTADDR= "${command[@]}" "$@"
}

start_socket_only_server() {
    [ "${1:-}" != postgres ] || shift
    NOTIFY_SOCKET= PGUSER="${PGUSER:-$POSTGRES_USER}" \
        pg_ctl -D "$PGDATA" -w start \
        -o "$(printf '%q ' "$@" -c listen_addresses='' -p "${PGPORT:-5432}")"
}

stop_socket_only_server() {
    PGUSER="${PGUSER:-postgres}" pg_ctl -D "$PGDATA" -m fast -w stop
}

create_database() {
    local found
    found=$(POSTGRES_DB= docker_process_sql --dbname postgres --tuples-only \
        --set db="$POSTGRES_DB" <<<"SELECT 1 FROM pg_database WHERE datname = :'db';")
    if [ -z "$found" ]; then
        POSTGRES_DB= docker_process_sql --dbname postgres --set db="$POSTGRES_DB" \
            <<<'CREATE DATABASE :"db";'
    fi
}

run_init_files() {
    # shellcheck disable=SC2034 # `psql`: for sourced scripts, as upstream offers it
    local psql=(docker_process_sql) file
    for file in /docker-entrypoint-initdb.d/*; do
        case $file in
            *.sh)
                # Executable: run; otherwise sourced (it then sees these functions).
                if [ -x "$file" ]; then
                    echo "$0: running $file"
                    "$file"
                else
                    echo "$0: sourcing $file"
                    # shellcheck disable=SC1090
                    . "$file"
                fi
                ;;
            *.sql) echo "$0: running $file"; docker_process_sql -f "$file" ;;
            *.sql.gz) echo "$0: running $file"; gunzip -c "$file" | docker_process_sql ;;
            *.sql.xz) echo "$0: running $file"; xzcat "$file" | docker_process_sql ;;
            *.sql.zst) echo "$0: running $file"; zstd -dc "$file" | docker_process_sql ;;
            *) [ ! -e "$file" ] || echo "$0: ignoring $file" ;;
        esac
    done
}

wants_only_an_answer() {
    local arg
    for arg; do
        case $arg in -'?' | --help | --describe-config | -V | --version) return 0 ;; esac
    done
    return 1
}

main() {
    if [ "${1:0:1}" = - ]; then
        set -- postgres "$@"
    fi
    if [ "$1" = postgres ] && ! wants_only_an_answer "$@"; then
        read_settings
        prepare_directories
        if [ "$(id -u)" = 0 ]; then
            exec setpriv --reuid=postgres --regid=postgres --init-groups "$BASH_SOURCE" "$@"
        fi
        if [ -z "$DATABASE_ALREADY_EXISTS" ]; then
            require_password
            ls /docker-entrypoint-initdb.d/ >/dev/null
            run_initdb
            allow_host_logins
            export PGPASSWORD="${PGPASSWORD:-$POSTGRES_PASSWORD}"
            start_socket_only_server "$@"
            create_database
            run_init_files
            stop_socket_only_server
            unset PGPASSWORD
            echo
            echo 'PostgreSQL init process complete; ready for start up.'
            echo
        else
            echo
            echo 'PostgreSQL Database directory appears to contain a database; Skipping initialization'
            echo
        fi
    fi
    exec "$@"
}

main "$@"
