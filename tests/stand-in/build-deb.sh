#!/bin/sh
# Build the stand-in's Debian package.
#
#   tests/stand-in/build-deb.sh BINARY OUT_DIR
#
# BINARY is the built stand-in (target/*/gitlab-runner); OUT_DIR gets
# gitlab-runner_<version>_amd64.deb. Needs only dpkg-deb (and coreutils).
# The version sorts below GitLab's real 17.4.0-1, so a real package would
# replace this one. STAND_IN_VERSION overrides it.
#
# Package layout as GitLab's: /usr/bin/gitlab-runner, the maintainer logic in
# /usr/share/gitlab-runner/{post-install,pre-remove}, called from
# postinst/prerm. The only dependency is libc6 (the stand-in is a dynamically
# linked Rust binary; the real one is a static Go binary); useradd comes from
# passwd, which every Debian system has.
set -eu

if [ $# -ne 2 ]; then
  echo "usage: $0 BINARY OUT_DIR" >&2
  exit 2
fi
binary=$1
out_dir=$2
here=$(cd "$(dirname "$0")" && pwd)
version=${STAND_IN_VERSION:-17.4.0-1~standin}

command -v dpkg-deb >/dev/null || { echo "$0: dpkg-deb not found (package dpkg)" >&2; exit 1; }
[ -x "$binary" ] || { echo "$0: $binary is not an executable file" >&2; exit 1; }

stage=$(mktemp -d)
chmod 0755 "$stage"
trap 'rm -rf "$stage"' EXIT INT TERM

install -d -m 0755 "$stage/DEBIAN" "$stage/usr/bin" "$stage/usr/share/gitlab-runner" \
  "$stage/usr/share/doc/gitlab-runner"
install -m 0755 "$binary" "$stage/usr/bin/gitlab-runner"
install -m 0755 "$here/debian/post-install" "$stage/usr/share/gitlab-runner/post-install"
install -m 0755 "$here/debian/pre-remove" "$stage/usr/share/gitlab-runner/pre-remove"
install -m 0755 "$here/debian/postinst" "$stage/DEBIAN/postinst"
install -m 0755 "$here/debian/prerm" "$stage/DEBIAN/prerm"
printf '%s\n' \
  'Test stand-in for GitLab Runner, built by runner-provision (tests/stand-in).' \
  'It accepts the real command line and writes the real files, but never' \
  'contacts a GitLab server and never runs jobs.' \
  > "$stage/usr/share/doc/gitlab-runner/README.stand-in"

installed_kib=$(du -sk --exclude=DEBIAN "$stage" | cut -f1)
cat > "$stage/DEBIAN/control" <<CONTROL
Package: gitlab-runner
Version: $version
Architecture: amd64
Maintainer: runner-provision tests <tests@invalid>
Installed-Size: $installed_kib
Depends: libc6
Section: devel
Priority: optional
Homepage: https://gitlab.com/gitlab-org/gitlab-runner
Description: GitLab Runner (test stand-in)
 A stand-in for GitLab Runner's shell-executor host setup: same commands,
 flags, config.toml format and service files as GitLab Runner 17.4, but no
 network access and no job execution. For tests only.
CONTROL

mkdir -p "$out_dir"
deb="$out_dir/gitlab-runner_${version}_amd64.deb"
dpkg-deb --root-owner-group -Zxz --build "$stage" "$deb" >/dev/null
echo "$deb"
