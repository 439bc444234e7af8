# Shared by the setup scripts; source it.

say() { printf '%s: %s\n' "$(basename "$0" .sh)" "$*" >&2; }

# need COMMAND PACKAGE: installs Debian's PACKAGE when COMMAND is missing
# (as root), or says what to install and fails. NO_RECOMMENDS=1 leaves out
# the package's recommended extras.
need() {
  command -v "$1" >/dev/null 2>&1 && return 0
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    say "$1 is missing; installing Debian's $2 package"
    export DEBIAN_FRONTEND=noninteractive
    if [ -z "${APT_UPDATED:-}" ]; then
      apt-get update -qq >&2
      APT_UPDATED=1
    fi
    if [ -n "${NO_RECOMMENDS:-}" ]; then
      apt-get install -y -qq --no-install-recommends "$2" >&2
    else
      apt-get install -y -qq "$2" >&2
    fi
  else
    say "$1 is not installed. Install it (Debian/Ubuntu: sudo apt-get install $2) and run this again."
    exit 1
  fi
}
