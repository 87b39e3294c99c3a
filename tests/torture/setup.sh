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
# The layout is old by the time of the first power cut (with the state dir on a disk of its own,
# nothing else would make these directories durable before it).
sync
