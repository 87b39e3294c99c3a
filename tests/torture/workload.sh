# The default torture workload: four tenants and root doing everything that changes usage,
# forever (the guest is reset under it). WORKLOAD_SEED makes each cycle differ.
# Operators can pass their own script with `torture --workload FILE`; it runs as root in /mnt.
#
# Old trees: most files on a file server were made long before the current mount, and the
# ledger treats an inode born before the current epoch differently from one born in it. So
# besides the new-file work below, every tenant and root work on files made in EARLIER cycles
# (the image persists across cycles): each tree root R (a home, proj/a, proj/c, a Dropbox;
# /mnt for root) holds R/old$u/*/f* (old: born in an earlier cycle) and R/new$u/d*/f* (made
# in this cycle; setup.sh makes the first ones). A cycle first moves the new$u/dK of earlier
# cycles to old$u/cC.dK (C: the cycle, TORTURE_CYCLE) and, when the old tree has run low, makes
# a new one in new$u a directory at a time between its other work; only old$u is appended to,
# truncated, chmod'd, chown'd (root), renamed over, hard-linked, moved across projects (files,
# and whole directories: EXDEV, busybox mv copies) and deleted (files, emptied directories,
# `rm -rf` of directories). /mnt/old starts as the harness's --files tree. Each tenant and root
# count their old-tree operations in /tmp/wl/NAME ("ok failed"); cycle.sh reports them just
# before the crash.
Q=/tools/quotafs
S=${TORTURE_STATE:-/data/state}
C=${TORTURE_CYCLE:-$RANDOM}
RANDOM=${WORKLOAD_SEED:-1}
mkdir -p /tmp/wl && chmod 1777 /tmp/wl
# Shared by tenants and root (inlined into each tenant's shell).
OLD='
# p := a random match of the glob $1 (1 if none).
pick() { set -- $1; [ -e "$1" ] || return 1; eval p=\${$((RANDOM % $# + 1))}; }
# Runs an old-tree operation and counts it.
old() { if "$@" 2>/dev/null; then ok=$((ok + 1)); else no=$((no + 1)); fi; echo "$ok $no" > /tmp/wl/$who; }
app() { echo "appended $i $RANDOM" >> "$1"; }
appdd() { dd if=/dev/zero of="$1" bs=1k count=$((RANDOM % 8 + 1)) oflag=append conv=notrunc 2>/dev/null; }
# Moves the new tree of tree root $1 (suffix $2) made by an earlier cycle into its old tree
# (empty old directories are removed as the work comes across them);
# when the old tree has fewer than twice $3 (files per dir) files, queues a new tree of three
# directories in $fill (made one directory at the end of each round of the main loop by
# `refill`, so that old-tree work starts at once).
age() {
  [ -d $1/old$2 ] || mkdir -p $1/old$2 2>/dev/null
  for n in $1/new$2/d*; do [ -d "$n" ] && mv $n $1/old$2/c$C.${n##*/} 2>/dev/null; done
  [ -d $1/new$2 ] && rmdir $1/new$2 2>/dev/null
  set -- "$1" "$2" "$3" $1/old$2/*/f*
  [ $# -lt $(($3 * 2 + 3)) ] && fill="$fill $1:$2:$3:0 $1:$2:$3:1 $1:$2:$3:2"
}
# Makes the first directory queued in $fill: ROOT:SUFFIX:FILES:K -> ROOT/newSUFFIX/dK/f0...
refill() {
  set -- $fill
  [ $# -gt 0 ] || return 0
  x=$1; shift; fill="$*"
  IFS=: read -r r_ s_ n_ k_ <<E_
$x
E_
  mkdir -p $r_/new$s_/d$k_ 2>/dev/null || return 0
  m_=0; while [ $m_ -lt $n_ ]; do echo "old $m_ $k_ $C" > $r_/new$s_/d$k_/f$m_ || break; m_=$((m_ + 1)); done
}
'
tenant() {
  u=$1; seed=$2
  /usr/bin/setpriv --reuid=$u --regid=$u --clear-groups sh -c "$OLD"'
    RANDOM='"$seed"'
    u='"$u"'
    C='"$C"'
    who=$u ok=0 no=0 s=0
    cd /mnt
    roots="home/$u proj/a proj/c"
    [ -d home/$u/Dropbox ] && roots="$roots home/$u/Dropbox"
    # uid 1003 has an inode limit of 400: a smaller old tree.
    per=24; [ $u = 1003 ] && per=8
    fill=
    for r in $roots; do age $r $u $per; done
    i=0
    while :; do
      i=$((i + 1))
      dirs="home/$u proj/a proj/b proj/c"
      [ -d home/$u/Dropbox ] && dirs="$dirs home/$u/Dropbox"
      for d in $dirs; do
        # Two operations on files or directories made in earlier cycles.
        for n in 1 2; do
          set -- $roots; eval r=\${$((RANDOM % $# + 1))}
          eval r2=\${$((RANDOM % $# + 1))}
          pick "$r/old$u/*" || continue
          od=$p
          pick "$od/f*" || { old rmdir $od; continue; }
          f=$p s=$((s + 1))
          case $((RANDOM % 24)) in
            0|1) old app $f ;;
            2) old appdd $f ;;
            3|4) old truncate -s $((RANDOM % 12000)) $f ;;
            5) old chmod $((RANDOM % 2 * 40 + 600)) $f ;;
            6) pick "$r/old$u/*/f*" && old mv -f $f $p ;;
            7) old ln $f $f.l$C.$s ;;
            8) pick "$r/old$u/*" && old ln $f $p/h$C.$s ;;
            9|10) old rm -f $f ;;
            11) old rm -rf $od ;;
            12) old mv $f proj/b/m$u.o$C.$s ;;
            13) pick "$r2/old$u/*" && old mv $f $p/v$C.$s ;;
            14) old mv $od $r2/old$u/m$C.$s ;;
            15) if [ $r = proj/a ]; then old mv $f proj/b/m$u.a$C.$s; else old mv $f $r2/old$u/; fi ;;
            # A whole directory at once, as a checkout or an rsync does.
            16|20) for x in $od/f*; do old app $x; done ;;
            17|21) old truncate -s $((RANDOM % 6000)) $od/f* ;;
            18|22) old chmod $((RANDOM % 2 * 40 + 600)) $od/f* ;;
            19|23) pick "$r2/old$u/*" && old mv $od/f* $p/ ;;
          esac
        done
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
      refill
    done'
}
for u in 1000 1001 1002 1003; do tenant $u $((RANDOM + u)) & done
# Root: ownership changes, project assignment and limits while tenants write.
eval "$OLD"
who=root ok=0 no=0
cd /mnt
# /mnt/old: the harness's --files tree (root's, made before the first mount), refilled like a
# tenant's.
fill=
age . "" 40
j=0
while :; do
  j=$((j + 1))
  # Old files: root's own, and the tenants' (chown moves their charge between users).
  i=$j
  for k in 1 2 3; do
    t=$((1000 + RANDOM % 4))
    case $((RANDOM % 14)) in
      0) pick "old/*" && pick "$p/f*" && old app $p ;;
      1) pick "old/*" && pick "$p/f*" && old truncate -s $((RANDOM % 6000)) $p ;;
      2) pick "old/*" && pick "$p/f*" && old chown $t:$t $p ;;
      3) pick "old/*" && pick "$p/f*" && old rm -f $p ;;
      4) pick "old/*" && [ $((RANDOM % 8)) = 0 ] && old rm -rf $p ;;
      5) pick "old/*" && pick "$p/f*" && old mv $p proj/c/root.o$j ;;
      6) pick "home/$t/old$t/*" && pick "$p/f*" && old chown $((1000 + RANDOM % 4)) $p ;;
      7) pick "proj/a/old$t/*" && old chown $((1000 + RANDOM % 4)) $p/f* ;;
      8) pick "proj/c/old$t/*" && pick "$p/f*" && old chmod 644 $p ;;
      9) pick "proj/a/old$t/*/f*" && old ln $p $p.r$C.$j ;;
      10) pick "proj/a/old$t/*/f*" && old mv $p proj/b/m$t.r$C.$j ;;
      11) rm -f proj/c/root.o$((RANDOM % (j + 1))) ;;
      # Many old files at once (a tenth of a 1,000-file directory of the --files tree).
      12) pick "old/*" && for x in $p/f$((RANDOM % 10))*; do old app $x; done ;;
      13) pick "old/*" && old truncate -s $((RANDOM % 3000)) $p/f$((RANDOM % 10))* ;;
    esac
  done
  case $((RANDOM % 6)) in
    0) f=$(ls -d proj/a/* 2>/dev/null | head -n $((RANDOM % 5 + 1)) | tail -n 1); [ -n "$f" ] && chown -R $((1000 + RANDOM % 4)) "$f" ;;
    1) mkdir -p proj/c/p$j && $Q --state-dir $S project assign --absorb --id $((20 + j % 5)) /mnt/proj/c/p$j ;;
    2) $Q --state-dir $S quota set --user 1002 --bytes-hard $((RANDOM % 8 + 2))M ;;
    3) $Q --state-dir $S project assign --absorb --id $((11 + RANDOM % 3)) /mnt/proj/c ;;
    4) dd if=/dev/zero of=proj/c/root.$((RANDOM % 3)) bs=64k count=$((RANDOM % 8 + 1)) 2>/dev/null ;;
    5) rm -rf proj/c/p$((RANDOM % (j + 1))) ;;
  esac
  refill
  usleep $((RANDOM % 200000))
done
