# First cycle only: the multi-tenant layout the workload uses. Homes of uids 1000-1003; two
# project trees (shared by every tenant, as when all tenants share one uid); limits that the
# workload runs into, so refusals happen around crashes too.
set -e
Q=/tools/quotafs
S=${TORTURE_STATE:-/data/state}
cd /mnt
for u in 1000 1001 1002 1003; do mkdir -p home/$u; chown $u:$u home/$u; done
# With a routed disk, each home's Dropbox lives there.
if [ -d /data2/back ]; then
  for u in 1000 1001 1002 1003; do mkdir -p home/$u/Dropbox; chown $u:$u home/$u/Dropbox; done
fi
mkdir -p proj/a proj/b proj/c
chmod 1777 proj/a proj/b proj/c
$Q --state-dir $S project assign --id 11 /mnt/proj/a
$Q --state-dir $S project assign --id 12 /mnt/proj/b
$Q --state-dir $S quota set --user 1003 --bytes-hard 3M --inodes-hard 400
$Q --state-dir $S quota set --project 12 --bytes-hard 4M
# The first old trees of the default workload (workload.sh, "Old trees"): new<uid>/d0..d2 in
# each tenant's tree roots (made by the tenant) and /mnt/new for root. Cycle 1's workload moves
# them into old<uid>, so from cycle 2 on they are files made cycles earlier, however early cycle
# 1's power cut comes.
TREE='tree() { for k in 0 1 2; do mkdir -p $1/d$k; n=0; while [ $n -lt $2 ]; do echo "old $n $k 0" > $1/d$k/f$n; n=$((n + 1)); done; done; }'
for u in 1000 1001 1002 1003; do
  roots="home/$u proj/a proj/c"
  [ -d home/$u/Dropbox ] && roots="$roots home/$u/Dropbox"
  per=24; [ $u = 1003 ] && per=8
  /usr/bin/setpriv --reuid=$u --regid=$u --clear-groups sh -c "$TREE"'
    set -e
    for r in '"$roots"'; do tree $r/new'"$u $per"'; done'
done
sh -c "$TREE"'
  set -e
  tree new 40'
# The layout is old by the time of the first power cut (with the state dir on a disk of its own,
# nothing else would make these directories durable before it).
sync
