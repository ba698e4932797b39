#!/bin/sh
# Entrypoint of libresh's Nextcloud MODEL image (not Nextcloud), written here after the rules
# of nextcloud/docker's docker-entrypoint.sh that libresh relies on; README.md says which and
# where. Runs as root; occ runs as www-data, as upstream's run_as does.
set -eu

# Upstream's paths; tests of the model (tests/integration/test_nextcloud_model.py) run it on
# this machine with a temporary directory as the volume.
src="${LIBRESH_MODEL_SOURCE:-/usr/src/nextcloud}"
html="${LIBRESH_MODEL_VOLUME:-/var/www/html}"
export LIBRESH_MODEL_VOLUME="$html"

# Whether version A is greater than version B (dotted numbers).
newer_than() {
    php -r 'exit(version_compare($argv[1], $argv[2], ">") ? 0 : 1);' "$1" "$2"
}

as_app_user() {
    if [ "$(id -u)" = 0 ]; then
        su -p "$user" -s /bin/sh -c "$1"
    else
        sh -c "$1"
    fi
}

# The executable *.sh of /docker-entrypoint-hooks.d/STAGE, in order, as the app user; a
# failing one stops the container.
run_hooks() {
    folder="/docker-entrypoint-hooks.d/$1"
    [ -d "$folder" ] || return 0
    for script in $(find "$folder" -maxdepth 1 -name '*.sh' | sort); do
        [ -x "$script" ] || { echo "==> $script skipped: not executable"; continue; }
        echo "==> Running $script"
        as_app_user "$script" || { echo "==> $script failed (exit $?)"; exit 1; }
    done
}

volume_version() {
    if [ -f "$html/version.php" ]; then
        php -r 'require $argv[1]; echo implode(".", $OC_Version);' "$html/version.php"
    else
        echo 0.0.0.0
    fi
}

# The code onto the volume, version.php last (so a copy cut short leaves the old version).
copy_code() {
    for entry in occ status.php cron.php lib; do
        rm -rf "$html/$entry"
        cp -a "$src/$entry" "$html/$entry"
    done
    mkdir -p "$html/config" "$html/data"
    php -r 'require $argv[1];
        echo "<?php\n\$OC_Version = ", var_export($OC_Version, true), ";\n\$OC_VersionString = ",
        var_export($OC_VersionString, true), ";\n";' "$src/version.php" > "$html/version.php.new"
    mv "$html/version.php.new" "$html/version.php"
    if [ "$(id -u)" = 0 ]; then
        chown -R "$user:$user" "$html/occ" "$html/status.php" "$html/cron.php" \
            "$html/lib" "$html/version.php" "$html/config" "$html/data"
    fi
}

install_instance() {
    if [ -z "${NEXTCLOUD_ADMIN_USER:-}" ] || [ -z "${NEXTCLOUD_ADMIN_PASSWORD:-}" ] \
        || [ -z "${POSTGRES_DB:-}" ] || [ -z "${POSTGRES_USER:-}" ] \
        || [ -z "${POSTGRES_PASSWORD:-}" ] || [ -z "${POSTGRES_HOST:-}" ]; then
        echo "Next step: the web-based installation (the model has none)."
        return 0
    fi
    echo "Installing with PostgreSQL database"
    run_hooks pre-installation
    tries=0
    # The passwords reach occ through the environment, expanded by the app user's shell.
    until as_app_user 'php "$LIBRESH_MODEL_VOLUME/occ" maintenance:install -n --admin-user "$NEXTCLOUD_ADMIN_USER" --admin-pass "$NEXTCLOUD_ADMIN_PASSWORD" --database pgsql --database-name "$POSTGRES_DB" --database-user "$POSTGRES_USER" --database-pass "$POSTGRES_PASSWORD" --database-host "$POSTGRES_HOST"'; do
        tries=$((tries + 1))
        if [ "$tries" -gt 10 ]; then
            echo "Installing of nextcloud failed!"
            exit 1
        fi
        echo "Retrying install..."
        sleep "${LIBRESH_MODEL_INSTALL_RETRY_SECONDS:-10}"
    done
    index=1
    for domain in ${NEXTCLOUD_TRUSTED_DOMAINS:-}; do
        as_app_user "php '$html/occ' config:system:set trusted_domains $index --value=$domain"
        index=$((index + 1))
    done
    run_hooks post-installation
}

if expr "$1" : "apache" >/dev/null || [ "${NEXTCLOUD_UPDATE:-0}" -eq 1 ]; then
    if [ "$(id -u)" = 0 ]; then user=www-data; else user="$(id -u)"; fi
    (
        flock 9
        installed_version="$(volume_version)"
        image_version="$(php -r 'require $argv[1]; echo implode(".", $OC_Version);' "$src/version.php")"
        if newer_than "$installed_version" "$image_version"; then
            echo "Can't start Nextcloud because the version of the data ($installed_version) is higher than the docker image version ($image_version) and downgrading is not supported. Are you sure you have pulled the newest image version?"
            exit 1
        fi
        if newer_than "$image_version" "$installed_version"; then
            echo "Initializing nextcloud $image_version ..."
            if [ "$installed_version" != 0.0.0.0 ]; then
                if [ "${image_version%%.*}" -gt "$((${installed_version%%.*} + 1))" ]; then
                    echo "Can't start Nextcloud because upgrading from $installed_version to $image_version is not supported."
                    echo "It is only possible to upgrade one major version at a time."
                    exit 1
                fi
                echo "Upgrading nextcloud from $installed_version ..."
                as_app_user "php '$html/occ' app:list" > /tmp/list_before
            fi
            copy_code
            if [ "$installed_version" = 0.0.0.0 ]; then
                echo "New nextcloud instance"
                install_instance
            else
                run_hooks pre-upgrade
                # Under set -e a failing upgrade ends the container with occ's exit code; the
                # new version.php is on the volume already, so the next start finds the
                # versions equal and starts the web server (upstream does the same).
                as_app_user "php '$html/occ' upgrade"
                run_hooks post-upgrade
            fi
            echo "Initializing finished"
        fi
    ) 9> "$html/nextcloud-init-sync.lock"
    run_hooks before-starting
fi

exec "$@"
