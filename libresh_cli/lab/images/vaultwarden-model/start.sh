#!/bin/sh
# /start.sh of libresh's Vaultwarden MODEL image (not Vaultwarden), written here after
# dani-garcia/vaultwarden docker/start.sh: the image's CMD, run as root. An optional UMASK, the
# optional settings scripts (sourced, so what they export reaches the server), then /vaultwarden
# in this shell's place with the arguments given. README.md: what is left out.
if [ -n "${UMASK:-}" ]; then
    umask "$UMASK"
fi

if [ -r /etc/vaultwarden.sh ]; then
    . /etc/vaultwarden.sh
fi

if [ -d /etc/vaultwarden.d ]; then
    for script in /etc/vaultwarden.d/*.sh; do
        if [ -r "$script" ]; then
            . "$script"
        fi
    done
fi

exec /vaultwarden "$@"
