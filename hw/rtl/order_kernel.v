`timescale 1ns/1ps
// Allele order kernel: the RTL twin of kernel/orders/kernel.py (the reference model).
//
// One 64-byte frame in (in_data, little-endian: byte k of the frame is in_data[8k+7:8k]) with a
// valid/ready handshake; outbound frames leave on two lanes (out_data, then out_data2 for the
// second frame of a pair) with one out_ready. The frame layout is defined once, in
// kernel/orders/frames.py; this file implements that table.
//
// Timing contract (what the benches and the rtl-sim bridge rely on):
//  * a frame is taken at a rising edge where in_valid && in_ready;
//  * every outbound frame fired (out_valid && out_ready: lane 0, then lane 1 if out_valid2) after
//    that edge, up to and including the edge that takes the next inbound frame, belongs to that
//    frame, in order;
//  * `idle` is high when no frame is being processed (all its outputs have left).
// No combinational path runs from in_* to out_* or in_ready, so a driver may sample both
// before it drives the next frame. The decision (ACCEPTED / REJECTED) of a NEW_ORDER is on
// out_data in the first clock after the edge that took it, unless expiries come first.
//
// The RTL assumes well-formed inbound frames (the software port decodes and refuses bad ones
// before they reach the kernel). Symbols live in a CAM of NSYM entries, allocated by the first
// REF_PRICE or LIMITS frame of a symbol; a symbol beyond NSYM is never allocated, so its orders
// fail MAX_QTY (fail closed) where the model, which has no such limit, would check them.
module order_kernel #(
    parameter N = 8,       // order table slots
    parameter NSYM = 8     // symbol table entries (limits, reference price, position, token bucket)
) (
    input  wire         clk,
    input  wire         rst,
    input  wire         in_valid,
    output wire         in_ready,
    input  wire [511:0] in_data,
    output wire         out_valid,     // lane 0
    output wire [511:0] out_data,
    output wire         out_valid2,    // lane 1: the second frame of a pair, after lane 0 (only with out_valid)
    output wire [511:0] out_data2,
    input  wire         out_ready,     // takes both lanes
    output wire         idle
);
    localparam SB = (N > 1) ? $clog2(N) : 1;
    localparam YB = (NSYM > 1) ? $clog2(NSYM) : 1;
    localparam W = 140;  // wide signed arithmetic: every product and sum of the model fits exactly

    localparam [7:0] T_NEW = 8'h01, T_AMEND = 8'h02, T_CANCEL = 8'h03, T_ACK = 8'h04, T_FILL = 8'h05,
                     T_VREJ = 8'h06, T_REF = 8'h07, T_LIMITS = 8'h08, T_KILL = 8'h09, T_TICK = 8'h0A,
                     T_VCANC = 8'h0B, T_ACCEPTED = 8'h81, T_REJECTED = 8'h82, T_SUBMIT = 8'h83,
                     T_AMEND_V = 8'h84, T_CANCEL_V = 8'h85, T_STATE = 8'h86, T_EXPIRED = 8'h87;
    localparam [7:0] R_KILL = 8'd1, R_DUP = 8'd2, R_FULL = 8'd3, R_INVALID = 8'd4, R_MAXQTY = 8'd5,
                     R_NOTIONAL = 8'd6, R_BAND = 8'd7, R_POSITION = 8'd8, R_RATE = 8'd9, R_UNKNOWN = 8'd10,
                     R_OVERFILL = 8'd11, R_BADSTATE = 8'd12;
    localparam [2:0] S_PENDING = 3'd1, S_SUBMITTED = 3'd2, S_PARTIAL = 3'd3, S_FILLED = 3'd4,
                     S_CANCELLED = 3'd5, S_REJECTED = 3'd6, S_EXPIRED = 3'd7;
    localparam [1:0] F_IDLE = 2'd0, F_EXEC = 2'd1, F_EXP3 = 2'd2, F_KILL = 2'd3;

    function signed [W-1:0] sx;  // sign-extend an i64
        input [63:0] v;
        sx = {{(W-64){v[63]}}, v};
    endfunction

    function signed [W-1:0] zx;  // zero-extend a u64
        input [63:0] v;
        zx = {{(W-64){1'b0}}, v};
    endfunction

    // ------------------------------------------------------------ state
    reg [1:0]    fsm;
    reg [511:0]  f;           // the inbound frame being processed
    reg [63:0]   now;         // kernel time (ns): the largest ts seen
    reg          kill;
    reg [SB-1:0] e_slot;      // slot being expired (its EXPIRED frame is next)

    // order table (one array per column) and symbol table
    reg [N-1:0]  o_valid, o_buy, o_mkt;
    reg [63:0]   o_cid [0:N-1];
    reg [63:0]   o_price [0:N-1];
    reg [63:0]   o_qty [0:N-1];
    reg [63:0]   o_filled [0:N-1];
    reg [63:0]   o_deadline [0:N-1];
    reg [15:0]   o_sym [0:N-1];
    reg [2:0]    o_state [0:N-1];
    // symbol table
    reg [NSYM-1:0] s_valid, s_haslim;
    reg [15:0]   s_id [0:NSYM-1];
    reg [63:0]   s_maxqty [0:NSYM-1];
    reg [63:0]   s_maxnot [0:NSYM-1];
    reg [63:0]   s_band [0:NSYM-1];
    reg [63:0]   s_plim [0:NSYM-1];
    reg [63:0]   s_interval [0:NSYM-1];
    reg [63:0]   s_last [0:NSYM-1];
    reg [63:0]   s_ref [0:NSYM-1];
    reg signed [W-1:0] s_cap [0:NSYM-1];    // rate_burst * rate_interval_ns
    reg signed [W-1:0] s_level [0:NSYM-1];  // token bucket level (ns)
    reg signed [W-1:0] s_pos [0:NSYM-1];    // position (lots)

    // ------------------------------------------------------------ frame fields
    wire [7:0]  f_type = f[7:0];
    wire [7:0]  f_b1   = f[15:8];
    wire [7:0]  f_b2   = f[23:16];
    wire [15:0] f_sym  = f[63:48];
    wire [63:0] f_w0   = f[127:64];
    wire [63:0] f_w1   = f[191:128];
    wire [63:0] f_w2   = f[255:192];
    wire [63:0] f_w3   = f[319:256];
    wire [63:0] f_w4   = f[383:320];
    wire [63:0] f_w5   = f[447:384];
    wire [63:0] f_w6   = f[511:448];
    wire [7:0]  in_type = in_data[7:0];
    wire [63:0] in_ts   = in_data[191:128];
    wire in_has_ts = (in_type == T_NEW) || (in_type == T_AMEND) || (in_type == T_CANCEL) || (in_type == T_TICK);
    wire sweep_en  = (f_type == T_NEW) || (f_type == T_AMEND) || (f_type == T_CANCEL) || (f_type == T_TICK);

    // ------------------------------------------------------------ parallel lookups over the table
    integer i;
    reg          hit;       reg [SB-1:0] hs;   // CAM: the open order with client id f_w0
    reg          free_any;  reg [SB-1:0] fs;   // lowest free slot
    reg          exp_any;   reg [SB-1:0] es;   // lowest expired slot
    reg          open_any;  reg [SB-1:0] os;   // lowest open slot
    always @* begin
        hit = 1'b0; hs = {SB{1'b0}}; free_any = 1'b0; fs = {SB{1'b0}};
        exp_any = 1'b0; es = {SB{1'b0}}; open_any = 1'b0; os = {SB{1'b0}};
        for (i = N - 1; i >= 0; i = i - 1) begin
            if (o_valid[i] && o_cid[i] == f_w0) begin hit = 1'b1; hs = i; end
            if (!o_valid[i]) begin free_any = 1'b1; fs = i; end
            if (o_valid[i] && o_deadline[i] != 64'd0 && o_deadline[i] <= now) begin
                exp_any = 1'b1; es = i;
            end
            if (o_valid[i]) begin open_any = 1'b1; os = i; end
        end
    end

    // the hit order's fields (AMEND / CANCEL / venue frames)
    wire [15:0] h_sym    = o_sym[hs];
    wire        h_buy    = o_buy[hs];
    wire        h_mkt    = o_mkt[hs];
    wire [63:0] h_price  = o_price[hs];
    wire [63:0] h_qty    = o_qty[hs];
    wire [63:0] h_filled = o_filled[hs];
    wire [2:0]  h_state  = o_state[hs];
    wire [63:0] h_cid    = o_cid[hs];
    // the slot being expired / killed
    wire [15:0] e_sym    = o_sym[e_slot];
    wire [63:0] e_cid    = o_cid[e_slot];
    wire [63:0] e_filled = o_filled[e_slot];
    wire open_two = (o_valid & (o_valid - 1'b1)) != {N{1'b0}};  // two or more open orders
    // the slot of a CANCEL_TO_VENUE + STATE_CHANGE pair: expiring, cancelled, or swept by the kill switch
    wire sweep_now = (fsm == F_EXEC) && sweep_en && exp_any;
    wire [SB-1:0] px = sweep_now ? es : (fsm == F_EXEC && f_type == T_CANCEL) ? hs : os;
    wire [15:0] p_sym    = o_sym[px];
    wire [63:0] p_cid    = o_cid[px];
    wire [63:0] p_filled = o_filled[px];
    wire [2:0]  p_state  = o_state[px];

    // symbol CAM: the key is the order's symbol for AMEND / VENUE_FILL, else the frame's
    wire [15:0] key = (f_type == T_AMEND || f_type == T_FILL) ? h_sym : f_sym;
    integer j;
    reg          shit;  reg [YB-1:0] ss;
    reg          sfree; reg [YB-1:0] sf;
    always @* begin
        shit = 1'b0; ss = {YB{1'b0}}; sfree = 1'b0; sf = {YB{1'b0}};
        for (j = NSYM - 1; j >= 0; j = j - 1) begin
            if (s_valid[j] && s_id[j] == key) begin shit = 1'b1; ss = j; end
            if (!s_valid[j]) begin sfree = 1'b1; sf = j; end
        end
    end
    wire [63:0] l_maxqty   = shit ? s_maxqty[ss]   : 64'd0;
    wire [63:0] l_maxnot   = shit ? s_maxnot[ss]   : 64'd0;
    wire [63:0] l_band     = shit ? s_band[ss]     : 64'd0;
    wire [63:0] l_plim     = shit ? s_plim[ss]     : 64'd0;
    wire [63:0] l_interval = shit ? s_interval[ss] : 64'd0;
    wire [63:0] l_ref      = shit ? s_ref[ss]      : 64'd0;
    wire [63:0] l_last     = shit ? s_last[ss]     : 64'd0;
    wire signed [W-1:0] l_cap   = shit ? s_cap[ss]   : {W{1'b0}};
    wire signed [W-1:0] l_level = shit ? s_level[ss] : {W{1'b0}};
    wire signed [W-1:0] l_pos   = shit ? s_pos[ss]   : {W{1'b0}};

    // ------------------------------------------------------------ pre-trade risk (checks 5..9)
    wire is_amend = (f_type == T_AMEND);
    // AMEND: price 0 / qty 0 keep the order's value
    wire [63:0] a_price = (f_w2 != 64'd0) ? f_w2 : h_price;
    wire [63:0] a_qty   = (f_w3 != 64'd0) ? f_w3 : h_qty;
    wire [63:0] r_price = is_amend ? a_price : f_w2;
    wire [63:0] r_qty   = is_amend ? a_qty : f_w3;
    wire        r_buy   = is_amend ? h_buy : (f_b1 == 8'd1);
    wire        r_mkt   = is_amend ? h_mkt : (f_b2 == 8'd1);
    wire [15:0] r_sym   = is_amend ? h_sym : f_sym;
    wire signed [W-1:0] r_rem = is_amend ? (sx(a_qty) - sx(h_filled)) : sx(f_w3);

    // open remaining quantity on the same symbol and side (the amended order itself excluded)
    reg signed [W-1:0] same;
    integer k;
    always @* begin
        same = {W{1'b0}};
        for (k = 0; k < N; k = k + 1)
            if (o_valid[k] && o_sym[k] == r_sym && o_buy[k] == r_buy && !(is_amend && k == hs))
                same = same + (sx(o_qty[k]) - sx(o_filled[k]));
    end

    wire signed [W-1:0] ref_w     = sx(l_ref);
    wire signed [W-1:0] eff_price = r_mkt ? ref_w : sx(r_price);
    wire signed [W-1:0] notional  = sx(r_qty) * eff_price;
    wire signed [W-1:0] pdiff     = sx(r_price) - ref_w;
    wire signed [W-1:0] pabs      = pdiff[W-1] ? -pdiff : pdiff;
    wire signed [W-1:0] band_lhs  = pabs * 10000;
    wire signed [W-1:0] band_rhs  = sx(l_band) * ref_w;
    wire signed [W-1:0] exposure  = r_buy ? (l_pos + same + r_rem) : (same + r_rem - l_pos);
    wire signed [W-1:0] lvl_sum   = l_level + zx(now - l_last);  // refilled by the elapsed event time
    wire signed [W-1:0] lvl_ref   = (lvl_sum < l_cap) ? lvl_sum : l_cap;
    wire rate_on = (l_interval != 64'd0);

    wire fail_qty  = sx(r_qty) > sx(l_maxqty);
    wire fail_not  = notional > sx(l_maxnot);
    wire fail_band = (ref_w <= 0) || (!r_mkt && band_lhs > band_rhs);
    wire fail_pos  = exposure > sx(l_plim);
    wire fail_rate = rate_on && (lvl_ref < zx(l_interval));
    wire reach_rate = !fail_qty && !fail_not && !fail_band && !fail_pos && rate_on;
    wire [7:0] risk_reason = fail_qty ? R_MAXQTY : fail_not ? R_NOTIONAL : fail_band ? R_BAND
                           : fail_pos ? R_POSITION : fail_rate ? R_RATE : 8'd0;

    // NEW_ORDER checks 1..4
    wire n_invalid = ($signed(f_w3) <= 0) || (f_b2 == 8'd2 && $signed(f_w2) <= 0) || (f_b2 == 8'd1 && f_w2 != 64'd0)
                     || (f_w4 != 64'd0 && f_w4 <= now);
    wire [7:0] n_reason = kill ? R_KILL : hit ? R_DUP : !free_any ? R_FULL : n_invalid ? R_INVALID : risk_reason;
    // AMEND checks
    wire a_invalid = $signed(f_w2) < 0 || $signed(f_w3) < 0 || (f_w2 == 64'd0 && f_w3 == 64'd0)
                     || (h_mkt && f_w2 != 64'd0) || ($signed(a_qty) <= $signed(h_filled));
    wire [7:0] a_reason = kill ? R_KILL : !hit ? R_UNKNOWN : a_invalid ? R_INVALID : risk_reason;
    wire risk_reached = (f_type == T_NEW) ? (!kill && !hit && free_any && !n_invalid)
                                          : (!kill && hit && !a_invalid);
    // VENUE_FILL
    wire [64:0] fill_total = {1'b0, h_filled} + {1'b0, f_w3};
    wire fill_bad  = ($signed(f_w3) <= 0) || ($signed(f_w2) <= 0);
    wire fill_over = fill_total > {1'b0, h_qty};
    wire fill_full = fill_total[63:0] == h_qty;
    // LIMITS: the new capacity and the level refilled to now under it
    wire signed [W-1:0] new_cap = sx(f_w5) * zx(f_w6);
    wire signed [W-1:0] lim_lvl = (lvl_sum < new_cap) ? lvl_sum : new_cap;

    // ------------------------------------------------------------ per-state action
    // Outbound frames are assembled once from their fields; each state only picks the fields.
    // Lane 0 carries every single frame and the first of a pair; lane 1 the second of a pair
    // (SUBMIT_TO_VENUE after ACCEPTED, AMEND_TO_VENUE after ACCEPTED, STATE_CHANGE after CANCEL_TO_VENUE).
    reg        ov;
    reg [7:0]  ot, ob1, ob2;
    reg [15:0] osym;
    reg [63:0] ow0, ow1, ow2, ow3, ow4;
    reg        ov2;
    reg [1:0]  pair;        // lane 1: 1 SUBMIT_TO_VENUE, 2 AMEND_TO_VENUE, 3 STATE_CHANGE(px -> pnew)
    reg [2:0]  pnew;
    reg        last;        // this cycle ends the frame's answer
    reg [1:0]  nfsm;
    reg [7:0]  rej;         // nonzero: this cycle emits REJECTED(rej)
    reg        sweeping;    // EXEC emits the CANCEL_TO_VENUE + STATE_CHANGE of an expired order
    always @* begin
        ov = 1'b0; ot = 8'd0; ob1 = 8'd0; ob2 = 8'd0; osym = 16'd0;
        ow0 = 64'd0; ow1 = 64'd0; ow2 = 64'd0; ow3 = 64'd0; ow4 = 64'd0;
        ov2 = 1'b0; pair = 2'd0; pnew = 3'd0;
        last = 1'b0; nfsm = F_IDLE; rej = 8'd0; sweeping = 1'b0;
        case (fsm)
            F_IDLE: last = 1'b1;
            F_EXEC: begin
                if (sweep_now) begin
                    sweeping = 1'b1;
                    ov = 1'b1; ot = T_CANCEL_V; osym = p_sym; ow0 = p_cid;
                    ov2 = 1'b1; pair = 2'd3; pnew = S_EXPIRED;
                    nfsm = F_EXP3;
                end else begin
                    last = 1'b1;
                    case (f_type)
                        T_NEW: if (n_reason != 8'd0) rej = n_reason;
                               else begin
                                   ov = 1'b1; ot = T_ACCEPTED; ob1 = T_NEW; ow0 = f_w0; ow1 = fs; ow2 = now;
                                   ov2 = 1'b1; pair = 2'd1;
                               end
                        T_AMEND: if (a_reason != 8'd0) rej = a_reason;
                                 else begin
                                     ov = 1'b1; ot = T_ACCEPTED; ob1 = T_AMEND; ow0 = f_w0; ow1 = hs; ow2 = now;
                                     ov2 = 1'b1; pair = 2'd2;
                                 end
                        T_CANCEL: if (!hit) rej = R_UNKNOWN;
                                  else begin
                                      ov = 1'b1; ot = T_CANCEL_V; osym = h_sym; ow0 = h_cid;
                                      ov2 = 1'b1; pair = 2'd3; pnew = S_CANCELLED;
                                  end
                        T_ACK: if (!hit) rej = R_UNKNOWN;
                               else if (h_state == S_PENDING) begin
                                   ov = 1'b1; ot = T_STATE; ob1 = S_PENDING; ob2 = S_SUBMITTED; osym = h_sym;
                                   ow0 = h_cid; ow1 = hs; ow2 = h_filled;
                               end
                        T_FILL: if (!hit) rej = R_UNKNOWN;
                                else if (fill_bad) rej = R_INVALID;
                                else if (fill_over) rej = R_OVERFILL;
                                else begin
                                    ov = 1'b1; ot = T_STATE; ob1 = h_state; ob2 = fill_full ? S_FILLED : S_PARTIAL;
                                    osym = h_sym; ow0 = h_cid; ow1 = hs; ow2 = fill_total[63:0]; ow3 = f_w3;
                                    ow4 = f_w2;
                                end
                        T_VREJ: if (!hit) rej = R_UNKNOWN;
                                else if (h_state == S_PARTIAL) rej = R_BADSTATE;
                                else begin
                                    ov = 1'b1; ot = T_STATE; ob1 = h_state; ob2 = S_REJECTED; osym = h_sym;
                                    ow0 = h_cid; ow1 = hs; ow2 = h_filled;
                                end
                        T_VCANC: if (!hit) rej = R_UNKNOWN;
                                 else begin
                                     ov = 1'b1; ot = T_STATE; ob1 = h_state; ob2 = S_CANCELLED; osym = h_sym;
                                     ow0 = h_cid; ow1 = hs; ow2 = h_filled;
                                 end
                        T_KILL: if (f_b1[0] && open_any) begin
                                    ov = 1'b1; ot = T_CANCEL_V; osym = p_sym; ow0 = p_cid;
                                    ov2 = 1'b1; pair = 2'd3; pnew = S_CANCELLED;
                                    if (open_two) begin last = 1'b0; nfsm = F_KILL; end
                                end
                        default: ;  // REF_PRICE, LIMITS, TICK, KILL_SWITCH off: no outbound frame
                    endcase
                    if (rej != 8'd0) begin
                        ov = 1'b1; ot = T_REJECTED; ob1 = f_type; ob2 = rej; ow0 = f_w0; ow1 = now;
                    end
                end
            end
            F_EXP3: begin
                ov = 1'b1; nfsm = F_EXEC;
                ot = T_EXPIRED; osym = e_sym; ow0 = e_cid; ow1 = now; ow2 = e_filled;
            end
            F_KILL: begin
                ov = 1'b1; ot = T_CANCEL_V; osym = p_sym; ow0 = p_cid;
                ov2 = 1'b1; pair = 2'd3; pnew = S_CANCELLED;
                if (open_two) nfsm = F_KILL; else last = 1'b1;
            end
            default: last = 1'b1;
        endcase
    end

    assign out_valid = ov;
    assign out_data = {64'd0, 64'd0, ow4, ow3, ow2, ow1, ow0, osym, 16'd0, 8'd0, ob2, ob1, ot};
    assign out_valid2 = ov2;
    assign out_data2 =
        (pair == 2'd1) ? {128'd0, 64'd0, f[319:192], 64'd0, f[127:8], T_SUBMIT}  // NEW_ORDER minus ts, deadline
      : (pair == 2'd2) ? {192'd0, a_qty, a_price, 64'd0, h_cid, h_sym, 40'd0, T_AMEND_V}
      : (pair == 2'd3) ? {128'd0, 64'd0, 64'd0, p_filled, {{(64-SB){1'b0}}, px}, p_cid, p_sym, 16'd0, 8'd0,
                          5'd0, pnew, 5'd0, p_state, T_STATE}
      : 512'd0;
    wire adv = !ov || out_ready;
    assign in_ready = (fsm == F_IDLE) || (last && adv);
    assign idle = (fsm == F_IDLE);
    wire take = in_valid && in_ready;

    // ------------------------------------------------------------ write enables (all gated by adv)
    wire exec = adv && (fsm == F_EXEC) && !sweeping;
    wire ld_new   = exec && f_type == T_NEW && n_reason == 8'd0;                      // slot fs takes the order
    wire upd_px   = exec && f_type == T_AMEND && a_reason == 8'd0;                    // slot hs price / qty
    wire upd_fill = exec && f_type == T_FILL && hit && !fill_bad && !fill_over;       // slot hs filled / state
    wire upd_ack  = exec && f_type == T_ACK && hit && h_state == S_PENDING;
    wire free_h   = exec && hit && ((f_type == T_CANCEL) || (f_type == T_VCANC)
                                    || (f_type == T_VREJ && h_state != S_PARTIAL) || (upd_fill && fill_full));
    wire free_e   = adv && fsm == F_EXP3;
    wire free_p   = adv && ((exec && f_type == T_KILL && f_b1[0] && open_any) || fsm == F_KILL);  // slot px
    wire bucket_we = exec && (f_type == T_NEW || f_type == T_AMEND) && risk_reached && reach_rate && shit;
    wire pos_we   = upd_fill && shit;
    wire ref_we   = exec && f_type == T_REF && (shit || sfree);
    wire lim_we   = exec && f_type == T_LIMITS && (shit || sfree);
    wire [YB-1:0] sidx = shit ? ss : sf;   // the entry a REF_PRICE / LIMITS frame writes (allocated if new)
    wire signed [W-1:0] bucket_lvl = fail_rate ? lvl_ref : lvl_ref - zx(l_interval);
    wire signed [W-1:0] pos_new = h_buy ? l_pos + sx(f_w3) : l_pos - sx(f_w3);

    // ------------------------------------------------------------ control registers
    always @(posedge clk) begin
        if (rst) begin
            fsm <= F_IDLE; now <= 64'd0; kill <= 1'b0; f <= 512'd0; e_slot <= {SB{1'b0}};
        end else begin
            if (adv) begin
                if (sweeping) e_slot <= es;
                if (exec && f_type == T_KILL) kill <= f_b1[0];
                if (fsm != F_IDLE) fsm <= nfsm;
            end
            if (take) begin
                f <= in_data;
                fsm <= F_EXEC;
                if (in_has_ts && in_ts > now) now <= in_ts;
            end
        end
    end

    // ------------------------------------------------------------ order table slots
    genvar g;
    generate
        for (g = 0; g < N; g = g + 1) begin : slot
            always @(posedge clk) begin
                if (rst) o_valid[g] <= 1'b0;
                else if (ld_new && fs == g) begin
                    o_valid[g] <= 1'b1; o_buy[g] <= (f_b1 == 8'd1); o_mkt[g] <= (f_b2 == 8'd1);
                    o_cid[g] <= f_w0; o_sym[g] <= f_sym; o_price[g] <= f_w2;
                    o_qty[g] <= f_w3; o_filled[g] <= 64'd0; o_deadline[g] <= f_w4;
                    o_state[g] <= S_PENDING;
                end else begin
                    if ((free_h && hs == g) || (free_e && e_slot == g) || (free_p && px == g)) o_valid[g] <= 1'b0;
                    if (upd_px && hs == g) begin
                        o_price[g] <= a_price; o_qty[g] <= a_qty;
                    end
                    if (upd_fill && hs == g) begin
                        o_filled[g] <= fill_total[63:0];
                        o_state[g] <= fill_full ? S_FILLED : S_PARTIAL;
                    end
                    if (upd_ack && hs == g) o_state[g] <= S_SUBMITTED;
                end
            end
        end
    endgenerate

    // ------------------------------------------------------------ symbol table entries
    genvar y;
    generate
        for (y = 0; y < NSYM; y = y + 1) begin : sym
            always @(posedge clk) begin
                if (rst) s_valid[y] <= 1'b0;
                else begin
                    if ((ref_we || lim_we) && sidx == y && !shit) begin  // allocate: limits 0 (fail closed)
                        s_valid[y] <= 1'b1; s_id[y] <= f_sym; s_haslim[y] <= 1'b0;
                        s_maxqty[y] <= 64'd0; s_maxnot[y] <= 64'd0; s_band[y] <= 64'd0;
                        s_plim[y] <= 64'd0; s_interval[y] <= 64'd0; s_last[y] <= 64'd0;
                        s_ref[y] <= 64'd0; s_cap[y] <= {W{1'b0}}; s_level[y] <= {W{1'b0}};
                        s_pos[y] <= {W{1'b0}};
                    end
                    if (ref_we && sidx == y) s_ref[y] <= f_w2;
                    if (lim_we && sidx == y) begin
                        s_haslim[y] <= 1'b1;
                        s_maxqty[y] <= f_w1; s_maxnot[y] <= f_w2; s_band[y] <= f_w3;
                        s_plim[y] <= f_w4; s_interval[y] <= f_w6; s_cap[y] <= new_cap;
                        // a new bucket starts full; an existing one is refilled to now under the new cap
                        s_level[y] <= (shit && s_haslim[y]) ? lim_lvl : new_cap;
                        s_last[y] <= now;
                    end
                    if (bucket_we && ss == y) begin
                        s_level[y] <= bucket_lvl; s_last[y] <= now;
                    end
                    if (pos_we && ss == y) s_pos[y] <= pos_new;
                end
            end
        end
    endgenerate
endmodule
