# shellcheck shell=bash
# The far side of the network for deploy/test/run.sh, inside the booted container on its
# 127.0.0.1, started before the first converge (the channels connect as soon as the gateway
# starts): the project's fake Telegram Bot API (fake_telegram.py) and a real mail host
# (mail_host.py: Debian's Dovecot and aiosmtpd). Source this file after container.sh.
#
# Globals used: REPO, HERE, CACHE, VENV, SUITE, CT_ROOT (and ct_exec from container.sh).

FAKES_DIR=/usr/local/lib/nanobot-test
MAIL_PACKAGES="dovecot-imapd dovecot-lmtpd python3-aiosmtpd openssl"
TELEGRAM_PORT=18798 TELEGRAM_CONTROL_PORT=18797 MAIL_CONTROL_PORT=18796

# Value of a test variable, hex-encoded (secrets never appear in a command line in clear).
_test_var_hex() {
    "$VENV/bin/python" -c 'import sys, yaml; print(str(yaml.safe_load(open(sys.argv[1]))[sys.argv[2]]).encode().hex())' \
        "$HERE/vars.yml" "$1"
}

# Install Dovecot and aiosmtpd from Debian. The .debs are cached in $CACHE per package list and
# rootfs tarball (a rebuilt rootfs must not get older libraries back from the cache), so later
# runs install them with dpkg without the network; the packaged dovecot.service is not started
# (policy-rc.d): mail_host.py runs its own instance.
fakes_install_mail_packages() {
    local key debs
    key=$(printf '%s %s' "$MAIL_PACKAGES" "$(stat -c %Y-%s "$ROOTFS_TAR")" | sha256sum | cut -c1-12)
    debs="$CACHE/debs-$SUITE-$key"
    printf '#!/bin/sh\nexit 101\n' >"$CT_ROOT/usr/sbin/policy-rc.d"
    chmod 0755 "$CT_ROOT/usr/sbin/policy-rc.d"
    mkdir -p "$CT_ROOT/var/cache/nanobot-test-debs"
    if compgen -G "$debs/*.deb" >/dev/null; then
        cp "$debs"/*.deb "$CT_ROOT/var/cache/nanobot-test-debs/"
        ct_exec sh -c 'DEBIAN_FRONTEND=noninteractive dpkg -i /var/cache/nanobot-test-debs/*.deb \
            >/var/log/nanobot-test-install.log 2>&1' || { tail -n 30 "$CT_ROOT/var/log/nanobot-test-install.log"; return 1; }
    else
        # shellcheck disable=SC2086 # a list of package names
        ct_exec sh -c "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
            --no-install-recommends -o Dir::Cache::archives=/var/cache/nanobot-test-debs \
            $MAIL_PACKAGES >/var/log/nanobot-test-install.log 2>&1" ||
            { tail -n 30 "$CT_ROOT/var/log/nanobot-test-install.log"; return 1; }
        local partial="$CACHE/.partial-debs-$SUITE-$$"
        mkdir -p "$partial"
        cp "$CT_ROOT"/var/cache/nanobot-test-debs/*.deb "$partial/"
        rm -rf "$CACHE/debs-$SUITE-"* && mv "$partial" "$debs"
    fi
    rm -rf "$CT_ROOT/var/cache/nanobot-test-debs" "$CT_ROOT/usr/sbin/policy-rc.d"
    ct_exec sh -c 'command -v dovecot >/dev/null && python3 -c "import aiosmtpd"'
}

# Copy the fakes (and the project's own test doubles they wrap) in and start them as
# transient units; wait until each answers on its control port.
fakes_start() {
    install -d -m 0755 "$CT_ROOT$FAKES_DIR"
    install -m 0644 "$HERE/fake_telegram.py" "$HERE/mail_host.py" "$HERE/control.py" \
        "$REPO/tests/fakes/telegram_server.py" "$REPO/tests/mailservers.py" "$CT_ROOT$FAKES_DIR/"
    ct_exec systemd-run --unit=nanobot-test-telegram --collect --property=DynamicUser=yes \
        /usr/bin/python3 "$FAKES_DIR/fake_telegram.py" --port "$TELEGRAM_PORT" \
        --control-port "$TELEGRAM_CONTROL_PORT" --token-hex "$(_test_var_hex nanobot_telegram_token)"
    # Root: Dovecot starts as root and drops to its own users, like the packaged service.
    ct_exec systemd-run --unit=nanobot-test-mail --collect --working-directory=$FAKES_DIR \
        /usr/bin/python3 "$FAKES_DIR/mail_host.py" --control-port "$MAIL_CONTROL_PORT" \
        --imap-password-hex "$(_test_var_hex nanobot_email_imap_password)" \
        --smtp-password-hex "$(_test_var_hex nanobot_email_smtp_password)"
    local port unit _
    for unit in telegram:$TELEGRAM_CONTROL_PORT mail:$MAIL_CONTROL_PORT; do
        port=${unit#*:}
        for _ in $(seq 1 150); do
            ct_exec python3 -c "import socket; socket.create_connection(('127.0.0.1', $port), 1).close()" \
                2>/dev/null && continue 2
            sleep 0.2
        done
        ct_exec journalctl --no-pager -u "nanobot-test-${unit%%:*}" | tail -n 30
        echo "the ${unit%%:*} fake did not start" >&2
        return 1
    done
}
