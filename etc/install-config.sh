#!/bin/sh
# etc/install-config.sh - meson install script for the sample config: lays
# down SYSCONFDIR/sluice/sluice.ini, but never over an existing one (an
# operator's edits survive a second `meson install`): then the new sample
# goes next to it as sluice.ini.example.
#
#   install-config.sh SAMPLE SYSCONFDIR
#
# SAMPLE is etc/sluice.ini; SYSCONFDIR is absolute. Honours DESTDIR (meson
# makes it absolute), MESON_INSTALL_QUIET and MESON_INSTALL_DRY_RUN.
#
# The sample sets no [global] user: started as root, sluice then runs as the
# `sluice` account the package (or the operator) creates, which is what the
# logrotate snippet and the unit expect.
set -eu

if [ "$#" -ne 2 ]; then
    echo "usage: install-config.sh SAMPLE SYSCONFDIR" >&2
    exit 2
fi
sample=$1
dir="${DESTDIR:-}$2/sluice"

say() {
    [ -n "${MESON_INSTALL_QUIET:-}" ] || echo "$@"
}

target=$dir/sluice.ini
if [ -e "$target" ] || [ -L "$target" ]; then
    target=$dir/sluice.ini.example
    note="$dir/sluice.ini exists and is kept; the new sample is $target"
else
    note="Installing $sample to $target"
fi

if [ -n "${MESON_INSTALL_DRY_RUN:-}" ]; then
    say "(dry run) $note"
    exit 0
fi

mkdir -p "$dir"
tmp="$target.tmp.$$"
trap 'rm -f "$tmp"' EXIT
cp "$sample" "$tmp"
chmod 0644 "$tmp"
mv -f "$tmp" "$target"
trap - EXIT
say "$note"
