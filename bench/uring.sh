# Sourced by bench/run and bench/storm: the kernel's FUSE-over-io_uring switch.
#
# uring_on turns /sys/module/fuse/parameters/enable_uring on (Y) when it is off, and remembers
# the value it found; uring_restore (from the caller's EXIT trap) puts back a value other than N.
# It never writes N: other test runs on the same machine may need the switch on while they run,
# so a switch this script turned on is left on, and said so.
URING_SWITCH=/sys/module/fuse/parameters/enable_uring
URING_WAS=""
uring_on() {
  [ -e "$URING_SWITCH" ] || {
    echo "this kernel has no FUSE over io_uring ($URING_SWITCH is missing; Linux 6.14+ with CONFIG_FUSE_IO_URING)" >&2
    exit 2
  }
  URING_WAS=$(cat "$URING_SWITCH")
  if [ "$URING_WAS" != Y ]; then
    echo Y > "$URING_SWITCH" || { echo "cannot turn on $URING_SWITCH (run as root)" >&2; exit 2; }
    echo "turned on $URING_SWITCH for the io_uring layers (it was $URING_WAS)" >&2
  fi
}
uring_restore() {
  [ -n "$URING_WAS" ] || return 0
  [ "$(cat "$URING_SWITCH")" = "$URING_WAS" ] && return 0
  if [ "$URING_WAS" = N ]; then
    echo "left $URING_SWITCH at Y (it was N; turning it off could break other FUSE-over-io_uring users)" >&2
  else
    echo "$URING_WAS" > "$URING_SWITCH"
  fi
}
