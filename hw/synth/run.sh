#!/usr/bin/env bash
# Synthesis sanity for the order kernel: yosys synth_ice40 cell counts, logic depth, and
# nextpnr-ice40 place-and-route when the design fits an iCE40.
#
#   hw/synth/run.sh [N] [NSYM]        # defaults: N=4 order slots, NSYM=2 symbols
#
# Output in build/hw/synth/: ice40.log, ice40.json, depth.log, nextpnr.log (if run), summary.txt.
# The kernel computes the model's checks exactly (64x64-bit products for notional, price band and
# bucket capacity; 140-bit signed sums), which takes tens of thousands of LUTs: more than the
# largest iCE40 (hx8k: 7680 logic cells). Then place-and-route is skipped and the logic depth
# (yosys `ltp` on a generic 4-LUT mapping, registers excluded) stands in for a timing report.
# The default size takes about 6 minutes (5.5 CPU minutes) on the 2-core dev machine.
set -euo pipefail
N="${1:-4}"
NSYM="${2:-2}"
HERE="$(cd "$(dirname "$0")" && pwd)"
RTL="$HERE/../rtl/order_kernel.v"
OUT="$HERE/../../build/hw/synth"
mkdir -p "$OUT"
cd "$OUT"

# `-run :check` stops synth_ice40 before its `autoname` pass (cosmetic net naming, which takes
# tens of CPU minutes on a netlist this size); the cells are the same.
yosys -q -l ice40.log -p "read_verilog $RTL; chparam -set N $N -set NSYM $NSYM order_kernel; \
  synth_ice40 -top order_kernel -run :check; hierarchy -check; stat; write_json ice40.json" >/dev/null
# Logic depth: generic synthesis mapped to 4-input LUTs (carry chains become LUT ripple, so this
# over-counts adders compared with iCE40 SB_CARRY chains); `-noff` cuts paths at registers.
yosys -q -l depth.log -p "read_verilog $RTL; chparam -set N $N -set NSYM $NSYM order_kernel; \
  synth -top order_kernel -flatten -lut 4; stat; ltp -noff" >/dev/null

LCS=$(awk '$1 == "SB_LUT4" {l=$2} END {print l+0}' ice40.log)
{
  echo "order_kernel N=$N NSYM=$NSYM  ($(yosys -V))"
  echo "--- synth_ice40 cells:"
  grep -E "^ +(Number of cells:|SB_[A-Z0-9_]+) +[0-9]+$" ice40.log | tail -12
  echo "--- logic depth (generic 4-LUT mapping, registers excluded):"
  grep -E "Longest topological path" depth.log | tail -1
} > summary.txt

if [ "$LCS" -le 7680 ]; then
  set +e
  timeout "${NEXTPNR_TIMEOUT:-1800}" nextpnr-ice40 --hx8k --package ct256 --json ice40.json --freq 250 \
    --pcf-allow-unconstrained --log nextpnr.log >/dev/null 2>&1
  echo "--- nextpnr-ice40 --hx8k (exit $?):" >> summary.txt
  set -e
  grep -E "ICESTORM_LC|Max frequency" nextpnr.log | tail -3 >> summary.txt || true
else
  echo "--- nextpnr-ice40: not run, $LCS LUTs do not fit the largest iCE40 (hx8k, 7680 LCs)" >> summary.txt
fi
cat summary.txt
