#!/bin/sh
# Sample colo fencing hook (--fence-cmd): two hosts, or two network namespaces on one machine,
# share a directory (NFS, a bind mount, or simply the same /tmp). For one replication session
# the first side to create "$COLO_FENCE_DIR/$SESSION.lock" wins; the other loses, forever for
# that session. mkdir is atomic on a local file system (use an NFS mount with care: mkdir is
# atomic there too, but a stale lock must then be cleared by hand).
#
#   colo secondary ... --fence-cmd "COLO_FENCE_DIR=/srv/colo-fence sh scripts/fence-dir.sh"
#
# Exit 0 = this side won (and may serve), 1 = it lost, 2 = misconfigured (also a loss).
# Asking again after winning answers "won" again for the same role (idempotent).
set -u
dir="${COLO_FENCE_DIR:-}"
if [ -z "$dir" ]; then
  echo "fence-dir: set COLO_FENCE_DIR to a directory both sides share" >&2
  exit 2
fi
id="${COLO_FENCE_SESSION:-}"
[ -n "$id" ] || id="${COLO_FENCE_NAME:-}"
if [ -z "$id" ]; then
  echo "fence-dir: no session or name to lock" >&2
  exit 2
fi
case "$id" in
  */* | .*) echo "fence-dir: bad lock name '$id'" >&2; exit 2 ;;
esac
lock="$dir/$id.lock"
me="${COLO_FENCE_ROLE:-unknown}"
mkdir -p "$dir" || exit 2
if mkdir "$lock" 2>/dev/null; then
  printf '%s %s %s\n' "$me" "$(hostname)" "$$" > "$lock/owner"
  echo "fence-dir: $me won $lock" >&2
  exit 0
fi
# The lock exists: ours (asked again) or the other side's. Give a racing winner a moment to
# write its owner file.
i=0
while [ ! -s "$lock/owner" ] && [ $i -lt 20 ]; do sleep 0.05; i=$((i + 1)); done
owner=$(cut -d' ' -f1 "$lock/owner" 2>/dev/null || true)
if [ "$owner" = "$me" ]; then
  exit 0
fi
echo "fence-dir: $me lost, $lock is held by ${owner:-?}" >&2
exit 1
