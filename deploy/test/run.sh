#!/usr/bin/env bash
# End-to-end test of deploy/ansible: lint, then for each Debian release (bookworm = 12,
# trixie = 13; NANOBOT_DEPLOY_SUITES picks, default both) converge a booted container twice
# (the second run must report changed=0), check the live host with pytest-testinfra and run
# the operational scenarios (upgrade, rollback, refusals). Prints each stage's time.
# Needs root. Caches (tool venv, rootfs tarballs) live in $NANOBOT_DEPLOY_CACHE
# (default /var/cache/nanobot-deploy), outside the repository. Exits non-zero on any failure.
# NANOBOT_DEPLOY_PYTEST_ARGS adds pytest arguments (e.g. "-k limits") to the live checks.
# NANOBOT_DEPLOY_SOURCE=DIR deploys another checkout (default: this one; either way a snapshot
# of it taken at the start); NANOBOT_DEPLOY_KEEP=1 leaves the
# container running after the test (for debugging).
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
HERE="$REPO/deploy/test"
CACHE=${NANOBOT_DEPLOY_CACHE:-/var/cache/nanobot-deploy}
VENV="$CACHE/venv"
SUITES=${NANOBOT_DEPLOY_SUITES:-bookworm trixie}
HOST_TOOLS=(mmdebstrap systemd-container slirp4netns zstd iproute2 util-linux python3-venv nftables)

# shellcheck source=deploy/test/container.sh
source "$HERE/container.sh"
# shellcheck source=deploy/test/fakes.sh
source "$HERE/fakes.sh"

TIMINGS=()
PHASE="" PHASE_START=0
phase() {
    phase_end
    PHASE=$1 PHASE_START=$(date +%s%N)
    printf '\n===== %s =====\n' "$PHASE"
}
phase_end() {
    if [[ -n "$PHASE" ]]; then
        TIMINGS+=("$(printf '%-26s %6s s' "$PHASE" "$(seconds_since "$PHASE_START")")")
    fi
    PHASE=""
}
seconds_since() { # nanosecond timestamp -> "12.3"
    local ds=$((($(date +%s%N) - $1) / 100000000))
    echo "$((ds / 10)).$((ds % 10))"
}
PASSED=0
ok() { # a harness check passed
    PASSED=$((PASSED + 1))
    echo "check passed: $*"
}
fail() {
    echo "FAIL: $*" >&2
    exit 1
}

