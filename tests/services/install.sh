#!/usr/bin/env bash
# Installs the programs the test services run (dockerd, registry, sshd, busybox for base images, htpasswd, zip,
# Chromium for the dashboard's browser tests),
# with apt when run as root and something is missing; otherwise says what is missing and leaves it to the tests.
set -euo pipefail
declare -A package_of=(
  [dockerd]=docker.io [docker-registry]=docker-registry [sshd]=openssh-server
  [busybox]=busybox-static [htpasswd]=apache2-utils [zip]=zip [chromium]=chromium
)
missing=()
for program in "${!package_of[@]}"; do
  PATH="$PATH:/usr/sbin:/sbin" command -v "$program" >/dev/null 2>&1 || missing+=("${package_of[$program]}")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing test services: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${missing[@]}" >/dev/null
else
  echo "not installed (tests that need them skip, or fail under FORGEYARD_REQUIRE_SERVICES=1): ${missing[*]}" >&2
fi
