#!/bin/sh
# A signed apt repository in the layout of GitLab's and Docker's own
# (dists/SUITE/COMPONENT/binary-amd64, pool/), for the adoption scenarios.
#
#   signed-repo.sh REPO_DIR SUITE COMPONENT DEB...
#
# Generates a fresh OpenPGP key (ed25519, no expiry) in a temporary GNUPGHOME,
# writes Packages(.gz), Release, InRelease (clear-signed) and Release.gpg,
# and exports the key as REPO_DIR/gpgkey (ASCII armour, as GitLab and Docker
# serve theirs) and REPO_DIR/gpgkey.gpg (binary, as `gpg --dearmor` writes
# it). apt inside the test host checks these signatures for real.
set -eu

if [ $# -lt 4 ]; then
  echo "usage: $0 REPO_DIR SUITE COMPONENT DEB..." >&2
  exit 2
fi
repo=$1 suite=$2 component=$3
shift 3
for tool in gpg gpgconf dpkg-deb sha256sum gzip; do
  command -v "$tool" >/dev/null || { echo "$0: $tool not found (apt-get install gnupg dpkg coreutils gzip)" >&2; exit 1; }
done

GNUPGHOME=$(mktemp -d)
export GNUPGHOME
# Ends the agent this script's gpg started (by its home), and removes the key.
trap 'gpgconf --kill all >/dev/null 2>&1 || true; rm -rf "$GNUPGHOME"' EXIT INT TERM
gpg --batch --quiet --passphrase '' \
  --quick-gen-key 'runner-provision test repository <repository@invalid>' ed25519 sign never 2>/dev/null

pool=pool/$component
index=dists/$suite/$component/binary-amd64
mkdir -p "$repo/$pool" "$repo/$index"
: >"$repo/$index/Packages"
for deb in "$@"; do
  name=$(basename "$deb")
  cp "$deb" "$repo/$pool/$name"
  {
    dpkg-deb -f "$repo/$pool/$name"
    echo "Filename: $pool/$name"
    echo "Size: $(wc -c <"$repo/$pool/$name" | tr -d ' ')"
    echo "SHA256: $(sha256sum "$repo/$pool/$name" | cut -d' ' -f1)"
    echo
  } >>"$repo/$index/Packages"
done
gzip -9nc "$repo/$index/Packages" >"$repo/$index/Packages.gz"
# An empty source index, so that deb-src lines (GitLab's script writes one)
# find what they ask for.
mkdir -p "$repo/dists/$suite/$component/source"
: >"$repo/dists/$suite/$component/source/Sources"
gzip -9nc "$repo/dists/$suite/$component/source/Sources" >"$repo/dists/$suite/$component/source/Sources.gz"

dists=$repo/dists/$suite
{
  echo "Origin: runner-provision-tests"
  echo "Label: adoption scenario"
  echo "Suite: $suite"
  echo "Codename: $suite"
  echo "Architectures: amd64"
  echo "Components: $component"
  echo "Date: $(LC_ALL=C date -u '+%a, %d %b %Y %H:%M:%S UTC')"
  echo "SHA256:"
  for path in $component/binary-amd64/Packages $component/binary-amd64/Packages.gz \
      $component/source/Sources $component/source/Sources.gz; do
    echo " $(sha256sum "$dists/$path" | cut -d' ' -f1) $(wc -c <"$dists/$path" | tr -d ' ') $path"
  done
} >"$dists/Release"
gpg --batch --yes --digest-algo SHA512 --clearsign -o "$dists/InRelease" "$dists/Release"
gpg --batch --yes --digest-algo SHA512 -abs -o "$dists/Release.gpg" "$dists/Release"
gpg --batch --yes --armor --export >"$repo/gpgkey"
gpg --batch --yes --export >"$repo/gpgkey.gpg"
echo "$repo"