WORK=""
cleanup() {
    local rc=$?
    phase_end
    set +e
    if ((rc != 0)) && [[ -n "${CT_PID:-}" ]]; then
        echo "--- container diagnostics ---"
        ct_exec systemctl --no-pager status nanobot.service 2>&1 | tail -n 15
        ct_exec journalctl --no-pager -o short-monotonic -n 60 -u nanobot.service 2>&1
        ct_exec journalctl --no-pager -o short-monotonic -n 20 -u nanobot-whatsapp-bridge.service 2>&1
    fi
    if [[ -n "${NANOBOT_DEPLOY_KEEP:-}" && -n "${CT_PID:-}" ]]; then
        echo "NANOBOT_DEPLOY_KEEP set: container left running (PID $CT_PID, root $CT_ROOT)"
        echo "stop it with: kill -s SIGRTMIN+4 $CT_PID; kill $SLIRP_PID; rm -rf $WORK"
    else
        ct_stop
        [[ -n "$WORK" ]] && rm -rf "$WORK"
    fi
    printf '\n===== timings =====\n'
    printf '%s\n' "${TIMINGS[@]}"
    printf '%-26s %6s s\n' total "$(seconds_since "$START")"
    # The closing line reads like a test runner's summary ("N passed, N failed").
    if ((rc == 0)); then
        echo "deploy-test: $PASSED passed, 0 failed"
    else
        echo "deploy-test: FAILED (exit $rc) after $PASSED passed checks"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

[[ $(id -u) -eq 0 ]] || fail "run as root (systemd-nspawn, nsenter and mmdebstrap need it)"
START=$(date +%s%N)

phase host-tools
missing=()
for pkg in "${HOST_TOOLS[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
    echo "installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

phase tool-venv
req_sum=$(sha256sum "$REPO/deploy/requirements.txt" | cut -d' ' -f1)
if [[ "$(cat "$VENV/.requirements.sha256" 2>/dev/null)" != "$req_sum" ]]; then
    rm -rf "$VENV"
    mkdir -p "$CACHE"
    /usr/bin/python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q --disable-pip-version-check -r "$REPO/deploy/requirements.txt"
    echo "$req_sum" >"$VENV/.requirements.sha256"
fi
"$VENV/bin/ansible" --version | sed -n 1p

# Ansible runs with a clean environment: the controller's PIP_*/SSL_* variables would
# otherwise leak into the container through the nsenter connection.
WORK=$(mktemp -d /var/tmp/nanobot-deploy-test.XXXXXX)
ansible_env=(env -i "PATH=$VENV/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    "HOME=${HOME:-/root}" LANG=C.UTF-8 "ANSIBLE_CONFIG=$REPO/deploy/ansible/ansible.cfg"
    ANSIBLE_NOCOLOR=1 ANSIBLE_FORCE_COLOR=0 "ANSIBLE_LOCAL_TEMP=$WORK/ansible-local"
    ANSIBLE_DEPRECATION_WARNINGS=0)
PLAYBOOK="$REPO/deploy/ansible/site.yml"
# Deploy a snapshot of the checkout: the release id must not change between the two converges
# because someone edits the tree meanwhile, and the wheel builds stay out of the repository.
SOURCE="$WORK/source"
snapshot_source() { # FROM TO
    mkdir -p "$2"
    (cd "$1" && tar --exclude=__pycache__ --exclude=node_modules --exclude='*.egg-info' \
        -cf - pyproject.toml README.md nanobot systemd) | tar -xf - -C "$2"
}
snapshot_source "${NANOBOT_DEPLOY_SOURCE:-$REPO}" "$SOURCE"

phase static-checks
(cd "$REPO/deploy/ansible" &&
    "${ansible_env[@]}" ansible-playbook -i inventory.example.ini site.yml --syntax-check) ||
    fail "ansible-playbook --syntax-check failed"
ok "syntax check"
(cd "$REPO/deploy/ansible" &&
    "${ansible_env[@]}" ansible-lint --offline --profile production --nocolor) ||
    fail "ansible-lint (production profile) found problems"
ok "ansible-lint --profile production"

host_firewall() {
    if command -v nft >/dev/null; then nft list ruleset 2>&1; fi
    if command -v iptables-save >/dev/null; then iptables-save 2>&1 | grep -v '^#'; fi
    cat /proc/net/ip_tables_names /proc/net/ip6_tables_names 2>/dev/null || true
}

run_suite() {
    SUITE=$1
    ROOTFS_TAR="$CACHE/rootfs-$SUITE-v1.tar.zst"
    CT_NAME="nanobot-$SUITE"
    CT_ROOT="$WORK/$SUITE/root"
    CT_LOG="$WORK/$SUITE/nspawn.log"
    LOGS="$WORK/$SUITE"
    mkdir -p "$LOGS"
    phase "$SUITE/rootfs"
    mkdir -p "$CACHE"
    ct_build_rootfs

    host_firewall >"$LOGS/host-firewall.before"

    phase "$SUITE/boot"
    ct_boot

    printf '[nanobot]\n%s ansible_connection=community.docker.nsenter ansible_nsenter_pid=%s %s\n' \
        "$CT_NAME" "$CT_PID" "ansible_python_interpreter=/usr/bin/python3" >"$LOGS/inventory.ini"
    converge() {
        "${ansible_env[@]}" ansible-playbook -i "$LOGS/inventory.ini" "$PLAYBOOK" \
            -e "@$HERE/vars.yml" -e "nanobot_source_dir=$SOURCE" "$@"
    }
    recap() { grep -E "^$CT_NAME +: ok=" "$1" || fail "no play recap in $1"; }

    phase "$SUITE/check-mode"
    # README offers --check --diff as the dry run: it must get through a fresh host and
    # change nothing there.
    converge --check --diff >"$LOGS/check.log" 2>&1 || {
        tail -n 40 "$LOGS/check.log"
        fail "--check --diff failed on a fresh host"
    }
    ct_exec sh -c '! id nanobot >/dev/null 2>&1 && [ ! -e /opt/nanobot ] && [ ! -e /var/lib/nanobot ] &&
        [ ! -e /etc/systemd/system/nanobot.service ] && ! command -v ufw >/dev/null' ||
        fail "--check --diff changed the host"
    ok "--check --diff on a fresh host: $(recap "$LOGS/check.log" | grep -o 'changed=[0-9]*') predicted, nothing changed"

    phase "$SUITE/fakes"
    # Telegram's Bot API and a mail host (Dovecot, SMTP) on the container's 127.0.0.1: the
    # channels of vars.yml connect to them from the first start on.
    fakes_install_mail_packages || fail "installing Dovecot and aiosmtpd in the container failed"
    fakes_start || fail "the Telegram or mail fake did not start"
    ok "fake Telegram Bot API and mail host (Dovecot $(ct_exec dovecot --version | cut -d' ' -f1)) running"

    # The WhatsApp bridge must never contact WhatsApp: the first converge starts it with
    # the fake WhatsApp of its own tests (a drop-in of this test, not of the role).
    install -D -m 0644 "$HERE/whatsapp-fake.conf" \
        "$CT_ROOT/etc/systemd/system/nanobot-whatsapp-bridge.service.d/50-deploy-test-fake.conf"

    phase "$SUITE/converge-1"
    converge 2>&1 | tee "$LOGS/converge-1.log" || fail "first converge failed"
    recap "$LOGS/converge-1.log" | grep -q "failed=0" || fail "first converge reported failures"
    ok "first converge"

    phase "$SUITE/converge-2"
    converge 2>&1 | tee "$LOGS/converge-2.log" || fail "second converge failed"
    line=$(recap "$LOGS/converge-2.log")
    echo "second run: $line"
    if ! grep -q " changed=0 " <<<"$line" || ! grep -q " failed=0 " <<<"$line"; then
        grep -E -B2 '^changed:' "$LOGS/converge-2.log" || true
        fail "second converge is not idempotent: $line"
    fi
    ok "second converge changed nothing"

    phase "$SUITE/refusals"
    expect_refusal() {
        local what=$1 pattern=$2
        shift 2
        if converge --tags nanobot_assert "$@" >"$LOGS/refusal.log" 2>&1; then
            fail "the role accepted $what"
        fi
        grep -q -- "$pattern" "$LOGS/refusal.log" || {
            cat "$LOGS/refusal.log"
            fail "refusing $what did not say '$pattern'"
        }
        ok "refused $what"
    }
    expect_refusal "an open Telegram channel" "nanobot_telegram_allow_from is empty" \
        -e '{"nanobot_telegram_enabled": true, "nanobot_telegram_token": "x", "nanobot_telegram_allow_from": []}'
    expect_refusal "e-mail without sender authentication" "nanobot_email_trusted_authserv_ids is empty" \
        -e '{"nanobot_email_trusted_authserv_ids": []}'
    expect_refusal "an open WhatsApp channel" "nanobot_whatsapp_allow_from is empty" \
        -e '{"nanobot_whatsapp_enabled": true, "nanobot_whatsapp_bridge_token": "x", "nanobot_whatsapp_allow_from": []}'
    expect_refusal "nanobot_user=root" "must not be root" -e nanobot_user=root
    # A host whose firewall nftables.service manages (a stand-in unit, enabled like the real one).
    ct_exec sh -c 'printf "[Service]\nType=oneshot\nRemainAfterExit=yes\nExecStart=/bin/true\n[Install]\nWantedBy=multi-user.target\n" \
        >/etc/systemd/system/nftables.service && systemctl enable --quiet nftables.service'
    expect_refusal "to fight nftables.service" "nftables.service is enabled or running"
    ct_exec sh -c 'systemctl disable --quiet nftables.service && rm /etc/systemd/system/nftables.service &&
        systemctl daemon-reload'

    # Two inventory hosts (here: two names for the same container) with one Telegram bot.
    sed -n 2p "$LOGS/inventory.ini" | sed "s/^$CT_NAME /$CT_NAME-twin /" |
        cat "$LOGS/inventory.ini" - >"$LOGS/inventory-two.ini"
    if "${ansible_env[@]}" ansible-playbook -i "$LOGS/inventory-two.ini" "$PLAYBOOK" --tags nanobot_assert \
        -e "@$HERE/vars.yml" -e "nanobot_source_dir=$SOURCE" \
        -e '{"nanobot_telegram_enabled": true, "nanobot_telegram_token": "1:x", "nanobot_telegram_allow_from": ["1"]}' \
        >"$LOGS/refusal-two.log" 2>&1; then
        fail "the role let two hosts poll one Telegram bot"
    fi
    grep -q "would poll the same" "$LOGS/refusal-two.log" || { tail -n 20 "$LOGS/refusal-two.log"; fail "no reason given"; }
    ok "refused two hosts polling one Telegram bot"

    phase "$SUITE/firewall-change"
    # Moving SSH to another port deletes the old rule (ufw itself only ever adds); turning
    # e-mail off deletes its IMAPS and submission rules (993, 587 out).
    mail_rules() { grep -Ec '^(993|587)/tcp( \(v6\))? +ALLOW OUT' <<<"$1" || true; }
    (($(mail_rules "$(ct_exec ufw status)") == 4)) ||
        { ct_exec ufw status; fail "no IMAPS/submission rules (IPv4 and IPv6) while e-mail is on"; }
    converge --tags nanobot_firewall -e nanobot_firewall_ssh_port=2222 -e nanobot_email_enabled=false \
        >"$LOGS/fw.log" 2>&1 ||
        { tail -n 30 "$LOGS/fw.log"; fail "firewall converge with another SSH port failed"; }
    rules=$(ct_exec ufw status)
    grep -Eq '^2222/tcp +LIMIT' <<<"$rules" && ! grep -Eq '^22/tcp ' <<<"$rules" ||
        { echo "$rules"; fail "the old SSH rule was not replaced"; }
    (($(mail_rules "$rules") == 0)) || { echo "$rules"; fail "the mail rules outlived e-mail"; }
    converge --tags nanobot_firewall >"$LOGS/fw-back.log" 2>&1 || fail "firewall converge back failed"
    rules=$(ct_exec ufw status)
    grep -Eq '^22/tcp +LIMIT' <<<"$rules" && ! grep -Eq '^2222/tcp' <<<"$rules" ||
        { echo "$rules"; fail "the SSH rule did not move back"; }
    (($(mail_rules "$rules") == 4)) || { echo "$rules"; fail "the mail rules did not come back"; }
    ok "an obsolete firewall rule is deleted when a variable changes (SSH 22 -> 2222 -> 22," \
        "e-mail on -> off -> on: 993 and 587 out)"

    phase "$SUITE/verify"
    NANOBOT_DEPLOY_PID=$CT_PID NANOBOT_DEPLOY_ROOT=$CT_ROOT NANOBOT_DEPLOY_VARS="$HERE/vars.yml" \
        "$VENV/bin/python" -m pytest -p no:cacheprovider -q -rA -s "$HERE/tests" \
        ${NANOBOT_DEPLOY_PYTEST_ARGS:-} | tee "$LOGS/pytest.log" ||
        fail "live checks failed"
    live=$(grep -Eo '^[0-9]+ passed' "$LOGS/pytest.log" | cut -d' ' -f1)
    PASSED=$((PASSED + ${live:-0}))

    phase "$SUITE/upgrade-rollback"
    release() { ct_exec readlink /opt/nanobot/venv; }
    main_pid() { ct_exec systemctl show -p MainPID --value nanobot.service; }
    healthy() {
        ct_exec python3 -c 'import urllib.request as u; u.urlopen("http://127.0.0.1:18790/healthz", timeout=10)' ||
            fail "/healthz does not answer after $1"
    }
    old_release=$(release) old_pid=$(main_pid)
    next_src="$LOGS/source-next"
    snapshot_source "$SOURCE" "$next_src"
    echo "# upgrade test $(date +%s)" >>"$next_src/nanobot/__init__.py"
    converge --tags nanobot_app -e "nanobot_source_dir=$next_src" >"$LOGS/upgrade.log" 2>&1 ||
        { cat "$LOGS/upgrade.log"; fail "upgrade converge failed"; }
    new_release=$(release)
    [[ "$new_release" != "$old_release" ]] || fail "upgrade did not switch /opt/nanobot/venv"
    [[ "$(main_pid)" != "$old_pid" ]] || fail "upgrade did not restart nanobot"
    healthy upgrade
    ok "upgraded ${old_release#/opt/nanobot/releases/} -> ${new_release#/opt/nanobot/releases/}"
    old_id=$(basename "$(dirname "$old_release")")
    converge --tags nanobot_app -e "nanobot_release=$old_id" >"$LOGS/rollback.log" 2>&1 ||
        { cat "$LOGS/rollback.log"; fail "rollback converge failed"; }
    [[ "$(release)" == "$old_release" ]] || fail "rollback did not switch back to $old_id"
    healthy rollback
    ok "rolled back to $old_id"

    phase "$SUITE/upgrade-fails"
    # A release that passes nanobot doctor but whose gateway exits with status 2 (a config
    # error) at start: the role must switch back by itself, and systemd must not loop on it.
    bad_src="$LOGS/source-bad"
    snapshot_source "$SOURCE" "$bad_src"
    printf '%s\n' 'import sys as _sys' \
        'if _sys.argv[1:2] == ["gateway"]:  # deploy test: a release that never gets healthy' \
        '    raise SystemExit(2)' >>"$bad_src/nanobot/__init__.py"
    cursor=$(ct_exec journalctl -u nanobot.service -n 0 --show-cursor | sed -n 's/^-- cursor: //p')
    good_release=$(release)
    if converge --tags nanobot_app -e "nanobot_source_dir=$bad_src" >"$LOGS/upgrade-bad.log" 2>&1; then
        fail "the role accepted a release that fails its health check"
    fi
    tr -s ' \n' ' ' <"$LOGS/upgrade-bad.log" |
        grep -q "Rolled back to $(basename "$(dirname "$good_release")"), which answers /healthz" || {
        tail -n 30 "$LOGS/upgrade-bad.log"
        fail "the failed upgrade did not report its rollback"
    }
    [[ "$(release)" == "$good_release" ]] || fail "the failed upgrade left $(release) in place"
    healthy "the automatic rollback"
    loops=$(ct_exec journalctl -u nanobot.service --after-cursor="$cursor" -o cat |
        grep -c "Scheduled restart job" || true)
    ((loops == 0)) || fail "systemd restarted the exit-status-2 release $loops times"
    ok "a release failing its health check was rolled back automatically (no restart loop)"

    phase "$SUITE/backup-restore"
    # Backup while the gateway runs -> wipe -> restore: the audit trail must still verify and
    # runtime secrets (NANOBOT_HOME/credentials) only ever leave the host encrypted.
    home=/var/lib/nanobot/.nanobot
    ct_exec sh -c "install -d -o nanobot -g nanobot -m 0700 $home/credentials $home/whatsapp-auth &&
        echo backup-secret-7f3a91 >$home/credentials/test-secret && chown nanobot: $home/credentials/test-secret &&
        echo wa-session-5b2c >$home/whatsapp-auth/creds.json && chown nanobot: $home/whatsapp-auth/creds.json &&
        echo keep-me >$home/workspace/backup-marker.txt && chown nanobot: $home/workspace/backup-marker.txt"
    audit_before=$(ct_exec nanobotctl audit verify 2>&1; echo "rc=$?")
    sessions_before=$(ct_exec sh -c "ls $home/sessions | wc -l")
    ct_exec nanobotctl backup --output /root/plain.tar.gz || fail "nanobotctl backup failed"
    [[ "$(ct_exec stat -c %a /root/plain.tar.gz)" == 600 ]] || fail "the backup is not 0600"
    # (grep without -q: an early exit would kill tar with SIGPIPE and fail the pipeline)
    ct_exec tar -tzf /root/plain.tar.gz | grep '^credentials' >/dev/null && fail "credentials in a plain backup"
    ct_exec sh -c 'zcat /root/plain.tar.gz | grep -c -e backup-secret-7f3a91 -e wa-session-5b2c >/dev/null' &&
        fail "a secret in the backup"
    ct_exec sh -c "systemctl stop nanobot.service && rm -rf $home/sessions $home/state $home/logs $home/config.json $home/workspace/*"
    ct_exec nanobotctl restore --start /root/plain.tar.gz || fail "nanobotctl restore failed"
    healthy "the restore"
    [[ "$(ct_exec cat $home/workspace/backup-marker.txt)" == keep-me ]] || fail "workspace not restored"
    [[ "$(ct_exec sh -c "ls $home/sessions | wc -l")" == "$sessions_before" ]] || fail "sessions not restored"
    audit_after=$(ct_exec nanobotctl audit verify 2>&1; echo "rc=$?")
    [[ "${audit_after##*rc=}" == "${audit_before##*rc=}" ]] ||
        fail "the audit trail verified differently after the restore: $audit_before // $audit_after"
    ok "backup while running -> wipe -> restore (audit verify: rc=${audit_after##*rc=} before and after)"
    ct_exec sh -c 'age-keygen -o /root/age.key 2>/dev/null'
    recipient=$(ct_exec age-keygen -y /root/age.key)
    ct_exec nanobotctl backup --credentials-to "$recipient" --output /root/creds.tar.gz ||
        fail "backup with encrypted credentials failed"
    ct_exec sh -c 'zcat /root/creds.tar.gz | grep -c -e backup-secret-7f3a91 -e wa-session-5b2c >/dev/null' &&
        fail "the credentials are not encrypted"
    ct_exec tar -tzf /root/creds.tar.gz | grep -x credentials.tar.age >/dev/null || fail "no encrypted credentials"
    ct_exec rm -rf "$home/credentials" "$home/whatsapp-auth"
    ct_exec nanobotctl restore --credentials-identity /root/age.key /root/creds.tar.gz ||
        fail "restore with credentials failed"
    [[ "$(ct_exec cat $home/credentials/test-secret)" == backup-secret-7f3a91 &&
        "$(ct_exec cat $home/whatsapp-auth/creds.json)" == wa-session-5b2c ]] ||
        fail "the encrypted credentials did not come back"
    healthy "the restore with credentials"
    ok "credentials only with --credentials-to, age-encrypted, and restored with the identity"

    phase "$SUITE/uninstall"
    converge -e nanobot_state=absent >"$LOGS/uninstall.log" 2>&1 || { tail -n 30 "$LOGS/uninstall.log"; fail "uninstall failed"; }
    ct_exec sh -c '! systemctl cat nanobot.service >/dev/null 2>&1 && [ ! -e /opt/nanobot ] &&
        [ ! -e /etc/nanobot ] && [ ! -e /usr/local/sbin/nanobotctl ] && ! pgrep -u nanobot >/dev/null' ||
        fail "nanobot_state=absent left the service or its code behind"
    ct_exec sh -c '[ -s /var/lib/nanobot/.nanobot/config.json ] && [ -s /var/lib/nanobot-workspace.img ] &&
        ufw status | grep -q "Status: active"' || fail "uninstall removed the data or the firewall"
    ok "nanobot_state=absent removed the service and code, kept the data and the firewall"

    phase "$SUITE/host-firewall"
    [[ "$(readlink "/proc/$CT_PID/ns/net")" != "$(readlink /proc/self/ns/net)" ]] ||
        fail "the container shares the host's network namespace"
    host_firewall >"$LOGS/host-firewall.after"
    diff -u "$LOGS/host-firewall.before" "$LOGS/host-firewall.after" ||
        fail "the host's firewall changed during the test"
    ok "host firewall unchanged ($(wc -l <"$LOGS/host-firewall.after") lines of ruleset compared);" \
        "the container's ufw rules live in its own network namespace"

    phase "$SUITE/stop"
    ct_stop
}

for suite in $SUITES; do
    case "$suite" in
    bookworm | trixie) run_suite "$suite" ;;
    *) fail "unknown suite '$suite' in NANOBOT_DEPLOY_SUITES (bookworm, trixie)" ;;
    esac
done
phase_end
