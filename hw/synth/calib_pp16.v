`timescale 1ns/1ps
// Calibration for hw/synth/run.sh: one 16x16-bit partial product of the kernel's stage A (the
// same `*` on 16-bit limbs as order_kernel.v), registered in and out. Small enough to place and
// route on an iCE40, so nextpnr gives a real clock for a known number of LUT levels; the kernel
// itself does not fit any iCE40.
module calib_pp16 (
    input  wire        clk,
    input  wire [15:0] a,
    input  wire [15:0] b,
    output reg  [31:0] p
);
    reg [15:0] ra, rb;
    always @(posedge clk) begin
        ra <= a;
        rb <= b;
        p <= ra * rb;
    end
endmodule
