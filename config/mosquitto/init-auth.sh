#!/bin/sh
# Writes Mosquitto's password file (hashed) and the ACL into the auth volume, owned by the broker and
# readable by no one else, from the passwords in .env. The mosquitto-init service of docker-compose.yml runs
# it before the broker starts, on every `docker compose up`, so editing .env is all it takes to change a
# password or add a device.
#
# Users: gateway (MQTT_GATEWAY_PASSWORD), device-sim (MQTT_SIM_PASSWORD), and one per device listed in
# MQTT_DEVICES as space-separated name:password pairs; a device's name is its user name and its id.
set -eu
set -f  # MQTT_DEVICES is split on spaces; a * in a password must stay a *

auth_dir="${AUTH_DIR:-/mosquitto/auth}"
acl_source="${ACL_SOURCE:-/mosquitto/config/acl}"

fail() {
    echo "mosquitto-init: $*" >&2
    exit 2
}

[ -n "${MQTT_GATEWAY_PASSWORD:-}" ] || fail "MQTT_GATEWAY_PASSWORD is not set (see .env.example)"
[ -n "${MQTT_SIM_PASSWORD:-}" ] || fail "MQTT_SIM_PASSWORD is not set (see .env.example)"

umask 077
mkdir -p "$auth_dir"
plain="$auth_dir/passwd.new"
: >"$plain"
trap 'rm -f "$plain" "$auth_dir/acl.new"' EXIT
names=" "

add_user() {
    # Names become a topic level through %u: no /, + or #, and no : (the password file's separator).
    case "$1" in
    "" | -* | *[!A-Za-z0-9_.@-]*) fail "user name '$1' must be letters, digits and _ . @ - only" ;;
    esac
    case "$names" in
    *" $1 "*) fail "user name '$1' is given twice" ;;
    esac
    [ -n "$2" ] || fail "user '$1' has an empty password"
    # mosquitto_passwd -U would cut a password at its first : (it never shows in the process list, unlike -b).
    case "$2" in
    *:*) fail "the password of '$1' must have no : in it" ;;
    esac
    names="$names$1 "
    printf '%s:%s\n' "$1" "$2" >>"$plain"
}

add_user gateway "$MQTT_GATEWAY_PASSWORD"
add_user device-sim "$MQTT_SIM_PASSWORD"
for entry in ${MQTT_DEVICES:-}; do
    name="${entry%%:*}"
    [ "$name" != "$entry" ] || fail "MQTT_DEVICES: '$entry' is not name:password"
    add_user "$name" "${entry#*:}"
done

mosquitto_passwd -U "$plain"  # hashes the passwords in place
cp "$acl_source" "$auth_dir/acl.new"
if [ "$(id -u)" = 0 ] && id mosquitto >/dev/null 2>&1; then
    chown mosquitto:mosquitto "$plain" "$auth_dir/acl.new"
fi
chmod 0600 "$plain" "$auth_dir/acl.new"
mv "$plain" "$auth_dir/passwd"
mv "$auth_dir/acl.new" "$auth_dir/acl"
echo "mosquitto-init: wrote $auth_dir/passwd and $auth_dir/acl for:$names"
