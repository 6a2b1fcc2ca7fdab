# tools/ensure_tools.sh -- sourced by the test scripts that need Debian packages (test_mcu.sh,
# bigendian/test_bigendian.sh): `ensure_tools TARGET PKG...` returns when the caller's have_tools
# succeeds; otherwise, as root with apt-get, it installs PKG... under /tmp/apt.lock (jobs of one
# make test share it), waiting up to 10 min for dpkg's lock, and fails TARGET if that or the
# tools then are missing; not root: says TARGET ran nothing and ends the script with status 0.
ensure_tools() {
  local target=$1
  shift
  have_tools && return 0
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "   apt-get install $* (under /tmp/apt.lock)"
    # DPkg::Lock::Timeout: an apt-get not under /tmp/apt.lock (another job's, unattended-upgrades)
    # holding dpkg's lock made this fail at once ("Could not get lock /var/lib/dpkg/lock-frontend")
    flock /tmp/apt.lock sh -c "(apt-get -o DPkg::Lock::Timeout=600 update -qq >/dev/null 2>&1 || true) && \
      DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends \
      $* >/dev/null" \
      || { echo "$target: FAILED: apt-get install $* failed"; exit 1; }
    have_tools || { echo "$target: FAILED: tools still missing after apt-get install"; exit 1; }
  else
    echo "$target: NOT RUN (nothing tested): needs $*; install them as root" \
         "(apt-get install $*) or run make $target as root."
    exit 0
  fi
}
