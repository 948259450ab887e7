#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Prints 'N passed, N failed' from meson's testlog.json.

Each g_test case (a TAP 'ok' / 'not ok' line) counts once; a test program
that crashed or timed out before reporting its cases counts as one failure.
"""
import json
import re
import sys

passed = failed = skipped = 0
with open(sys.argv[1], encoding='utf-8') as log:
    for line in log:
        entry = json.loads(line)
        out = entry.get('stdout') or entry.get('stdo') or ''
        ok = not_ok = skip = 0
        for tap in out.splitlines():
            if re.match(r'^not ok\b', tap):
                not_ok += 1
            elif re.match(r'^ok\b', tap):
                if re.search(r'#\s*skip', tap, re.IGNORECASE):
                    skip += 1
                else:
                    ok += 1
        result = entry.get('result')
        if ok + not_ok + skip == 0:
            # not a TAP program, or it died before printing anything
            if result in ('OK', 'EXPECTEDFAIL'):
                ok = 1
            elif result == 'SKIP':
                skip = 1
            else:
                not_ok = 1
        elif result not in ('OK', 'EXPECTEDFAIL', 'SKIP') and not_ok == 0:
            not_ok = 1      # crashed after some cases had passed
        passed += ok
        failed += not_ok
        skipped += skip
print(f'{passed} passed, {failed} failed, {skipped} skipped')
