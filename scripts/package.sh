#!/usr/bin/env bash
# Builds the Debian package skywire_VERSION-1_ARCH.deb from a staged tree with dpkg-deb:
#   /usr/bin/                     viscript, skywire-node, skywire-control and the four apps (stripped)
#   /lib/systemd/system/          viscript.service (dist/viscript.service)
#   /etc/skywire/config.yaml      the viscript catalogue (dist/config.yaml; a conffile)
#   /var/lib/skywire/             the router's key and files (0700; `skywire-control init` fills it)
#   /usr/share/doc/skywire/       copyright, changelog.Debian.gz
#   /usr/share/man/man1/          a page per binary, from its --help
# plus DEBIAN/{control,conffiles,md5sums} and the maintainer scripts of dist/debian/.
#
#   scripts/package.sh                    cargo build --release --locked, then the package
#   scripts/package.sh --profile debug    from target/debug instead (what the test uses)
#   scripts/package.sh --no-build         package the binaries already in target/PROFILE
#   scripts/package.sh --lint             then run lintian on it (fails on errors)
#   scripts/package.sh --out DIR          where the .deb goes (default target/debian)
# The .deb's path is the last line on stdout. CARGO_TARGET_DIR is honoured.
set -euo pipefail
cd "$(dirname "$0")/.."

usage() { sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'; }

profile=release
build=1
lint=0
out=
while [ $# -gt 0 ]; do
    case "$1" in
        --profile) [ $# -ge 2 ] || { echo "package.sh: --profile needs release or debug" >&2; exit 2; }
            profile=$2; shift 2 ;;
        --profile=*) profile=${1#--profile=}; shift ;;
        --no-build) build=0; shift ;;
        --lint) lint=1; shift ;;
        --out) [ $# -ge 2 ] || { echo "package.sh: --out needs a directory" >&2; exit 2; }
            out=$2; shift 2 ;;
        --out=*) out=${1#--out=}; shift ;;
        -h|--help) usage; exit 0 ;;
        *) echo "package.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done
case $profile in
    release|debug) ;;
    *) echo "package.sh: --profile is release or debug, not $profile" >&2; exit 2 ;;
esac

target=${CARGO_TARGET_DIR:-target}
out=${out:-$target/debian}
bindir=$target/$profile
bins=(viscript skywire-node skywire-control skywire-socks-server skywire-socks-client
    skywire-vpn-server skywire-vpn-client)

if [ $build = 1 ]; then
    flags=(--locked -p viscript -p dataplane -p controlplane -p apps --bins)
    if [ "$profile" = release ]; then flags=(--release "${flags[@]}"); fi
    echo "== cargo build ${flags[*]}" >&2
    cargo build "${flags[@]}"
fi
for b in "${bins[@]}"; do
    [ -x "$bindir/$b" ] || { echo "package.sh: $bindir/$b is missing (build it, or drop --no-build)" >&2; exit 1; }
done

# The version: [workspace.package] version in Cargo.toml, Debian revision 1.
upstream=$(sed -n '/^\[workspace.package\]/,/^\[/s/^version *= *"\([^"]*\)".*/\1/p' Cargo.toml)
[ -n "$upstream" ] || { echo "package.sh: no [workspace.package] version in Cargo.toml" >&2; exit 1; }
version=$upstream-1
arch=$(dpkg --print-architecture)
maintainer="Skywire maintainers <maintainers@users.noreply.r-seed-113c403c.example>"
if [ -z "${SOURCE_DATE_EPOCH:-}" ]; then
    SOURCE_DATE_EPOCH=$(git log -1 --format=%ct 2>/dev/null || date +%s)
fi
export SOURCE_DATE_EPOCH
commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)

name=skywire_${version}_${arch}
root=$out/$name
deb=$out/$name.deb
rm -rf "$root" "$deb"
mkdir -p "$out"
install -d -m 0755 "$root/DEBIAN" "$root/usr/bin" "$root/lib/systemd/system" "$root/etc/skywire" \
    "$root/usr/share/doc/skywire" "$root/usr/share/lintian/overrides" "$root/var/lib"
install -d -m 0700 "$root/var/lib/skywire"

for b in "${bins[@]}"; do
    strip --strip-unneeded --remove-section=.comment --remove-section=.note \
        -o "$root/usr/bin/$b" "$bindir/$b"
    chmod 0755 "$root/usr/bin/$b"
