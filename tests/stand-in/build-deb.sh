#!/bin/sh
# Build the stand-in's Debian package.
#
#   tests/stand-in/build-deb.sh BINARY OUT_DIR
#
# BINARY is the built stand-in (target/*/gitlab-runner); OUT_DIR gets
# gitlab-runner_<version>_amd64.deb. Needs only dpkg-deb (and coreutils).
# The version sorts below GitLab's real 17.4.0-1, so a real package would
# replace this one. STAND_IN_VERSION overrides it (the real-host tier's
# repository holds 17.7.0-1 and 17.8.0-1, spelled as GitLab's repository
# spells its releases, so version pins resolve there as they do there).
#
# From 17.7 on, as GitLab's own packaging does since then, the helper images
# are a package of their own: OUT_DIR also gets
# gitlab-runner-helper-images_<version>_all.deb (Replaces: gitlab-runner),
# and gitlab-runner Depends on exactly that version of it, so apt asked for
# an older gitlab-runner alone fails with "held broken packages" as it does
# with GitLab's repository. STAND_IN_COMPRESS=gzip builds faster than the
# default xz (the test tier uses it).
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
compress=${STAND_IN_COMPRESS:-xz}
case "$compress" in xz|gzip) ;; *) echo "$0: STAND_IN_COMPRESS is xz or gzip" >&2; exit 2 ;; esac
case "$version" in
  *[!0-9A-Za-z.+~:-]*|'') echo "$0: STAND_IN_VERSION is not a Debian version: $version" >&2; exit 2 ;;
esac
# major.minor of the upstream version (after an epoch, before the revision).
upstream=${version#*:}
major=${upstream%%.*}
minor=${upstream#*.}; minor=${minor%%[!0-9]*}
helper=no
if [ "${major:-0}" -gt 17 ] || { [ "${major:-0}" -eq 17 ] && [ "${minor:-0}" -ge 7 ]; }; then
  helper=yes
fi
depends=libc6
if [ "$helper" = yes ]; then
  depends="libc6, gitlab-runner-helper-images (= $version)"
fi

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
Depends: $depends
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
dpkg-deb --root-owner-group -Z"$compress" --build "$stage" "$deb" >/dev/null
echo "$deb"

[ "$helper" = yes ] || exit 0
rm -rf "$stage"
mkdir -m 0755 "$stage"
install -d -m 0755 "$stage/DEBIAN" "$stage/usr/lib/gitlab-runner/helper-images" \
  "$stage/usr/share/doc/gitlab-runner-helper-images"
printf '%s\n' \
  'Test stand-in for GitLab Runner'"'"'s helper images package, built by runner-provision' \
  '(tests/stand-in). The real one holds prebuilt helper image archives.' \
  > "$stage/usr/share/doc/gitlab-runner-helper-images/README.stand-in"
printf 'stand-in %s\n' "$version" > "$stage/usr/lib/gitlab-runner/helper-images/VERSION.stand-in"
cat > "$stage/DEBIAN/control" <<CONTROL
Package: gitlab-runner-helper-images
Version: $version
Architecture: all
Maintainer: runner-provision tests <tests@invalid>
Installed-Size: $(du -sk --exclude=DEBIAN "$stage" | cut -f1)
Replaces: gitlab-runner
Section: devel
Priority: optional
Homepage: https://gitlab.com/gitlab-org/gitlab-runner
Description: GitLab Runner Helper Docker Images (test stand-in)
 A stand-in for the package GitLab Runner depends on from 17.7 on. For tests only.
CONTROL
helper_deb="$out_dir/gitlab-runner-helper-images_${version}_all.deb"
dpkg-deb --root-owner-group -Z"$compress" --build "$stage" "$helper_deb" >/dev/null
echo "$helper_deb"
