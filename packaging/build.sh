#!/usr/bin/env bash
# Builds dist/sluice_VERSION_ARCH.deb for each of $ARCHES with nfpm (run by
# `go run` at a pinned version: not a dependency of the sluice binary). The
# binary is position-independent (-buildmode=pie): hardening, and lintian
# takes a static Go binary for an error.
#
#   VERSION      what `sluice version` reports (default: git describe, as make build)
#   PKG_VERSION  the package version (default: packaging/debversion.sh of VERSION)
#   ARCHES       Go architectures (default: amd64 arm64)
#   DIST         output directory (default: dist)
#   CONFIG       the config to ship as /etc/sluice/sluice.yaml (default:
#                configs/sluice.yaml with broker.data_dir and genlog.spill_file
#                under /var/lib/sluice)
set -euo pipefail
cd "$(dirname "$0")/.."
GO=${GO:-go}
NFPM_VERSION=v2.48.0
VERSION=${VERSION:-$(git describe --tags --always --dirty 2>/dev/null || echo dev)}
PKG_VERSION=${PKG_VERSION:-$(packaging/debversion.sh "$VERSION")}
ARCHES=${ARCHES:-amd64 arm64}
DIST=${DIST:-dist}
SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || date +%s)}
export SOURCE_DATE_EPOCH

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
mkdir -p "$DIST" "$stage/scripts" "$stage/doc"
root=$(pwd)
dist=$(cd "$DIST" && pwd)

# Man pages and bash completion, generated from the command tree by a build
# of cmd/sluice with the sluice_manpages tag (never in the shipped binary).
SLUICE_VERSION=$VERSION $GO run -tags sluice_manpages ./cmd/sluice "$stage"
gzip -9n "$stage"/man1/*.1

# The config: the documented one, with the state under /var/lib/sluice.
if [ -n "${CONFIG:-}" ]; then
	cp "$CONFIG" "$stage/sluice.yaml"
else
	sed -E \
		-e 's|^(  spill_file: )\./data/genlog\.spill(.*)$|\1/var/lib/sluice/genlog.spill\2|' \
		-e 's|^(  data_dir: )\./data/broker(.*)$|\1/var/lib/sluice/broker\2|' \
		configs/sluice.yaml >"$stage/sluice.yaml"
	grep -q '^  spill_file: /var/lib/sluice/' "$stage/sluice.yaml"
	grep -q '^  data_dir: /var/lib/sluice/' "$stage/sluice.yaml"
fi

# The unit and the agent, with the binary at /usr/bin.
sed -e 's|/usr/local/bin/sluice|/usr/bin/sluice|g' \
	-e '/^#   install -m 755 bin\/sluice/d' \
	-e 's|^#   install -m 644 ha/sluice.service .*|#   (installed by the sluice package; not enabled: edit /etc/sluice/sluice.yaml, then systemctl enable --now sluice)|' \
	ha/sluice.service >"$stage/sluice.service"
sed -e 's|^OCF_RESKEY_binary_default="/usr/local/bin/sluice"$|OCF_RESKEY_binary_default="/usr/bin/sluice"|' \
	ha/sluice >"$stage/ocf-agent"
grep -q '^OCF_RESKEY_binary_default="/usr/bin/sluice"$' "$stage/ocf-agent"

# Maintainer scripts: each with the shared functions.
for s in postinst prerm postrm; do
	{
		printf '#!/bin/sh\nset -e\n\n'
		cat packaging/scripts/common.sh
		echo
		cat "packaging/scripts/$s"
	} >"$stage/scripts/$s"
	chmod 755 "$stage/scripts/$s"
done

cp packaging/copyright "$stage/doc/copyright"
cp README.md "$stage/doc/README.md"
cp ha/README.md "$stage/doc/README.ha.md"
printf 'sluice (%s) unstable; urgency=medium\n\n  * Built from %s.\n\n -- Sluice maintainers <sluice@sluice-proxy.invalid>  %s\n' \
	"$PKG_VERSION" "$VERSION" "$(date -u -R -d "@$SOURCE_DATE_EPOCH")" | gzip -9n >"$stage/doc/changelog.gz"
gzip -9n "$stage/doc/README.md" "$stage/doc/README.ha.md"

for arch in $ARCHES; do
	CGO_ENABLED=0 GOOS=linux GOARCH=$arch $GO build -trimpath -buildvcs=auto -buildmode=pie \
		-ldflags "-s -w -X github.com/sluice-proxy/sluice/internal/buildinfo.Version=$VERSION" \
		-o "$stage/sluice" ./cmd/sluice
	# nfpm.yaml names the staged files relative to the stage.
	(cd "$stage" && ARCH=$arch PKG_VERSION=$PKG_VERSION \
		$GO run "github.com/goreleaser/nfpm/v2/cmd/nfpm@$NFPM_VERSION" package \
		--config "$root/packaging/nfpm.yaml" --packager deb \
		--target "$dist/sluice_${PKG_VERSION}_${arch}.deb")
done
