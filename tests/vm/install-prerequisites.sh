#!/bin/sh
# Installs what the VM tier (tests/vm) needs on Debian 12; run as root after
# `apt-get update`. .ci/run calls it; `cargo test` never installs anything.
#
#   qemu-system-x86, qemu-utils   QEMU (software emulation: this machine's KVM
#                                 cannot run stock kernels). Some machines carry
#                                 a backported qemu-utils that qemu-system-x86
#                                 cannot be installed beside, so qemu-utils is
#                                 pinned to bookworm's (a downgrade there).
#   cloud-image-utils             cloud-localds (with genisoimage) for the seed
#   debootstrap                   the image build (tests/vm/build-image.sh)
#   vagrant, vagrant-libvirt      `vagrant validate` of vagrant/Vagrantfile
#                                 (the libvirt plugin lets it check the
#                                 libvirt provider's settings too)
set -eu
export DEBIAN_FRONTEND=noninteractive
apt-get install -y -q -o DPkg::Lock::Timeout=600 --no-install-recommends --allow-downgrades \
    qemu-system-x86 qemu-utils/bookworm cloud-image-utils debootstrap e2fsprogs \
    vagrant vagrant-libvirt
