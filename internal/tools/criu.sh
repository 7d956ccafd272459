#!/usr/bin/env bash
# criu.sh DIR: make sure runc finds a CRIU that really checkpoints.
#
# `criu check` is not evidence that a dump works: on some kernels a CRIU
# passes it and then hangs in every dump (CRIU's kernel-dependent hang,
# its issue #162). So each candidate, in order, is self-tested: `criu
# check`, then a dump and a restore of a small process tree (a shell in
# its own session with a child it waits for, as the demo's container
# has), each step under a timeout (CRIU_SELFTEST_TIMEOUT seconds, 20 by
# default), everything the test started killed by pid afterwards. The
# first that passes is used; the others are reported with why they failed.
#
# Candidates (CRIU_CANDIDATES, default "machine trixie sid"):
#   machine  the criu in PATH without DIR/bin; DIR/bin is then removed.
#   SUITE    Debian SUITE's criu and every library it needs, fetched as
#            Debian packages with an apt configuration of its own under
#            DIR/SUITE/apt (the system's apt sources, lists and installed
#            packages are left alone), unpacked under DIR/SUITE/root, and
#            run by DIR/SUITE/criu through the suite's own dynamic loader
#            with the suite's libraries only (the system's libc is not
#            touched). sid's Release file may be past its Valid-Until
#            date on a snapshot mirror; that check is turned off for sid,
#            in its private apt configuration only.
# DIR/bin/criu is then the chosen suite's criu. Put DIR/bin first in the
# PATH of containerd: runc looks `criu` up in its PATH (containerd 2.4's
# shim ignores the CriuPath runc option).
#
# The decision is cached in DIR/selected with a fingerprint: the kernel
# release, the candidates, this script, the machine's criu and the chosen
# criu (their files' digests). A run whose fingerprint matches prints the cached
# decision without testing again; anything else (a new kernel, an
# upgraded criu, an edited script, a missing stamp) runs the self-tests
# again. Fetched suites are kept in DIR/SUITE and reused.
#
# Provisioning and self-tests need root (without it, the script only says
# so). When no candidate passes it says so and leaves no DIR/bin and no
# DIR/selected; it is not an error (the real-CRIU tests then fail where
# integration tests are required). CRIU_MIRROR overrides the Debian
# mirror, which is otherwise the one the system's apt sources use.
set -euo pipefail

dir=$(realpath -m "${1:?usage: criu.sh DIR}")
candidates=${CRIU_CANDIDATES:-machine trixie sid}
step_timeout=${CRIU_SELFTEST_TIMEOUT:-20}
keyring=/usr/share/keyrings/debian-archive-keyring.gpg
bin=$dir/bin
selected=$dir/selected
self=$(realpath "$0")

# machine_criu prints the criu found in PATH without DIR/bin.
machine_criu() {
	local p
	p=$(tr ':' '\n' <<<"$PATH" | grep -vxF "$bin" | paste -sd: -)
	PATH=$p command -v criu
}

# system_mirror prints the Debian mirror of the system's apt sources
# (one-line and deb822 formats), not its security archive.
system_mirror() {
	local m
	m=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources 2>/dev/null |
		grep -oE '(https?|file)://[^ ]+/debian/?( |$)' | head -n1 | tr -d ' ')
	echo "${CRIU_MIRROR:-${m:-http://deb.debian.org/debian}}"
}

# digest prints the sha256 of the files given, or "none" for none.
digest() {
	if [ $# -eq 0 ]; then
		echo none
		return
	fi
	cat "$@" | sha256sum | cut -d' ' -f1
}

# criu_files prints the files whose content makes candidate $1 what it
# is: the machine's binary, or a suite's wrapper and binary.
criu_files() {
	case $1 in
	machine)
		local own
		own=$(machine_criu) && realpath "$own"
		;;
	*) [ -x "$dir/$1/criu" ] && echo "$dir/$1/criu" "$dir/$1/root/usr/sbin/criu" ;;
	esac
}

# fingerprint prints what a cached decision for candidate $1 depends on.
fingerprint() {
	# shellcheck disable=SC2046
	echo "kernel=$(uname -r) candidates=${candidates// /,} script=$(digest "$self") machine=$(digest $(criu_files machine || true)) chosen=$(digest $(criu_files "$1" || true))"
}

