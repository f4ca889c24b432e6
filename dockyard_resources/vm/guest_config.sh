#!/bin/sh
# Runs inside the freshly debootstrapped rootfs (chroot) to make it a headless
# Dockyard test host. Nothing per-VM is baked in: host keys, authorized keys,
# hostname and machine-id arrive at boot (seed disk, kernel command line).
set -eu

echo dockyard-vm > /etc/hostname
printf '127.0.0.1 localhost\n::1 localhost ip6-localhost ip6-loopback\n' > /etc/hosts

# Empty machine-id: systemd takes the one on the kernel command line
# (systemd.machine_id=), so clones of this image never share one.
: > /etc/machine-id
rm -f /var/lib/dbus/machine-id
# First-boot prompts would block the boot on the serial console.
systemctl mask systemd-firstboot.service

# openssh-server's postinst generated host keys: they must not be shared.
rm -f /etc/ssh/ssh_host_*

echo '/dev/vda / ext4 rw,errors=remount-ro 0 1' > /etc/fstab

mkdir -p /etc/systemd/network
cat > /etc/systemd/network/20-eth0.network <<'NET'
[Match]
Name=eth0

[Network]
DHCP=ipv4
NET
systemctl enable systemd-networkd.service
# QEMU user networking's DNS forwarder; no resolved in a minbase system.
rm -f /etc/resolv.conf
echo 'nameserver 10.0.2.3' > /etc/resolv.conf

useradd --create-home --shell /bin/bash --groups sudo dockyard
echo 'dockyard ALL=(ALL) NOPASSWD:ALL' > /etc/sudoers.d/dockyard
chmod 0440 /etc/sudoers.d/dockyard
passwd --lock root

mkdir -p /etc/ssh/sshd_config.d
cat > /etc/ssh/sshd_config.d/10-dockyard.conf <<'SSHD'
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
UseDNS no
# Only the key the runner pinned (generating RSA keys under TCG takes a minute).
HostKey /etc/ssh/ssh_host_ed25519_key
SSHD

cat > /usr/local/sbin/dockyard-seed <<'SEED'
#!/bin/sh
# Installs this VM's identity from the seed disk (ext4 labelled dyseed) made by
# the runner on the machine running Pulumi: the SSH host key (pinned there
# before the first connection), authorized keys, hostname. Then grows the root
# fs to the overlay's size. Runs on every boot; every step is idempotent.
set -eu
dev=""
# blkid probes the disks itself: no wait for udev's by-label links.
for _ in $(seq 1 60); do
    dev=$(blkid -L dyseed 2>/dev/null || true)
    [ -n "$dev" ] && break
    sleep 1
done
if [ -n "$dev" ]; then
    seed=$(mktemp -d /run/dyseed.XXXXXX)
    mount -o ro "$dev" "$seed"
    if [ -f "$seed/ssh/ssh_host_ed25519_key" ]; then
        install -m 0600 -o root -g root "$seed/ssh/ssh_host_ed25519_key" /etc/ssh/
        install -m 0644 -o root -g root "$seed/ssh/ssh_host_ed25519_key.pub" /etc/ssh/
    fi
    if [ -f "$seed/authorized_keys" ]; then
        install -d -m 0700 /root/.ssh
        install -m 0600 "$seed/authorized_keys" /root/.ssh/authorized_keys
        install -d -m 0700 -o dockyard -g dockyard /home/dockyard/.ssh
        install -m 0600 -o dockyard -g dockyard "$seed/authorized_keys" \
            /home/dockyard/.ssh/authorized_keys
    fi
    if [ -f "$seed/hostname" ]; then
        cp "$seed/hostname" /etc/hostname
        hostname "$(cat /etc/hostname)"
        # sudo warns on every call when the own hostname does not resolve.
        printf '127.0.0.1 localhost\n127.0.1.1 %s\n::1 localhost ip6-localhost ip6-loopback\n' \
            "$(cat /etc/hostname)" > /etc/hosts
    fi
    umount "$seed"
    rmdir "$seed"
else
    echo "dockyard-seed: no seed disk (label dyseed) found" >&2
fi
# Without a seed disk the VM still gets its own (unpinned) host key.
if [ ! -f /etc/ssh/ssh_host_ed25519_key ]; then
    ssh-keygen -q -t ed25519 -N '' -f /etc/ssh/ssh_host_ed25519_key
fi
resize2fs /dev/vda || echo "dockyard-seed: resize2fs failed" >&2
SEED
chmod 0755 /usr/local/sbin/dockyard-seed

cat > /etc/systemd/system/dockyard-seed.service <<'UNIT'
[Unit]
Description=Dockyard per-VM identity (host keys, authorized keys, hostname, disk size)
After=local-fs.target
Before=ssh.service

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/usr/local/sbin/dockyard-seed

[Install]
WantedBy=multi-user.target ssh.service
UNIT
systemctl enable dockyard-seed.service ssh.service

# Dockyard instances must be the only Docker daemons on the host.
for unit in docker.service docker.socket containerd.service; do
    systemctl mask "$unit"
done
# Background jobs that only cost CPU on an emulated test host.
for unit in apt-daily.timer apt-daily-upgrade.timer e2scrub_all.timer fstrim.timer \
        man-db.timer dpkg-db-backup.timer; do
    systemctl mask "$unit"
done
