# One torture cycle inside the guest (run by guest-init from the tools disk).
# Kernel command line: torture.cycle=N torture.seed=S torture.crash_ms=M torture.ckpt=SECS
#   torture.setup=1 (first cycle: make homes, projects, limits)
# 1. mount quotafs over /data/back (recovery runs), report recovery figures;
# 2. quotafs check: ledger vs full rescan, each drift line reported;
# 3. start the workload (TORTURE_CYCLE=N), then hard-reset the guest (sysrq b) crash_ms later,
#    after reporting the workload's old-tree counts.
say() { echo "<2>TORTURE $*" > /dev/kmsg; }
for a in $(cat /proc/cmdline); do
  case $a in torture.*=*) k=${a#torture.}; eval "T_${k%%=*}=${a#*=}" ;; esac
done
Q=/tools/quotafs
# The state dir: on the data disk, or on a disk of its own (torture --state-disk). setup.sh
# and the workload find it in TORTURE_STATE.
S=/data/state
[ -d /state/state ] && S=/state/state
export TORTURE_STATE=$S
export QUOTAFS_LOG=warn
# torture --daemon-env
. /tools/daemon.env
# FUSE over io_uring is off until this switch is on (torture --transport uring).
[ "${QUOTAFS_TRANSPORT:-}" = uring ] && echo Y > /sys/module/fuse/parameters/enable_uring
start=$(cut -d' ' -f1 /proc/uptime)
if [ -d /data2/back ]; then
  $Q mount --backing /data/back --state-dir $S --checkpoint-interval "${T_ckpt:-2}" \
    --route "/home/*/Dropbox=/data2/back" /mnt > /tmp/quotafs.log 2>&1 &
else
  $Q mount --backing /data/back --state-dir $S --checkpoint-interval "${T_ckpt:-2}" /mnt > /tmp/quotafs.log 2>&1 &
fi
n=0
until grep -q " /mnt fuse" /proc/mounts; do
  n=$((n + 1))
  if [ $n -gt 3000 ] || ! kill -0 $! 2>/dev/null; then
    say "fatal cycle=$T_cycle quotafs did not mount"
    while read -r l; do say "log $l"; done < /tmp/quotafs.log
    poweroff -f
  fi
  usleep 50000
done
$Q --state-dir $S status > /tmp/status.txt 2>&1
ms=$(sed -n 's/^last_recovery.millis: //p' /tmp/status.txt)
recs=$(sed -n 's/^last_recovery.records: //p' /tmp/status.txt)
touched=$(sed -n 's/^last_recovery.touched_inodes: //p' /tmp/status.txt)
listed=$(sed -n 's/^last_recovery.listed_dirs: //p' /tmp/status.txt)
torn=$(sed -n 's/^last_recovery.torn_bytes: //p' /tmp/status.txt)
scan=$(sed -n 's/^last_recovery.initial_scan: //p' /tmp/status.txt)
transport=$($Q --state-dir $S status --json 2>/dev/null | sed -n 's/.*"transport": *"\([a-z]*\)".*/\1/p')
say "recovery cycle=$T_cycle transport=${transport:-unknown} millis=$ms records=$recs touched=$touched listed_dirs=$listed torn_bytes=$torn initial_scan=$scan"
$Q --state-dir $S check > /tmp/check.txt 2>&1
rc=$?
inodes=$(sed -n 's/^scanned \([0-9]*\) inodes.*/\1/p' /tmp/check.txt)
say "check cycle=$T_cycle rc=$rc inodes=$inodes"
grep '^drift' /tmp/check.txt | while read -r l; do say "$l"; done
[ $rc -eq 0 ] || while read -r l; do say "checkout $l"; done < /tmp/check.txt

if [ "$T_setup" = 1 ]; then
  sh /tools/setup.sh > /tmp/setup.log 2>&1 || { say "fatal setup failed"; while read -r l; do say "setup $l"; done < /tmp/setup.log; poweroff -f; }
fi
say "workload cycle=$T_cycle crash_ms=$T_crash_ms"
TORTURE_CYCLE=$T_cycle WORKLOAD_SEED=$T_seed sh /tools/workload.sh > /dev/null 2>&1 &
usleep $((T_crash_ms * 1000))
# The workload's counts of operations on files made in earlier cycles, as they stand at the
# crash: /tmp/wl/NAME holds "ok failed" (workload.sh; a workload of your own may write none).
for f in /tmp/wl/*; do
  [ -f "$f" ] || continue
  read -r ok no < "$f"
  say "oldtree cycle=$T_cycle who=${f##*/} ok=${ok:-0} failed=${no:-0}"
done
say "crash cycle=$T_cycle"
echo b > /proc/sysrq-trigger
