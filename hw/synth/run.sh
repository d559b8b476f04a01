#!/usr/bin/env bash
# Synthesis sanity for the order kernel: yosys synth_ice40 cell counts, logic depth per pipeline
# stage, and nextpnr-ice40 place-and-route when the design fits an iCE40.
#
#   hw/synth/run.sh [N] [NSYM]        # defaults: N=4 order slots, NSYM=2 symbols
#
# Output in build/hw/synth/: ice40.log, ice40.json, depth.log, stages.log, nextpnr.log (if run),
# calib*.log (the nextpnr calibration below), summary.txt. The kernel computes the model's checks
# exactly (64x64-bit products, 140-bit signed sums), which takes tens of thousands of LUTs: more
# than the largest iCE40 (hx8k: 7680 logic cells). Then place-and-route of the kernel is skipped
# and the logic depth (yosys `ltp` on a generic 4-LUT mapping, paths cut at registers) stands in
# for a timing report, calibrated by a placed-and-routed stage-A multiplier.
# The default size takes about 10 minutes on the 2-core dev machine.
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
# Logic depth: generic synthesis mapped to 4-input LUTs (carry chains become LUT logic, so this
# over-counts adders compared with iCE40 SB_CARRY chains); `-noff` cuts paths at registers.
yosys -q -l depth.log -p "read_verilog $RTL; chparam -set N $N -set NSYM $NSYM order_kernel; \
  synth -top order_kernel -flatten -lut 4; stat; ltp -noff; write_rtlil depth.il" >/dev/null
# Depth per pipeline stage: the LUTs in the input cone of each stage's registers (followed
# through LUTs only), longest path among them.
stage() {  # name, register wires
  echo "stage $1:" >> stages.log
  yosys -p "read_rtlil depth.il; select -set wires $2; select -set regs @wires %ci1 c:* %i; \
    select -set cone @regs %ci1 %ci*:+\$lut t:\$lut %i; delete t:\$lut @cone %d; ltp -noff" 2>&1 \
    | grep -E "Longest topological path" -A1 | sed 's/^/  /' >> stages.log || echo "  (no logic)" >> stages.log
}
: > stages.log
stage "take (in_data, table -> A)" "w:fA w:nowA w:mA w:eA w:yA w:yhA w:now"
stage "A (-> B)" "w:fB w:nowB w:pp1B* w:pp2B* w:m1negB w:m2negB w:pabsB w:invB w:mktB w:buyB w:priceB w:qtyB w:amremB w:hremB w:yB w:yhB"
stage "B (-> C)" "w:fC w:nowC w:mag1C w:mag2C w:m1negC w:m2negC w:lhsC w:thrC w:nmcC w:nmciC w:amdC w:invC w:mktC w:buyC w:priceC w:qtyC w:amremC w:yC w:yhC"
stage "C commit (-> tables, FIFO)" "w:o_* w:s_* w:q_* w:fsm w:e_oh w:lim2 w:x_cap w:kill"
stage "C forwarding (-> CAM / expiry vectors)" "w:mA w:mB w:mC w:eA w:eB w:eC"
stage "flow control (-> valid bits)" "w:vA w:vB w:vC"

LCS=$(awk '$1 == "SB_LUT4" {l=$2} END {print l+0}' ice40.log)
{
  echo "order_kernel N=$N NSYM=$NSYM  ($(yosys -V))"
  echo "--- synth_ice40 cells:"
  grep -E "^ +(Number of cells:|SB_[A-Z0-9_]+) +[0-9]+$" ice40.log | tail -12
  echo "--- logic depth (generic 4-LUT mapping, registers excluded):"
  grep -E "Longest topological path" -A1 depth.log | tail -2
  grep -E "Longest topological path" -A400 depth.log | grep -E "^ +[0-9]+: " | tail -1
  echo "--- per stage (LUT levels in the input cone of the stage's registers):"
  cat stages.log
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

# Calibration: nextpnr-ice40 timing for one stage-A partial product (hw/synth/calib_pp16.v), which
# fits, so the per-LUT-level delay behind the Fmax estimate is measured, not assumed.
CAL="$HERE/calib_pp16.v"
yosys -q -l calib.log -p "read_verilog $CAL; synth_ice40 -top calib_pp16 -json calib.json" >/dev/null
yosys -q -l calib_depth.log -p "read_verilog $CAL; synth -top calib_pp16 -flatten -lut 4; ltp -noff" >/dev/null
set +e
timeout 600 nextpnr-ice40 --hx8k --package ct256 --json calib.json --freq 250 --log calib_nextpnr.log \
  >/dev/null 2>&1
set -e
{
  echo "--- calibration: one 16x16 partial product (calib_pp16.v), nextpnr-ice40 --hx8k:"
  grep -E "Longest topological path" calib_depth.log | tail -1
  grep -E "ICESTORM_LC:" calib_nextpnr.log | tail -1
  grep -E "Max frequency for clock" calib_nextpnr.log | tail -1
} >> summary.txt
cat summary.txt
