#!/usr/bin/env bash
# criu.sh DIR: make sure runc finds a CRIU that passes `criu check`.
#
# The machine's own criu is kept when `criu check` passes; DIR/bin is then
# removed. Otherwise Debian's criu of CRIU_SUITE (trixie) and every library
# it needs are fetched as Debian packages with an apt configuration of its
# own under DIR/apt (the system's apt sources, lists and installed packages
# are left alone), unpacked under DIR/root, and DIR/bin/criu runs that criu
# through the suite's own dynamic loader with the suite's libraries only,
# so that the system's libc is not touched. Put DIR/bin first in the PATH
# of containerd: runc looks `criu` up in its PATH (containerd 2.4's shim
# ignores the CriuPath runc option).
#
# Idempotent: once DIR/bin/criu passes `criu check`, a run only checks it.
# Provisioning needs root (without it, the script only says so). It fails
# when the packages cannot be fetched; when the provisioned criu fails
# `criu check` too, it says so and leaves no wrapper. CRIU_MIRROR overrides
# the Debian mirror, which is otherwise the one the system's apt sources
# use.
set -euo pipefail

dir=$(realpath -m "${1:?usage: criu.sh DIR}")
suite=${CRIU_SUITE:-trixie}
keyring=/usr/share/keyrings/debian-archive-keyring.gpg
bin=$dir/bin
root=$dir/root
stamp=$dir/provisioned

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
	echo "${m:-http://deb.debian.org/debian}"
}

# provisioned says whether DIR/bin/criu is ours, complete and working.
provisioned() {
	[ -x "$bin/criu" ] && [ -f "$stamp" ] && "$bin/criu" check >/dev/null 2>&1
}

if own=$(machine_criu) && out=$("$own" check 2>&1); then
	rm -rf "$bin"
	echo "criu: using the machine's $own ($out)"
	exit 0
fi
if provisioned; then
	echo "criu: using $bin/criu ($(cat "$stamp"))"
	exit 0
fi
if [ "$(id -u)" != 0 ]; then
	# Not fatal: without root the integration tests do not run either.
	echo "criu: the machine's criu (${own:-none}) fails \`criu check\`; run make tools as root to provision $suite's" >&2
	exit 0
fi
mkdir -p "$dir"
exec 9>"$dir/.lock"
flock 9
if provisioned; then
	echo "criu: using $bin/criu ($(cat "$stamp")), provisioned meanwhile"
	exit 0
fi
echo "criu: the machine's criu (${own:-none}) fails \`criu check\`: provisioning Debian $suite's into $dir"
rm -rf "$bin" "$root" "$stamp"
apt=$dir/apt
mkdir -p "$apt/etc/apt.conf.d" "$apt/etc/sources.list.d" "$apt/etc/preferences.d" "$apt/state/lists/partial" \
	"$apt/cache/archives/partial" "$apt/log"
: >"$apt/state/status"
echo "deb [signed-by=$keyring] $(system_mirror) $suite main" >"$apt/etc/sources.list"
# Dir::Etc is read before the system's apt.conf.d, so none of it applies.
# An empty dpkg status makes apt fetch every package criu depends on,
# libc and its loader included.
cat >"$apt/apt.conf" <<EOF
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
export APT_CONFIG=$apt/apt.conf DEBIAN_FRONTEND=noninteractive
apt-get -qq update
apt-get -qq -y install --download-only criu >/dev/null
debs=("$apt"/cache/archives/*.deb)
for deb in "${debs[@]}"; do
	dpkg-deb -x "$deb" "$root"
done

loader=$(find "$root" -type f -name 'ld-linux*.so.*' | head -n1)
if [ -z "$loader" ] || [ ! -x "$root/usr/sbin/criu" ]; then
	echo "criu: no loader or criu in the $suite packages under $root" >&2
	exit 1
fi
libdirs=$(dirname "$loader")
for d in "$root/lib/$(basename "$libdirs")" "$root/usr/lib"; do
	[ -d "$d" ] && libdirs=$libdirs:$d
done
mkdir -p "$bin" "$root/usr/lib/criu"
# CRIU_LIBS_DIR: the plugins of this criu (if any), not the machine's.
cat >"$bin/criu.tmp" <<EOF
#!/bin/sh
# Written by internal/tools/criu.sh: Debian $suite's criu, run by its own
# loader with its own libraries.
CRIU_LIBS_DIR=$(printf %q "$root/usr/lib/criu")
export CRIU_LIBS_DIR
exec $(printf '%q ' "$loader" --library-path "$libdirs" "$root/usr/sbin/criu")"\$@"
EOF
chmod 755 "$bin/criu.tmp"
mv "$bin/criu.tmp" "$bin/criu"

if ! out=$("$bin/criu" check 2>&1); then
	rm -rf "$bin"
	echo "criu: $suite's criu fails \`criu check\` too; real-CRIU tests cannot run here: $out" >&2
	exit 0
fi
version=$("$bin/criu" --version | head -n1)
echo "$version, Debian $suite, ${#debs[@]} packages" >"$stamp"
echo "criu: provisioned $bin/criu ($(cat "$stamp")): $out"
