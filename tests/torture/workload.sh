# The default torture workload: four tenants and root doing everything that changes usage,
# forever (the guest is reset under it). WORKLOAD_SEED makes each cycle differ.
# Operators can pass their own script with `torture --workload FILE`; it runs as root in /mnt.
Q=/tools/quotafs
S=${TORTURE_STATE:-/data/state}
RANDOM=${WORKLOAD_SEED:-1}
tenant() {
  u=$1; seed=$2
  /usr/bin/setpriv --reuid=$u --regid=$u --clear-groups sh -c '
    RANDOM='"$seed"'
    u='"$u"'
    cd /mnt
    i=0
    while :; do
      i=$((i + 1))
      dirs="home/$u proj/a proj/b proj/c"
      [ -d home/$u/Dropbox ] && dirs="$dirs home/$u/Dropbox home/$u/Dropbox"
      for d in $dirs; do
        case $((RANDOM % 14)) in
          0) dd if=/dev/zero of=$d/f$u.$((RANDOM % 8)) bs=4k count=$((RANDOM % 64 + 1)) 2>/dev/null ;;
          1) dd if=/dev/zero of=$d/f$u.$((RANDOM % 8)) bs=4k count=$((RANDOM % 16 + 1)) conv=fsync 2>/dev/null ;;
          2) dd if=/dev/zero of=$d/f$u.$((RANDOM % 8)) bs=1k count=$((RANDOM % 40 + 1)) oflag=append conv=notrunc 2>/dev/null ;;
          3) truncate -s $((RANDOM % 200000)) $d/f$u.$((RANDOM % 8)) 2>/dev/null ;;
          4) fallocate -l $((RANDOM % 300000 + 4096)) $d/g$u.$((RANDOM % 4)) 2>/dev/null ;;
          5) mkdir -p $d/t$u.$i && for k in 1 2 3 4 5 6 7 8 9 10 11 12; do echo $k$i > $d/t$u.$i/s$k; done ;;
          6) rm -rf $d/t$u.$((RANDOM % (i + 1))) 2>/dev/null ;;
          7) rm -f $d/f$u.$((RANDOM % 8)) 2>/dev/null ;;
          8) mv $d/f$u.$((RANDOM % 8)) proj/a/m$u.$i 2>/dev/null ;;
          9) mv $d/f$u.$((RANDOM % 8)) proj/b/m$u.$i 2>/dev/null ;;
          10) ln $d/f$u.$((RANDOM % 8)) $d/l$u.$i 2>/dev/null ;;
          11) mkdir -p $d/t$u.$i/x/y && dd if=/dev/zero of=$d/t$u.$i/x/y/z bs=4k count=3 2>/dev/null ;;
          12) rm -f $d/m$u.* $d/l$u.$((RANDOM % (i + 1))) 2>/dev/null ;;
          13) mv $d/t$u.$((RANDOM % (i + 1))) $d/r$u.$i 2>/dev/null ;;
        esac
      done
    done'
}
for u in 1000 1001 1002 1003; do tenant $u $((RANDOM + u)) & done
# Root: ownership changes, project assignment and limits while tenants write.
cd /mnt
j=0
while :; do
  j=$((j + 1))
  case $((RANDOM % 6)) in
    0) f=$(ls -d proj/a/* 2>/dev/null | head -n $((RANDOM % 5 + 1)) | tail -n 1); [ -n "$f" ] && chown -R $((1000 + RANDOM % 4)) "$f" ;;
    1) mkdir -p proj/c/p$j && $Q --state-dir $S project assign --absorb --id $((20 + j % 5)) /mnt/proj/c/p$j ;;
    2) $Q --state-dir $S quota set --user 1002 --bytes-hard $((RANDOM % 8 + 2))M ;;
    3) $Q --state-dir $S project assign --absorb --id $((11 + RANDOM % 3)) /mnt/proj/c ;;
    4) dd if=/dev/zero of=proj/c/root.$((RANDOM % 3)) bs=64k count=$((RANDOM % 8 + 1)) 2>/dev/null ;;
    5) rm -rf proj/c/p$((RANDOM % (j + 1))) ;;
  esac
  usleep $((RANDOM % 200000))
done
