#!/bin/sh
# Pacemaker with pcs: the same resources, order and constraints as rwxnfs.crm (read its
# comments for why each one is there). Run once, on one node of the cluster.
set -eu

pcs resource create p_drbd_rwxnfs ocf:linbit:drbd drbd_resource=rwxnfs \
    op monitor interval=29s role=Promoted \
    op monitor interval=31s role=Unpromoted \
    promotable promoted-max=1 promoted-node-max=1 clone-max=2 clone-node-max=1 notify=true

pcs resource create p_fs_exports ocf:heartbeat:Filesystem \
    device=/dev/drbd1000 directory=/drbd/exports fstype=xfs options=noatime,prjquota \
    op monitor interval=20s timeout=40s --group g_rwxnfs
pcs resource create p_fs_nfs4recovery ocf:heartbeat:Filesystem \
    device=/drbd/exports/.rwxnfs/nfs4recovery directory=/var/lib/nfs/nfsdcld \
    fstype=none options=bind \
    op monitor interval=20s timeout=40s --group g_rwxnfs
pcs resource create p_rwxnfs_agent systemd:rwxnfs-agent \
    op monitor interval=10s timeout=20s --group g_rwxnfs
pcs resource create p_nfs_server systemd:nfs-server \
    op monitor interval=10s timeout=20s --group g_rwxnfs
pcs resource create p_vip ocf:heartbeat:IPaddr2 ip=192.168.222.25 cidr_netmask=24 \
    op monitor interval=10s --group g_rwxnfs
pcs resource create p_tickle systemd:rwxnfs-tickle \
    op monitor interval=30s timeout=20s --group g_rwxnfs

pcs constraint colocation add g_rwxnfs with Promoted p_drbd_rwxnfs-clone INFINITY
pcs constraint order promote p_drbd_rwxnfs-clone then start g_rwxnfs
