# Ownership and path guards of one Dockyard instance, sourced into its install, stop and
# remove scripts. Values arrive as arguments, never spliced into this file. The install and
# remove scripts call them under the host lock, so no other Dockyard operation can slip a
# new instance, unit or root in between a check and the change it protects.
# shellcheck shell=bash

# dy_refuse MESSAGE: this instance must not be created or changed as asked.
dy_refuse() {
  echo "$*" >&2
  exit 3
}

# dy_unit_field UNIT NAME: the value of the unit's "# dockyard-NAME: value" header line.
dy_unit_field() {
  [ -f "$1" ] || return 0
  sed -n "s/^# dockyard-$2: //p" "$1" | head -n 1
}

# dy_marker_owner ROOT: the owner named by ROOT/.dockyard-instance, empty without one.
dy_marker_owner() {
  if [ ! -f "$1/.dockyard-instance" ] || [ -L "$1/.dockyard-instance" ]; then return 0; fi
  sed -n 's/^owner=//p' "$1/.dockyard-instance" | head -n 1
}

# dy_group_record ROOT OWNER: what the instance recorded about its group in
# ROOT/.dockyard-group (ROOT's marker naming OWNER): the group's gid, "making" while it was
# making the group (an empty record), nothing without a record.
dy_group_record() {
  local file="$1/.dockyard-group" line
  [ "$(dy_marker_owner "$1")" = "$2" ] || return 0
  if [ ! -f "$file" ] || [ -L "$file" ]; then return 0; fi
  line=$(head -n 1 "$file")
  case "$line" in
    "") echo making ;;
    gid=*) echo "${line#gid=}" ;;
  esac
}

# dy_user_comment USER: the user's comment (GECOS), empty when there is no such user.
dy_user_comment() {
  { getent passwd "$1" || true; } | cut -d: -f5
}