# provision_suite fetches Debian suite $1's criu into DIR/SUITE unless it
# is there already; on failure it prints why on stdout.
provision_suite() {
	local suite=$1 sdir=$dir/$1
	local apt=$sdir/apt root=$sdir/root
	if [ -x "$sdir/criu" ] && [ -f "$sdir/fetched" ]; then
		return 0
	fi
	rm -rf "$sdir"
	mkdir -p "$apt/etc/apt.conf.d" "$apt/etc/sources.list.d" "$apt/etc/preferences.d" "$apt/state/lists/partial" \
		"$apt/cache/archives/partial" "$apt/log"
	: >"$apt/state/status"
	echo "deb [signed-by=$keyring] $(system_mirror) $suite main" >"$apt/etc/sources.list"
	# Dir::Etc is read before the system's apt.conf.d, so none of it
	# applies. An empty dpkg status makes apt fetch every package criu
	# depends on, libc and its loader included.
	cat >"$apt/apt.conf" <<-EOF
		Dir::Etc "$apt/etc";
		Dir::State "$apt/state";
		Dir::State::status "$apt/state/status";
		Dir::Cache "$apt/cache";
		Dir::Cache::pkgcache "";
		Dir::Cache::srcpkgcache "";
		Dir::Log "$apt/log";
		APT::Install-Recommends "false";
		Acquire::Languages "none";
		Acquire::GzipIndexes "true";
	EOF
	if [ "$suite" = sid ] || [ "$suite" = unstable ]; then
		# Only this configuration: the system's apt keeps its checks.
		echo 'Acquire::Check-Valid-Until "false";' >>"$apt/apt.conf"
	fi
	local out
	if ! out=$(APT_CONFIG=$apt/apt.conf DEBIAN_FRONTEND=noninteractive apt-get -qq update 2>&1); then
		echo "apt-get update failed: $(tail -n1 <<<"$out")"
		return 1
	fi
	if ! out=$(APT_CONFIG=$apt/apt.conf DEBIAN_FRONTEND=noninteractive apt-get -qq -y install --download-only criu 2>&1); then
		echo "fetching criu failed: $(tail -n1 <<<"$out")"
		return 1
	fi
	local deb n=0
	for deb in "$apt"/cache/archives/*.deb; do
		dpkg-deb -x "$deb" "$root" || {
			echo "cannot unpack $deb"
			return 1
		}
		n=$((n + 1))
	done
	local loader
	loader=$(find "$root" -type f -name 'ld-linux*.so.*' | head -n1)
	if [ -z "$loader" ] || [ ! -x "$root/usr/sbin/criu" ]; then
		echo "no loader or criu in the $suite packages under $root"
		return 1
	fi
	local libdirs d
	libdirs=$(dirname "$loader")
	for d in "$root/lib/$(basename "$libdirs")" "$root/usr/lib"; do
		[ -d "$d" ] && libdirs=$libdirs:$d
	done
	mkdir -p "$root/usr/lib/criu"
	# CRIU_LIBS_DIR: the plugins of this criu (if any), not the machine's.
	cat >"$sdir/criu.tmp" <<-EOF
		#!/bin/sh
		# Written by internal/tools/criu.sh: Debian $suite's criu, run by its own
		# loader with its own libraries.
		CRIU_LIBS_DIR=$(printf %q "$root/usr/lib/criu")
		export CRIU_LIBS_DIR
		exec $(printf '%q ' "$loader" --library-path "$libdirs" "$root/usr/sbin/criu")"\$@"
	EOF
	chmod 755 "$sdir/criu.tmp"
	mv "$sdir/criu.tmp" "$sdir/criu"
	echo "$n packages" >"$sdir/fetched"
}

# now prints a monotonic-enough time in milliseconds.
now() { date +%s%3N; }

# log_tail prints the last lines of CRIU log $1, on one line.
log_tail() {
	if [ -s "$1" ]; then
		tail -n3 "$1" | tr -s '\t\n' '  '
	else
		echo "(no log)"
	fi
}

# log_errors prints the errors of CRIU log $1 that made it fail, on one
# line (CRIU logs an RLIMIT_NOFILE error it goes on after).
log_errors() {
	local e
	e=$(grep 'Error' "$1" 2>/dev/null | grep -v -e RLIMIT_NOFILE -e 'FAILED' | tail -n2 | tr -s '\t\n' '  ')
	echo "${e:-$(log_tail "$1")}"
}

# kill_tree kills the session of pid $1 that the self-test started and
# waits until its leader is gone, so that its pid is free.
kill_tree() {
	local pid=$1 i
	kill -KILL -- "-$pid" 2>/dev/null || true
	for i in $(seq 100); do
		[ -e "/proc/$pid" ] || return 0
		sleep 0.05
	done
	return 1
}

# selftest dumps and restores a process tree with criu $1; on success it
# prints "dump Xs, restore Ys", else why it failed, and its status says
# which.
selftest() {
	local criu=$1 work pid t0 t1 t2 dumped rc out
	if ! out=$(timeout -s KILL "$step_timeout" "$criu" check 2>&1); then
		echo "criu check fails: $(tail -n1 <<<"$out")"
		return 1
	fi
	work=$(mktemp -d "${TMPDIR:-/tmp}/criu-selftest-XXXXXX")
	mkdir "$work/img"
	# A session of its own (setsid -f forks first, so the shell is its
	# leader): CRIU dumps it without --shell-job, and the restored copy
	# gets the same pids, which must be free by then.
	# Without the lock's descriptor: CRIU does not dump file locks.
	setsid -f sh -c 'echo $$ >"$1"; sleep 600 & wait' selftest "$work/pid" </dev/null >/dev/null 2>&1 9>&-
	for _ in $(seq 100); do
		[ -s "$work/pid" ] && [ -n "$(cat "/proc/$(cat "$work/pid")/task/"*/children 2>/dev/null)" ] && break
		sleep 0.05
	done
	pid=$(cat "$work/pid")
	t0=$(now)
	rc=0
	timeout -s KILL "$step_timeout" "$criu" dump -t "$pid" -D "$work/img" -o dump.log -v4 >/dev/null 2>&1 || rc=$?
	t1=$(now)
	dumped=$((t1 - t0))
	if [ "$rc" != 0 ]; then
		if [ "$rc" = 137 ]; then
			out="dump hung (killed after ${step_timeout}s); its log ends: $(log_tail "$work/img/dump.log")"
		else
			out="dump failed ($rc): $(log_errors "$work/img/dump.log")"
		fi
		kill_tree "$pid" || true
		rm -rf "$work"
		echo "$out"
		return 1
	fi
	if ! kill_tree "$pid"; then
		out="the dumped tree (pid $pid) did not go away"
		rm -rf "$work"
		echo "$out"
		return 1
	fi
	t1=$(now)
	rc=0
	timeout -s KILL "$step_timeout" "$criu" restore -d -D "$work/img" -o restore.log -v4 >/dev/null 2>&1 || rc=$?
	t2=$(now)
	if [ "$rc" != 0 ]; then
		if [ "$rc" = 137 ]; then
			out="restore hung (killed after ${step_timeout}s); its log ends: $(log_tail "$work/img/restore.log")"
		else
			out="restore failed ($rc): $(log_errors "$work/img/restore.log")"
		fi
	elif ! grep -q . "/proc/$pid/task/$pid/children" 2>/dev/null; then
		out="the restored shell (pid $pid) has no child"
		rc=1
	fi
	kill_tree "$pid" || true
	rm -rf "$work"
	if [ "$rc" != 0 ]; then
		echo "$out"
		return 1
	fi
	printf 'dump %d.%03ds, restore %d.%03ds\n' $((dumped / 1000)) $((dumped % 1000)) $(((t2 - t1) / 1000)) $(((t2 - t1) % 1000))
}

