#!/usr/bin/env bash
# Install the Debian 12 packages the test suite needs, skipping any already present:
#   chromium           headless browser for the end-to-end tests
#   postgresql         server binaries for the throwaway test databases (tests/support/pgserver.py)
#   fonts-dejavu-core  chromium renders screenshots with blank boxes if there is no font at all
#   systemd            systemd-analyze, which checks deploy/stemme.service (tests/deploy)
#   caddy              `caddy adapt`, which checks deploy/Caddyfile (tests/deploy)
# Idempotent; `make test` runs it. Works as root, or as a user with sudo.
set -euo pipefail

have() {
    case $1 in
        chromium) [[ -x /usr/bin/chromium ]] ;;
        postgresql)
            # Debian keeps the server binaries in a versioned dir that is not on PATH.
            local initdb
            for initdb in /usr/lib/postgresql/*/bin/initdb; do
                [[ -x $initdb ]] && return 0
            done
            return 1
            ;;
        fonts-dejavu-core)
            # Any font will do, so do not insist on DejaVu if fontconfig already sees one.
            if command -v fc-list >/dev/null && [[ -n "$(fc-list 2>/dev/null || true)" ]]; then
                return 0
            fi
            # dpkg -s also succeeds for removed-but-not-purged packages; check the status.
            [[ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null || true)" == *"ok installed" ]]
            ;;
        systemd) [[ -x /usr/bin/systemd-analyze ]] ;;
        caddy) command -v caddy >/dev/null ;;
        *) return 1 ;;
    esac
}

packages=(chromium postgresql fonts-dejavu-core systemd caddy)
missing=()
for pkg in "${packages[@]}"; do
    if have "$pkg"; then
        echo "$pkg: present"
    else
        missing+=("$pkg")
    fi
done
((${#missing[@]} == 0)) && exit 0

if [[ $(id -u) -eq 0 ]]; then
    sudo=()
elif command -v sudo >/dev/null; then
    sudo=(sudo)
else
    for pkg in "${missing[@]}"; do echo "$pkg: missing"; done
    echo "Not root and no sudo. As root, run:" >&2
    echo "  apt-get update && apt-get install -y --no-install-recommends ${missing[*]}" >&2
    exit 1
fi

for pkg in "${missing[@]}"; do echo "$pkg: installing"; done
# Another apt/dpkg run (unattended-upgrades, a parallel provisioning step) may hold the lock;
# wait for it instead of failing straight away.
apt=("${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -q -o DPkg::Lock::Timeout=300)
"${apt[@]}" update >/dev/null
"${apt[@]}" install -y --no-install-recommends "${missing[@]}" >/dev/null

for pkg in "${missing[@]}"; do
    if ! have "$pkg"; then
        echo "$pkg: still missing after apt-get install" >&2
        exit 1
    fi
done
