#!/usr/bin/env bash
# Writes a real systemd journal file from a journal export stream, for the
# tests of `veritrail ship --journald` on machines where no journald runs:
#   scripts/lib/journal-file.sh EXPORT OUT.journal
# EXPORT is in the journal export format (KEY=value lines, a blank line
# after each entry); OUT must end in .journal and not exist yet. The file is
# written by systemd-journal-remote, installed from the distribution's
# packages when it is missing (Debian: systemd-journal-remote); journalctl
# then reads it with --file or --directory like any journal.
set -euo pipefail

export_file=$1
out=$2
remote=""
for p in /lib/systemd/systemd-journal-remote /usr/lib/systemd/systemd-journal-remote; do
    [[ -x $p ]] && remote=$p && break
done
if [[ -z $remote ]]; then
    if command -v apt-get >/dev/null && [[ $(id -u) == 0 ]]; then
        echo "journal-file.sh: installing systemd-journal-remote" >&2
        install() {
            DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
                systemd-journal-remote >/dev/null
        }
        # A fresh machine may have no package lists yet.
        install || { apt-get update >/dev/null && install; }
        remote=/lib/systemd/systemd-journal-remote
    else
        echo "journal-file.sh: systemd-journal-remote is missing; install the systemd-journal-remote package" >&2
        exit 1
    fi
fi
command -v journalctl >/dev/null || {
    echo "journal-file.sh: journalctl is missing; install systemd" >&2
    exit 1
}
"$remote" --output="$out" - <"$export_file" 2>/dev/null
[[ -s $out ]] || { echo "journal-file.sh: $remote wrote no journal" >&2; exit 1; }
