#!/bin/sh
# Prints the package version for a `git describe --tags --always --dirty`
# name (the one `sluice version` reports; default: this checkout's), so that
# every later commit gets a higher Debian/RPM version:
#
#   v1.2.3                 -> 1.2.3
#   v1.2.3-rc1             -> 1.2.3~rc1         (before 1.2.3)
#   v1.2.3-4-gabc1234      -> 1.2.3+4.gabc1234  (4 commits after v1.2.3)
#   abc1234 (no tag yet)   -> 0.0.0~git20261205.312.abc1234
#                             (commit date in UTC, commits in the history, hash)
#   ...-dirty              -> ....dirty         (uncommitted changes)
set -eu
describe=${1:-$(git describe --tags --always --dirty)}
dirty=""
case $describe in
*-dirty) describe=${describe%-dirty}; dirty=.dirty ;;
esac
case $describe in
v[0-9]* | [0-9]*.*)
	base=${describe#v}
	after=""
	# -N-gHASH: commits after the tag.
	if printf '%s\n' "$base" | grep -Eq -- '-[0-9]+-g[0-9a-f]+$'; then
		after=$(printf '%s\n' "$base" | sed -E 's/.*-([0-9]+)-g([0-9a-f]+)$/+\1.g\2/')
		base=$(printf '%s\n' "$base" | sed -E 's/-[0-9]+-g[0-9a-f]+$//')
	fi
	# A pre-release (v1.2.3-rc1) sorts before the release.
	base=$(printf '%s\n' "$base" | tr '-' '~')
	printf '%s%s%s\n' "$base" "$after" "$dirty"
	;;
*)
	date=$(TZ=UTC git log -1 --date=format-local:%Y%m%d --format=%cd "$describe")
	count=$(git rev-list --count "$describe")
	printf '0.0.0~git%s.%s.%s%s\n' "$date" "$count" "$describe" "$dirty"
	;;
esac
