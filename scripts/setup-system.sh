#!/usr/bin/env bash
# Installs the system packages the tests, the testbed and the benchmarks use, when missing:
#   docker-registry  the real Distribution registry (GitLab's container registry is built on it)
#   docker.io        a real dockerd for the Docker-engine push path
#   openssl          keys and certificates: the registry's token signer, the TLS tests' own CA
#   python3          writes and reads metadata.json exactly as gh_gitlab_sync.py's json module does
#   tinyproxy        a real HTTP proxy, for the tests that send everything through HTTPS_PROXY
#   jq               the README's walkthrough pipes --json output through it, and its test runs it
#   tmux             a real terminal for the tests that read what a person sees (bars, order)
#   prometheus       its promtool checks and unit-tests deploy/'s alert rules
# Extra packages can be named as arguments (the benchmarks add curl, unzip, skopeo, time).
set -euo pipefail

packages=(docker-registry docker.io openssl python3 tinyproxy jq tmux prometheus "$@")
declare -A binary_of=([docker-registry]=/usr/bin/docker-registry [docker.io]=/usr/sbin/dockerd [openssl]=/usr/bin/openssl [python3]=/usr/bin/python3 [tinyproxy]=/usr/bin/tinyproxy [jq]=/usr/bin/jq [tmux]=/usr/bin/tmux [prometheus]=/usr/bin/promtool [curl]=/usr/bin/curl [unzip]=/usr/bin/unzip [skopeo]=/usr/bin/skopeo [time]=/usr/bin/time)

missing=()
for pkg in "${packages[@]}"; do
  bin="${binary_of[$pkg]:-}"
  if [ -n "$bin" ] && [ -x "$bin" ]; then continue; fi
  # Another packaging of the same program (docker-ce's /usr/bin/dockerd on CI runners) will do.
  if [ -n "$bin" ] && command -v "$(basename "$bin")" >/dev/null 2>&1; then continue; fi
  if [ -z "$bin" ] && dpkg -s "$pkg" >/dev/null 2>&1; then continue; fi
  missing+=("$pkg")
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "setup-system: all present (${packages[*]})"
  exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
  echo "setup-system: missing ${missing[*]} and apt-get is not available; install them by hand" >&2
  exit 1
fi

sudo=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then sudo="sudo"; else
    echo "setup-system: missing ${missing[*]}; run this script as root (or install sudo)" >&2
    exit 1
  fi
fi

echo "setup-system: installing ${missing[*]}"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "setup-system: installed ${missing[*]}"
