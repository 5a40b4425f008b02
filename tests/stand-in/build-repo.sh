#!/bin/sh
# Make a flat apt repository from the .deb files in a directory.
#
#   tests/stand-in/build-repo.sh DEB_DIR REPO_DIR
#
# Usable as `deb [trusted=yes] file:/REPO_DIR ./`, or deb822:
#   Types: deb
#   URIs: file:/REPO_DIR
#   Suites: ./
#   Trusted: yes
# The Packages index is written from `dpkg-deb -f` plus size and checksums,
# so no dpkg-dev (dpkg-scanpackages) is needed; Packages.gz when gzip exists.
set -eu

if [ $# -ne 2 ]; then
  echo "usage: $0 DEB_DIR REPO_DIR" >&2
  exit 2
fi
deb_dir=$1
repo=$2

command -v dpkg-deb >/dev/null || { echo "$0: dpkg-deb not found (package dpkg)" >&2; exit 1; }
mkdir -p "$repo"

found=0
packages="$repo/Packages.new"
: > "$packages"
for deb in "$deb_dir"/*.deb; do
  [ -e "$deb" ] || continue
  found=1
  name=$(basename "$deb")
  if [ "$(cd "$deb_dir" && pwd)/$name" != "$(cd "$repo" && pwd)/$name" ]; then
    cp "$deb" "$repo/$name"
  fi
  {
    dpkg-deb -f "$repo/$name"
    echo "Filename: ./$name"
    echo "Size: $(wc -c < "$repo/$name" | tr -d ' ')"
    echo "MD5sum: $(md5sum "$repo/$name" | cut -d' ' -f1)"
    echo "SHA256: $(sha256sum "$repo/$name" | cut -d' ' -f1)"
    echo
  } >> "$packages"
done
if [ "$found" = 0 ]; then
  rm -f "$packages"
  echo "$0: no .deb files in $deb_dir" >&2
  exit 1
fi
mv "$packages" "$repo/Packages"

indexes=Packages
if command -v gzip >/dev/null; then
  gzip -9nc "$repo/Packages" > "$repo/Packages.gz"
  indexes="Packages Packages.gz"
else
  rm -f "$repo/Packages.gz"
fi

{
  echo "Origin: runner-provision-tests"
  echo "Label: gitlab-runner stand-in"
  echo "Architectures: amd64"
  echo "Date: $(LC_ALL=C date -u '+%a, %d %b %Y %H:%M:%S UTC')"
  echo "MD5Sum:"
  for f in $indexes; do
    echo " $(md5sum "$repo/$f" | cut -d' ' -f1) $(wc -c < "$repo/$f" | tr -d ' ') $f"
  done
  echo "SHA256:"
  for f in $indexes; do
    echo " $(sha256sum "$repo/$f" | cut -d' ' -f1) $(wc -c < "$repo/$f" | tr -d ' ') $f"
  done
} > "$repo/Release"
echo "$repo"