# describe prints what candidate $1 is, for the report.
describe() {
	case $1 in
	machine) echo "the machine's criu" ;;
	*) echo "Debian $1's criu" ;;
	esac
}

if [ -f "$selected" ]; then
	chosen=$(sed -n 's/^candidate=//p' "$selected")
	if [ -n "$chosen" ] && [ "$(sed -n 's/^fingerprint=//p' "$selected")" = "$(fingerprint "$chosen")" ]; then
		sed -n 's/^rejected=/criu: rejected /p' "$selected"
		echo "criu: $(sed -n 's/^report=//p' "$selected") (self-tested $(sed -n 's/^date=//p' "$selected"), cached in $selected)"
		exit 0
	fi
fi
if [ "$(id -u)" != 0 ]; then
	# Not fatal: without root the integration tests do not run either.
	echo "criu: no self-tested criu; run make tools as root to choose one" >&2
	exit 0
fi
mkdir -p "$dir"
exec 9>"$dir/.lock"
flock 9
# The layout before self-tests: one suite's criu straight in DIR.
rm -rf "$dir/root" "$dir/apt" "$dir/provisioned"

rejected=()
chosen=""
for c in $candidates; do
	if [ "$c" = machine ]; then
		if ! criu=$(machine_criu); then
			rejected+=("$(describe "$c"): none in PATH")
			echo "criu: rejected ${rejected[-1]}"
			continue
		fi
	else
		[ -f "$dir/$c/fetched" ] || echo "criu: fetching Debian $c's criu into $dir/$c"
		if ! why=$(provision_suite "$c"); then
			rejected+=("$(describe "$c"): $why")
			echo "criu: rejected ${rejected[-1]}"
			continue
		fi
		criu=$dir/$c/criu
	fi
	version=$("$criu" --version 2>/dev/null | head -n1 | sed 's/^Version: *//') || version=unknown
	echo "criu: self-testing $(describe "$c") $version ($criu)"
	if why=$(selftest "$criu"); then
		chosen=$c
		times=$why
		break
	fi
	rejected+=("$(describe "$c") $version: $why")
	echo "criu: rejected ${rejected[-1]}"
done

if [ -z "$chosen" ]; then
	rm -rf "$bin" "$selected"
	# Not fatal: the other tests still run; the real-CRIU tests fail
	# where integration tests are required, and skip elsewhere.
	echo "criu: no candidate ($candidates) dumps and restores here; real-CRIU tests cannot run" >&2
	exit 0
fi
if [ "$chosen" = machine ]; then
	rm -rf "$bin"
	where=$criu
else
	mkdir -p "$bin"
	ln -sfn "$dir/$chosen/criu" "$bin/criu"
	where=$bin/criu
fi
report="using $(describe "$chosen") $version ($where): self-test $times on kernel $(uname -r)"
cat >"$selected.tmp" <<EOF
candidate=$chosen
version=$version
fingerprint=$(fingerprint "$chosen")
date=$(date -u +%FT%TZ)
report=$report
EOF
for r in "${rejected[@]}"; do
	echo "rejected=$r" >>"$selected.tmp"
done
mv "$selected.tmp" "$selected"
echo "criu: $report"
