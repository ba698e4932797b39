#!/bin/sh
# The lab's stand-in for the official redis image's entrypoint: written here, following the
# behaviour of docker-library/redis docker-entrypoint.sh (see README.md beside this file). Not
# upstream's code.
#
# Flags alone, or a *.conf file first: run redis-server with them. redis-server as root: give
# the working directory (/data) to the redis user, then run as that user. A umask of 0022 becomes
# 0077 (upstream: its issue 305). Anything else is exec'ed as it is.
set -e

case $1 in
    -* | *.conf) set -- redis-server "$@" ;;
esac

if [ "$1" = redis-server ] && [ "$(id -u)" = 0 ]; then
    find . \! -user redis -exec chown redis '{}' +
    exec setpriv --reuid=redis --regid=redis --init-groups "$0" "$@"
fi

if [ "$(umask)" = 0022 ]; then
    umask 0077
fi

exec "$@"