# dy_check_path ROOT: no symbolic link on the way to ROOT, and every existing parent belongs
# to root and is writable by root alone (else a local user could swap in their own bin/).
dy_check_path() {
  local root=$1 path="" part uid mode
  local -a parts
  IFS=/ read -r -a parts <<<"${root#/}"
  for part in "${parts[@]}"; do
    path="$path/$part"
    if [ -L "$path" ]; then
      dy_refuse "root $root: $path is a symbolic link; give a root whose path has no symlinks"
    fi
    [ -e "$path" ] || return 0
    [ "$path" != "$root" ] || return 0
    read -r uid mode < <(stat -c '%u %a' -- "$path")
    if [ "$uid" != 0 ] || (((8#$mode & 8#022) != 0)); then
      dy_refuse "root $root: its parent $path belongs to uid $uid with mode $mode; every" \
        "parent must belong to root and be writable by root only (chown root and chmod go-w" \
        "it, or choose another root)"
    fi
  done
}

# dy_untrusted_dir DIR: why root must not run programs from DIR, nothing when it may. DIR,
# every directory above it and every entry of DIR must be no symbolic link, belong to root
# and be writable by root alone (by no other user, and by no group but root's).
dy_untrusted_dir() {
  local dir=$1 path="" part uid gid mode entry
  local -a parts paths=(/)
  IFS=/ read -r -a parts <<<"${dir#/}"
  for part in "${parts[@]}"; do
    path="$path/$part"
    paths+=("$path")
  done
  for path in "${paths[@]}"; do
    if [ -L "$path" ]; then echo "$path is a symbolic link"; return 0; fi
    if [ ! -d "$path" ]; then echo "$path is no directory"; return 0; fi
    read -r uid gid mode < <(stat -c '%u %g %a' -- "$path")
    if [ "$uid" != 0 ] || (((8#$mode & 8#002) != 0)) ||
      { [ "$gid" != 0 ] && (((8#$mode & 8#020) != 0)); }; then
      echo "$path belongs to uid $uid, gid $gid with mode $mode"
      return 0
    fi
  done
  entry=$(find "$dir" -mindepth 1 -maxdepth 1 \( -type l -o ! -uid 0 -o -perm -0002 \
    -o \( -perm -0020 ! -gid 0 \) \) -print -quit)
  if [ -n "$entry" ]; then
    echo "$entry is a symbolic link or not root's alone to change"
  fi
}

# dy_check_binaries KEY DIR: refuse DIR (the input KEY) unless root may run programs from it.
dy_check_binaries() {
  local why
  why=$(dy_untrusted_dir "$2")
  if [ -n "$why" ]; then
    dy_refuse "$1 $2: $why; root runs the binaries in it, so it, its entries and every" \
      "directory above it must belong to root and be writable by root only: correct that" \
      "path's owner and mode, then let the SysboxHost reinstall its binaries (pulumi up)"
  fi
}

# dy_check_not_staging ROOT MARK: ROOT's path holds no MARK, the name of the temporary
# directory (`<root>MARK.XXXXXX`) an install builds a root in: an install of a sibling root
# would take such a root for its own leftover.
dy_check_not_staging() {
  case "$1" in
    *"$2"*) dy_refuse "root $1 contains '$2', the name Dockyard gives the temporary" \
      "directory it builds a root in; use a path without it" ;;
  esac
}

# dy_check_nesting ROOT OWN_UNIT: no other instance (of any stack) has ROOT as its root, a
# root inside ROOT, or a root that contains ROOT. Units name the roots; a root whose unit is
# gone (an install or a delete cut short) still shows by its marker, checked on ROOT's way.
dy_check_nesting() {
  local root=$1 own=$2 unit other prefix path="" part
  local -a parts
  for unit in "${DY_UNIT_DIR:-/etc/systemd/system}"/*.service; do
    if [ ! -f "$unit" ] || [ "$unit" = "$own" ]; then continue; fi
    other=$(dy_unit_field "$unit" root)
    [ -n "$other" ] || continue
    prefix=$(dy_unit_field "$unit" instance)
    if [ "$other" = "$root" ]; then
      dy_refuse "root $root is already the root of Dockyard instance $prefix" \
        "($(dy_unit_field "$unit" owner)); choose another root"
    fi
    case "$root/" in
      "$other"/*) dy_refuse "root $root lies inside $other, the root of Dockyard instance" \
        "$prefix; instance roots must not nest: choose a root outside it" ;;
    esac
    case "$other/" in
      "$root"/*) dy_refuse "root $root contains $other, the root of Dockyard instance" \
        "$prefix; instance roots must not nest: choose a root outside it" ;;
    esac
  done
  IFS=/ read -r -a parts <<<"${root#/}"
  for part in "${parts[@]}"; do
    path="$path/$part"
    [ "$path" != "$root" ] || break
    if [ -f "$path/.dockyard-instance" ] && [ ! -L "$path/.dockyard-instance" ]; then
      dy_refuse "root $root lies inside $path, the root of a Dockyard instance (its marker" \
        "names $(dy_marker_owner "$path")); instance roots must not nest: choose a root" \
        "outside it"
    fi
  done
}

# dy_remove_leftovers ROOT OWNER MARK: remove what runs of this instance cut short left of
# the temporary directories it builds ROOT in (`<root>MARK.XXXXXX`): plain directories whose
# marker names OWNER, and empty ones (a run cut before it wrote the marker); nothing else
# (the pattern may match other instances' roots, which are never empty).
dy_remove_leftovers() {
  local leftover
  for leftover in "$1$3".*; do
    if [ ! -d "$leftover" ] || [ -L "$leftover" ]; then continue; fi
    if [ "$(dy_marker_owner "$leftover")" = "$2" ]; then
      rm -rf --one-file-system -- "$leftover"
    else
      rmdir -- "$leftover" 2>/dev/null || true
    fi
  done
}

# dy_legacy_root UNIT: the root a unit of an earlier Dockyard (no owner line) names.
dy_legacy_root() {
  if [ -f "$1" ] && [ -z "$(dy_unit_field "$1" owner)" ]; then dy_unit_field "$1" root; fi
}

# dy_check_owner PREFIX ROOT UNIT USER OWNER ADOPT GROUP: the unit, root, user and group of
# this name are this owner's or do not exist yet. ADOPT=1 (an update of an instance made by
# an earlier Dockyard, which wrote no owner) accepts the earlier version's unowned unit, root,
# user and the user's group.
dy_check_owner() {
  local prefix=$1 root=$2 unit=$3 user=$4 owner=$5 adopt=$6 group=$7 found comment legacy
  legacy=$(dy_legacy_root "$unit")
  found=$(dy_unit_field "$unit" owner)
  if [ -n "$found" ] && [ "$found" != "$owner" ]; then
    dy_refuse "instance $prefix on this host belongs to $found, not to $owner: Dockyard" \
      "never takes over another resource's instance. Use another prefix, or remove that" \
      "instance through its own stack first"
  fi
  if [ -f "$unit" ] && [ -z "$found" ] && [ "$adopt" != 1 ]; then
    dy_refuse "$unit exists but names no Dockyard owner (made by another tool, or by an" \
      "earlier Dockyard whose state is lost); use another prefix, or remove it by hand"
  fi
  if [ -e "$root" ] || [ -L "$root" ]; then
    if [ ! -d "$root" ] || [ -L "$root" ]; then
      dy_refuse "root $root exists and is not a directory"
    fi
    found=$(dy_marker_owner "$root")
    if [ -n "$found" ] && [ "$found" != "$owner" ]; then
      dy_refuse "root $root belongs to $found, not to $owner; choose another root"
    fi
    if [ -z "$found" ] && ! { [ "$adopt" = 1 ] && [ "$legacy" = "$root" ]; }; then
      dy_refuse "root $root already exists and is not a Dockyard instance root (it has no" \
        ".dockyard-instance marker); Dockyard only uses a root it created itself: choose a" \
        "path that does not exist yet, or remove the directory if nothing in it is needed"
    fi
  fi
  comment=$(dy_user_comment "$user")
  if getent passwd "$user" >/dev/null; then
    case "$comment" in
      "Dockyard instance $prefix ($owner)") ;;
      "Dockyard instance $prefix") [ "$adopt" = 1 ] ||
        dy_refuse "user $user exists but names no Dockyard owner; use another prefix" ;;
      *) dy_refuse "user $user already exists and is not this instance's (comment:" \
        "'$comment'); use another prefix" ;;
    esac
  fi
  if getent group "$group" >/dev/null &&
    ! dy_group_is_ours "$group" "$root" "$user" "$prefix" "$owner" "$adopt"; then
    dy_refuse "group $group already exists and is not this instance's (Dockyard did not" \
      "make it: no record of it in $root/.dockyard-group); use another prefix, or delete" \
      "the group if nothing uses it"
  fi
}

# dy_group_is_ours GROUP ROOT USER PREFIX OWNER ADOPT: true when the existing group GROUP is
# this instance's. A group has no comment to name its owner: the instance records the gid of
# the group it makes under its root (dy_group_record). Without a record, the group of an
# earlier Dockyard counts as ours only as the primary group of the instance's own user
# (ADOPT=1 also takes a user of a Dockyard that wrote no owner).
dy_group_is_ours() {
  local group=$1 root=$2 user=$3 prefix=$4 owner=$5 adopt=$6 gid record
  gid=$({ getent group "$group" || true; } | cut -d: -f3)
  [ -n "$gid" ] || return 1
  record=$(dy_group_record "$root" "$owner")
  case "$record" in
    making) return 0 ;;
    "") ;;
    *) [ "$record" = "$gid" ]; return ;;
  esac
  [ "$({ getent passwd "$user" || true; } | cut -d: -f4)" = "$gid" ] || return 1
  case "$(dy_user_comment "$user")" in
    "Dockyard instance $prefix ($owner)") return 0 ;;
    "Dockyard instance $prefix") [ "$adopt" = 1 ] ;;
    *) return 1 ;;
  esac
}

# dy_is_ours UNIT ROOT OWNER: true when what is on the host under this name belongs to OWNER,
# or to an instance of an earlier Dockyard that wrote no owner anywhere.
dy_is_ours() {
  local unit=$1 root=$2 owner=$3 found
  found=$(dy_unit_field "$unit" owner)
  [ -z "$found" ] || [ "$found" = "$owner" ] || return 1
  found=$(dy_marker_owner "$root")
  [ -z "$found" ] || [ "$found" = "$owner" ]
}

# dy_pid_of_unit PID UNIT_NAME: true when PID is alive and runs in the unit's cgroup, so a
# stale pid file (after a reboot the number may be anybody's) never kills a stranger.
dy_pid_of_unit() {
  [ -n "$1" ] && [ -r "/proc/$1/cgroup" ] && grep -qF "/$2" "/proc/$1/cgroup"
}

# dy_pid_of_container PID CONTAINER_ID: true when PID is alive and in that container's cgroup.
dy_pid_of_container() {
  [ -n "$1" ] && [ -r "/proc/$1/cgroup" ] && grep -qF "$2" "/proc/$1/cgroup"
}
