#!/bin/sh
# passwd-shim.sh: the subset of shadow-utils' useradd, usermod, userdel,
# groupadd and groupdel that Ignition's files stage runs (always as
# `CMD --root /sysroot [options] NAME`), for the lab's tiny OS, which has no
# shadow-utils. Installed as those five names; it acts on $0.
#
# It edits ROOT/etc/{passwd,shadow,group,gshadow}, creating them (with a root
# entry) when missing, as on a fresh root. Lenient where a lab should be:
# supplementary groups that do not exist yet (say "sudo", "docker") are created.

prog=${0##*/}
root=/
home= home_set=0 create_home=0 no_user_group=0 system=0 password= password_set=0
uid= comment= comment_set=0 gid= groups= groups_set=0 shell= move_home=0 name=

die() { echo "$prog: $*" >&2; exit 1; }

while [ $# -gt 0 ]; do
	case "$1" in
	--root | -R) root=$2; shift ;;
	--home-dir | --home | -d) home=$2; home_set=1; shift ;;
	--create-home | -m) create_home=1 ;;
	--no-create-home | -M) create_home=0 ;;
	--move-home) move_home=1 ;;
	--no-user-group | -N) no_user_group=1 ;;
	--system | -r) system=1 ;;
	--no-log-init | -l | --remove | -f | --force) ;;
	--password | -p) password=$2; password_set=1; shift ;;
	--uid | -u) uid=$2; shift ;;
	--gid | -g) gid=$2; shift ;;
	--comment | -c) comment=$2; comment_set=1; shift ;;
	--groups | -G) groups=$2; groups_set=1; shift ;;
	--shell | -s) shell=$2; shift ;;
	--) shift; name=$1; break ;;
	-*) die "unsupported option $1" ;;
	*) name=$1 ;;
	esac
	shift
done
[ -n "$name" ] || die "no name"

etc=$root/etc
mkdir -p "$etc"
[ -f "$etc/passwd" ] || echo 'root:x:0:0:root:/root:/bin/sh' >"$etc/passwd"
[ -f "$etc/group" ] || echo 'root:x:0:' >"$etc/group"
[ -f "$etc/shadow" ] || { echo 'root:*:19000:0:99999:7:::' >"$etc/shadow"; chmod 0640 "$etc/shadow"; }
[ -f "$etc/gshadow" ] || { echo 'root:*::' >"$etc/gshadow"; chmod 0640 "$etc/gshadow"; }

field() { # field FILE NAME N: field N of NAME's line
	awk -F: -v n="$2" -v f="$3" '$1 == n { print $f; exit }' "$1"
}
has() { grep -q "^$2:" "$1"; }
free_id() { # free_id FILE FROM: the first id >= FROM not used in FILE
	awk -F: -v from="$2" '{ used[$3] = 1 } END { i = from; while (i in used) i++; print i }' "$1"
}
del_line() { # del_line FILE NAME
	awk -F: -v n="$2" '$1 != n' "$1" >"$1.new" && cat "$1.new" >"$1" && rm -f "$1.new"
}
set_field() { # set_field FILE NAME N VALUE
	awk -F: -v OFS=: -v n="$2" -v f="$3" -v v="$4" '$1 == n { $f = v } { print }' "$1" >"$1.new" &&
		cat "$1.new" >"$1" && rm -f "$1.new"
}
add_group() { # add_group NAME [GID]
	has "$etc/group" "$1" && return 0
	g=${2:-$(free_id "$etc/group" $([ $system = 1 ] && echo 100 || echo 1000))}
	echo "$1:x:$g:" >>"$etc/group"
	echo "$1:${password:-*}::" >>"$etc/gshadow"
}
resolve_gid() { # a group name or number -> number
	case "$1" in
	*[!0-9]*) g=$(field "$etc/group" "$1" 3); [ -n "$g" ] || die "group $1 does not exist"; echo "$g" ;;
	*) echo "$1" ;;
	esac
}
set_groups() { # set_groups USER LIST: USER is a member of exactly the groups in LIST
	for g in $(echo "$2" | tr ',' ' '); do add_group "$g"; done
	awk -F: -v OFS=: -v u="$1" -v list=",$2," '
		{ n = split($4, m, ","); out = ""
		  for (i = 1; i <= n; i++) if (m[i] != "" && m[i] != u) out = out (out == "" ? "" : ",") m[i]
		  if (index(list, "," $1 ",")) out = out (out == "" ? "" : ",") u
		  $4 = out; print }' "$etc/group" >"$etc/group.new" && cat "$etc/group.new" >"$etc/group" && rm -f "$etc/group.new"
}

case "$prog" in
useradd)
	has "$etc/passwd" "$name" && die "user $name exists"
	[ -n "$uid" ] || uid=$(free_id "$etc/passwd" $([ $system = 1 ] && echo 100 || echo 1000))
	if [ -n "$gid" ]; then
		gid=$(resolve_gid "$gid")
	elif [ $no_user_group = 1 ]; then
		add_group users 100
		gid=100
	else
		if awk -F: -v g="$uid" '$3 == g { f = 1 } END { exit !f }' "$etc/group"; then
			add_group "$name"
		else
			add_group "$name" "$uid"
		fi
		gid=$(field "$etc/group" "$name" 3)
	fi
	[ $home_set = 1 ] || home=/home/$name
	echo "$name:x:$uid:$gid:$comment:$home:${shell:-/bin/bash}" >>"$etc/passwd"
	echo "$name:${password:-*}:19000:0:99999:7:::" >>"$etc/shadow"
	[ $groups_set = 1 ] && set_groups "$name" "$groups"
	if [ $create_home = 1 ]; then
		mkdir -p "$root$home"
		chown "$uid:$gid" "$root$home"
		chmod 0700 "$root$home"
	fi
	;;
usermod)
	has "$etc/passwd" "$name" || die "user $name does not exist"
	if [ $home_set = 1 ]; then
		old=$(field "$etc/passwd" "$name" 6)
		if [ $move_home = 1 ] && [ -d "$root$old" ] && [ "$old" != "$home" ]; then
			mkdir -p "$(dirname "$root$home")" && mv "$root$old" "$root$home"
		fi
		set_field "$etc/passwd" "$name" 6 "$home"
	fi
	[ $password_set = 1 ] && set_field "$etc/shadow" "$name" 2 "$password"
	[ -n "$uid" ] && set_field "$etc/passwd" "$name" 3 "$uid"
	[ -n "$gid" ] && set_field "$etc/passwd" "$name" 4 "$(resolve_gid "$gid")"
	[ $comment_set = 1 ] && set_field "$etc/passwd" "$name" 5 "$comment"
	[ -n "$shell" ] && set_field "$etc/passwd" "$name" 7 "$shell"
	[ $groups_set = 1 ] && set_groups "$name" "$groups"
	;;
userdel)
	has "$etc/passwd" "$name" || die "user $name does not exist"
	del_line "$etc/passwd" "$name"
	del_line "$etc/shadow" "$name"
	;;
groupadd)
	has "$etc/group" "$name" && die "group $name exists"
	add_group "$name" "$gid"
	;;
groupdel)
	del_line "$etc/group" "$name"
	del_line "$etc/gshadow" "$name"
	;;
*) die "called as $prog: link me as useradd, usermod, userdel, groupadd or groupdel" ;;
esac
exit 0
