#!/bin/sh
# Stand-ins for Docker's packages, for the Docker-repository adoption
# scenario (Docker's own repository cannot be reached here).
#
#   docker-ce-stand-in.sh DOCKER_IO_DEB OUT_DIR
#
# - docker-ce: Debian's docker.io package renamed. Its files, maintainer
#   scripts and dependencies are docker.io's, unchanged (the ar member with
#   the files is copied byte for byte); only the control file differs:
#   Package docker-ce, Conflicts docker.io (as Docker's real docker-ce
#   does), Built-Using dropped. So a real Docker Engine runs under the name
#   docker-ce, and apt sees the same conflict it sees with Docker's package.
# - docker-ce-cli, containerd.io: empty packages of those names (docker.io
#   already ships the client, and Debian's containerd comes in as its
#   dependency). Only their names matter to the tool.
set -eu

if [ $# -ne 2 ]; then
  echo "usage: $0 DOCKER_IO_DEB OUT_DIR" >&2
  exit 2
fi
source_deb=$1 out=$2
for tool in ar dpkg-deb tar; do
  command -v "$tool" >/dev/null || { echo "$0: $tool not found (apt-get install binutils dpkg tar)" >&2; exit 1; }
done
mkdir -p "$out"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT INT TERM

# docker-ce: docker.io with a new control file.
mkdir "$work/control"
dpkg-deb --ctrl-tarfile "$source_deb" | tar -x -C "$work/control"
version=$(dpkg-deb -f "$source_deb" Version)
awk '
  /^Built-Using:/ { skip = 1; next }
  skip && /^ / { next }
  { skip = 0 }
  /^Package:/ { print "Package: docker-ce"; next }
  /^Source:/ { next }
  /^Conflicts:/ { print "Conflicts: docker.io"; print "Replaces: docker.io"; next }
  /^Description:/ { print "Description: Docker Engine (test stand-in: Debian'"'"'s docker.io renamed docker-ce)"; desc = 1; next }
  desc && /^ / { next }
  { desc = 0; print }
' "$work/control/control" >"$work/control/control.new"
mv "$work/control/control.new" "$work/control/control"
(cd "$work/control" && tar --owner=0 --group=0 -czf ../control.tar.gz ./*)
data=$(ar t "$source_deb" | grep '^data\.tar')
(cd "$work" && ar p "$source_deb" debian-binary >debian-binary && ar p "$source_deb" "$data" >"$data")
deb="$out/docker-ce_${version}_amd64.deb"
rm -f "$deb"
(cd "$work" && ar rcD "$deb.tmp" debian-binary control.tar.gz "$data")
mv "$deb.tmp" "$deb"
dpkg-deb -f "$deb" Package >/dev/null

# docker-ce-cli and containerd.io: empty, named as Docker's.
for package in docker-ce-cli containerd.io; do
  stage=$work/$package
  mkdir -p "$stage/DEBIAN" "$stage/usr/share/doc/$package"
  echo "Test stand-in for Docker's $package package (empty)." >"$stage/usr/share/doc/$package/README.stand-in"
  cat >"$stage/DEBIAN/control" <<CONTROL
Package: $package
Version: 1:99.0.0-1~standin
Architecture: amd64
Maintainer: runner-provision tests <tests@invalid>
Section: admin
Priority: optional
Description: $package (test stand-in, empty)
 Stands in for Docker's $package package in runner-provision's tests.
CONTROL
  dpkg-deb --root-owner-group -Zgzip --build "$stage" "$out/${package}_99.0.0-1~standin_amd64.deb" >/dev/null
done
ls "$out"/*.deb
