#!/bin/sh
# A cold `poser-lens run` of the checkout in CODE: an empty cache and run folder (made here,
# removed after), the code imported from CODE (not the installed copy), its output appended to
# LOG, its results.json and timings.json kept as LOG.<name of CODE>.results.json / .timings.json.
#
# Usage: sh benchmarks/cold_run.sh CODE LOG
# Time an old and a new checkout one after the other with a whole-process timer, e.g.
#   git worktree add /tmp/old e613923
#   /usr/bin/time -v sh benchmarks/cold_run.sh /tmp/old old.log
#   /usr/bin/time -v sh benchmarks/cold_run.sh "$PWD" new.log
# (the README's numbers: each once, in turn, on the idle machine).
set -u
code=$(cd "$1" && pwd) || exit 1
log=$(realpath "$2")
name=$(basename "$code")
d=$(mktemp -d "${TMPDIR:-/tmp}/cold_run.XXXXXX")
echo "=== $code $(date)" >>"$log"
(cd "$code" && POSER_LENS_CACHE="$d/cache" HF_HUB_OFFLINE=1 MPLBACKEND=Agg python -c "
import sys
from poser_lens.cli import app
sys.argv = ['poser-lens', 'run', '--out', sys.argv[1]]
app()
" "$d/run") >>"$log" 2>&1
rc=$?
cp "$d/run/results.json" "$log.$name.results.json" 2>/dev/null
cp "$d/run/timings.json" "$log.$name.timings.json" 2>/dev/null
rm -rf "$d"
exit $rc
