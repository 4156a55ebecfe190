#!/usr/bin/env bash
# `psi dry-run --html`: the report is one self-contained page (no script, no
# external resource) that headless Chromium renders to a non-blank picture
# with the table, the histogram and the sweep curve.
# shellcheck source-path=SCRIPTDIR
source "$(dirname "$0")/lib.sh"

need chromium
[[ -x $PSI_BIN ]] || fail "$PSI_BIN does not exist: run 'make all' first"
PROG=$HERE/dryrun_prog.py

rc=0
# shellcheck disable=SC2016 # $1.. expand in the inner shell
"$PSI_BIN" dry-run --threshold 1MiB --html report.html --json report.json -- \
    sh -c '"$1" "$2" nbwriter 2>nb.err | "$1" "$2" reader nb.got' sh "$PY" "$PROG" \
    >run.out 2>run.err || rc=$?
((rc == 0)) || { cat run.err; fail "psi dry-run --html exited with $rc"; }
[[ -s report.html ]] || fail "report.html was not written"

# Self-contained: inline CSS and SVG, nothing fetched, no script.
grep -q '<style>' report.html || fail "no inline CSS"
(($(grep -c '<svg' report.html) >= 2)) || fail "expected two SVG charts (histogram, sweep)"
grep -q 'threshold 1.0 MiB' report.html || fail "the threshold is not marked in the charts"
grep -q '<polyline' report.html || fail "no sweep curve"
! grep -qiE '<script|<link|src=|@import|url\(' report.html ||
    fail "the report refers to something outside itself: $(grep -oiE '<script|<link|src=[^ ]*|@import|url\([^)]*' report.html | head -3)"
grep -q '_Py_write' report.html || fail "the call site is missing from the table"

# Render it. Chromium's profile and caches go to a fresh directory.
profile=$(mktemp -d "$TEST_TMP/chrome.XXXXXX")
timeout 90 chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
    --disable-background-networking --disable-component-update --disable-sync \
    --user-data-dir="$profile" --screenshot="$TEST_TMP/report.png" --window-size=1200,1600 \
    "file://$TEST_TMP/report.html" >chromium.out 2>chromium.err ||
    fail "chromium could not render the report: $(tail -3 chromium.err)"
[[ -s report.png ]] || fail "chromium wrote no screenshot"

# Non-blank: decode the PNG (stdlib only) and count non-white pixels and
# distinct colours.
"$PY" - report.png <<'EOF' || fail "the screenshot looks blank"
import struct, sys, zlib
data = open(sys.argv[1], "rb").read()
assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
pos, idat, hdr = 8, b"", None
while pos < len(data):
    n, typ = struct.unpack(">I4s", data[pos:pos + 8])
    body = data[pos + 8:pos + 8 + n]
    if typ == b"IHDR":
        hdr = struct.unpack(">IIBBBBB", body)
    elif typ == b"IDAT":
        idat += body
    pos += 12 + n
w, h, depth, ctype = hdr[:4]
assert depth == 8 and ctype in (2, 6), "unexpected PNG format %s" % (hdr,)
bpp = 3 if ctype == 2 else 4
raw = zlib.decompress(idat)
stride = w * bpp
prev = bytearray(stride)
nonwhite, dark, colours = 0, 0, set()
i = 0
for y in range(h):
    f = raw[i]; i += 1
    line = bytearray(raw[i:i + stride]); i += stride
    for x in range(stride):
        a = line[x - bpp] if x >= bpp else 0
        b = prev[x]
        c = prev[x - bpp] if x >= bpp else 0
        if f == 1: line[x] = (line[x] + a) & 255
        elif f == 2: line[x] = (line[x] + b) & 255
        elif f == 3: line[x] = (line[x] + (a + b) // 2) & 255
        elif f == 4:
            p = a + b - c
            pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
            line[x] = (line[x] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
    for x in range(0, stride, bpp):
        px = bytes(line[x:x + 3])
        if px != b"\xff\xff\xff":
            nonwhite += 1
        if px[0] + px[1] + px[2] < 3 * 128:
            dark += 1  # text, axes, bars
        if len(colours) < 1000:
            colours.add(px)
    prev = line
share = nonwhite / (w * h)
print("screenshot %dx%d: %.1f%% non-white, %d+ colours" % (w, h, 100 * share, len(colours)))
assert share > 0.02, "only %.2f%% of the pixels are not white" % (100 * share)
assert len(colours) >= 3, "only %d colours" % len(colours)
assert dark / (w * h) > 0.005, "almost no dark pixels (no text?)"
EOF
log "ok report.html renders: $(du -k report.html | cut -f1) KiB, screenshot report.png"