done
# Man pages: each binary's --help, as it prints it.
install -d -m 0755 "$root/usr/share/man/man1"
mandate=$(date -u -d "@$SOURCE_DATE_EPOCH" +%Y-%m-%d)
for b in "${bins[@]}"; do
    help=$("$bindir/$b" --help)
    # The first line without a pipe into head: head's early exit would SIGPIPE printf once
    # the help is longer than one write (pipefail then fails the build).
    first=${help%%$'\n'*}
    summary=$(sed 's/\\/\\e/g; s/-/\\-/g' <<<"$first")
    {
        printf '.TH %s 1 "%s" "skywire %s" "Skywire"\n' "${b^^}" "$mandate" "$upstream"
        printf '.SH NAME\n%s \\- %s\n' "${b//-/\\-}" "$summary"
        printf '.SH DESCRIPTION\n.nf\n'
        printf '%s\n' "$help" | sed 's/\\/\\e/g; s/-/\\-/g; s/^[.'"'"']/\\\&&/'
        printf '.fi\n.SH SEE ALSO\n'
        printf 'The README.md of the Skywire source; /etc/skywire/config.yaml.\n'
    } | gzip -9n >"$root/usr/share/man/man1/$b.1.gz"
    chmod 0644 "$root/usr/share/man/man1/$b.1.gz"
done
install -m 0644 dist/viscript.service "$root/lib/systemd/system/viscript.service"
install -m 0644 dist/config.yaml "$root/etc/skywire/config.yaml"
install -m 0644 dist/debian/copyright "$root/usr/share/doc/skywire/copyright"
install -m 0644 dist/debian/lintian-overrides "$root/usr/share/lintian/overrides/skywire"
for s in postinst prerm postrm; do
    install -m 0755 "dist/debian/$s" "$root/DEBIAN/$s"
done
printf '/etc/skywire/config.yaml\n' >"$root/DEBIAN/conffiles"
chmod 0644 "$root/DEBIAN/conffiles"

{
    printf 'skywire (%s) unstable; urgency=medium\n\n' "$version"
    printf '  * Built from the Skywire workspace at commit %s.\n\n' "$commit"
    printf ' -- %s  %s\n' "$maintainer" "$(date -u -R -d "@$SOURCE_DATE_EPOCH")"
} | gzip -9n >"$root/usr/share/doc/skywire/changelog.Debian.gz"
chmod 0644 "$root/usr/share/doc/skywire/changelog.Debian.gz"

# Depends: the shared libraries the binaries link (dpkg-shlibdeps wants a debian/control).
depends="libc6, libgcc-s1"
if command -v dpkg-shlibdeps >/dev/null; then
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT
    mkdir "$tmp/debian"
    printf 'Source: skywire\n\nPackage: skywire\nArchitecture: any\n' >"$tmp/debian/control"
    abs=$(cd "$root/usr/bin" && pwd)
    computed=$(cd "$tmp" && dpkg-shlibdeps -O "${bins[@]/#/$abs/}" 2>/dev/null |
        sed -n 's/^shlibs:Depends=//p')
    [ -n "$computed" ] && depends=$computed
else
    echo "package.sh: warning: no dpkg-shlibdeps (dpkg-dev): Depends: $depends, unversioned" >&2
fi

installed_size=$(du -sk --exclude=DEBIAN "$root" | cut -f1)
cat >"$root/DEBIAN/control" <<EOF
Package: skywire
Version: $version
Architecture: $arch
Maintainer: $maintainer
Installed-Size: $installed_size
Depends: $depends
Recommends: nftables
Section: net
Priority: optional
Description: mesh router with encrypted links and a supervisor (viscript)
 Skywire is a Linux mesh router. skywire-node, the dataplane, forwards IP
 between the sky0 TUN device and encrypted UDP links; skywire-control, the
 controlplane, runs the Noise links to the neighbours, the link-state routing
 and the messenger client, and programs the dataplane. The apps
 skywire-socks-server, skywire-socks-client, skywire-vpn-server and
 skywire-vpn-client carry SOCKS5 and IPv4 VPN traffic across the mesh (the VPN
 server's NAT uses nft from nftables).
 .
 viscript supervises them (viscript.service, a Type=notify unit): it starts,
 pings, restarts and stops them, as listed in /etc/skywire/config.yaml. The
 service is not started on installation: run "skywire-control init --dir
 /var/lib/skywire --listen IP:7100 ..." once to write the router's key and
 configuration, then "systemctl enable --now viscript".
EOF
chmod 0644 "$root/DEBIAN/control"
(cd "$root" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' | LC_ALL=C sort -z |
    xargs -0 md5sum) >"$root/DEBIAN/md5sums"
chmod 0644 "$root/DEBIAN/md5sums"

# The debug binaries are large even stripped of their debug info: no compression for them.
compress=()
[ "$profile" = debug ] && compress=(-Znone)
dpkg-deb --root-owner-group "${compress[@]}" --build "$root" "$deb" >&2
rm -rf "$root"

if [ $lint = 1 ]; then
    if ! command -v lintian >/dev/null; then
        echo "package.sh: --lint needs lintian (apt-get install lintian)" >&2
        exit 1
    fi
    echo "== lintian $deb" >&2
    lintian --fail-on error --display-info "$deb" >&2
fi
echo "$deb"
