`timescale 1ns/1ps
// Allele order kernel, pipelined: the RTL twin of kernel/orders/kernel.py (the reference model).
//
// One 64-byte frame in (in_data, little-endian: byte k of the frame is in_data[8k+7:8k]) with a
// valid/ready handshake. Outbound frames leave in beats: a beat (out_valid, taken with out_ready)
// carries out_n = 0, 1 or 2 frames (lane 0 out_data, then lane 1 out_data2) and out_eor marks the
// beat that ends the answer of one inbound frame. Answers leave in the order the frames were
// taken, so the k-th out_eor closes the answer of the k-th inbound frame (a frame without any
// outbound frame gets one beat with out_n = 0 and out_eor = 1). The frame layout is defined once,
// in kernel/orders/frames.py; this file implements that table.
//
// Pipeline (a frame advances one stage per clock unless held):
//   take  the frame is registered into stage A; the client-id CAM over the order table, the
//         expiry vector (open slots with 0 < deadline <= the frame's time), the symbol CAM and
//         the magnitudes of the frame's product operands are computed from in_data and
//         registered with it.
//   A     operand selection and the 16x16-bit partial products of the frame's 64x64 products
//         (sign-magnitude; |ref| and |band| are kept per symbol, an AMEND latches its operands
//         from the order table in one extra clock).
//   B     the partial-product sums, price-band left side, rate-limit thresholds (now - interval,
//         now - capacity), an AMEND's headroom delta (old remaining - new remaining).
//   C     commit: the checks that read state the frames ahead may just have changed (duplicate id,
//         free slot, position headroom, token bucket), the state updates, and the outbound beat
//         into a 2-entry output FIFO (so in_ready never depends on out_ready combinationally).
// Hazards: order-table changes made by the frame in C (a new order, a freed slot) correct the CAM
// and expiry vectors of the frames behind it in the same clock (forwarding); position headroom and
// the token bucket are read in C itself, so back-to-back orders on one symbol see each other.
// AMEND, REF_PRICE and LIMITS change what stage A/B precompute from (an order's price / qty, the
// symbol configuration): such a frame waits in A until the stages ahead are empty, and the frame
// behind it waits in A until it has committed (a few bubbles; everything else flows 1 per clock).
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
    output wire         out_valid,     // a beat is on the output
    output wire [1:0]   out_n,         // frames in the beat: lane 0 (out_data), then lane 1 (out_data2)
    output wire         out_eor,       // the beat ends the answer of one inbound frame
    output wire [511:0] out_data,
    output wire [511:0] out_data2,
    input  wire         out_ready,
    output wire         idle
);
    localparam SB = (N > 1) ? $clog2(N) : 1;
    localparam YB = (NSYM > 1) ? $clog2(NSYM) : 1;
    localparam W = 140;  // wide signed arithmetic: every sum of the model fits exactly

    localparam [7:0] T_NEW = 8'h01, T_AMEND = 8'h02, T_CANCEL = 8'h03, T_ACK = 8'h04, T_FILL = 8'h05,
                     T_VREJ = 8'h06, T_REF = 8'h07, T_LIMITS = 8'h08, T_KILL = 8'h09, T_TICK = 8'h0A,
                     T_VCANC = 8'h0B, T_ACCEPTED = 8'h81, T_REJECTED = 8'h82, T_SUBMIT = 8'h83,
                     T_AMEND_V = 8'h84, T_CANCEL_V = 8'h85, T_STATE = 8'h86, T_EXPIRED = 8'h87;
    localparam [7:0] R_KILL = 8'd1, R_DUP = 8'd2, R_FULL = 8'd3, R_INVALID = 8'd4, R_MAXQTY = 8'd5,
                     R_NOTIONAL = 8'd6, R_BAND = 8'd7, R_POSITION = 8'd8, R_RATE = 8'd9, R_UNKNOWN = 8'd10,
                     R_OVERFILL = 8'd11, R_BADSTATE = 8'd12;
    localparam [2:0] S_PENDING = 3'd1, S_SUBMITTED = 3'd2, S_PARTIAL = 3'd3, S_FILLED = 3'd4,
                     S_CANCELLED = 3'd5, S_REJECTED = 3'd6, S_EXPIRED = 3'd7;
    localparam [1:0] F_EXEC = 2'd0, F_EXP3 = 2'd1, F_KILL = 2'd2;

    function signed [W-1:0] sx;  // sign-extend an i64
        input [63:0] v;
        sx = {{(W-64){v[63]}}, v};
    endfunction

    function signed [W-1:0] zx;  // zero-extend a u64
        input [63:0] v;
        zx = {{(W-64){1'b0}}, v};
    endfunction

    function [63:0] mag64;  // |v| of an i64 as a u64 (|-2^63| = 2^63 fits)
        input [63:0] v;
        mag64 = v[63] ? (~v + 64'd1) : v;
    endfunction

    function [SB-1:0] enc;  // one-hot (or zero) -> index
        input [N-1:0] oh;
        integer q;
        begin
            enc = {SB{1'b0}};
            for (q = 0; q < N; q = q + 1) if (oh[q]) enc = enc | q[SB-1:0];
        end
    endfunction

    function [N-1:0] lowest;  // the lowest set bit, one-hot
        input [N-1:0] v;
        lowest = v & (~v + 1'b1);
    endfunction

    function ser;  // frames that run alone (they change what stages A/B precompute from)
        input [7:0] t;
        ser = (t == T_AMEND) || (t == T_REF) || (t == T_LIMITS);
    endfunction

    function has_ts;
        input [7:0] t;
        has_ts = (t == T_NEW) || (t == T_AMEND) || (t == T_CANCEL) || (t == T_TICK);
    endfunction

    // ------------------------------------------------------------ architectural state
    reg [63:0]   now;         // kernel time (ns): the largest ts taken so far
    reg          kill;
    // order table (one array per column)
    reg [N-1:0]  o_valid, o_buy, o_mkt;
    reg [63:0]   o_cid [0:N-1];
    reg [63:0]   o_price [0:N-1];
    reg [63:0]   o_qty [0:N-1];
    reg [63:0]   o_filled [0:N-1];
    reg [63:0]   o_rem [0:N-1];       // qty - filled
    reg [63:0]   o_deadline [0:N-1];
    reg [15:0]   o_sym [0:N-1];
    reg [YB-1:0] o_y [0:N-1];         // the order's symbol entry
    reg [2:0]    o_state [0:N-1];
    // symbol table
    reg [NSYM-1:0] s_valid, s_haslim, s_capok, s_brneg;
    reg [15:0]   s_id [0:NSYM-1];
    reg [63:0]   s_maxqty [0:NSYM-1];
    reg [63:0]   s_maxnot [0:NSYM-1];
    reg [63:0]   s_nmaxnot [0:NSYM-1];          // -max_notional (as u64), for negative notionals
    reg [63:0]   s_band [0:NSYM-1];
    reg [63:0]   s_plim [0:NSYM-1];
    reg [63:0]   s_interval [0:NSYM-1];
    reg [63:0]   s_ref [0:NSYM-1];
    reg [63:0]   s_refm [0:NSYM-1];             // |ref|, |band_bps|: product operands ready in A
    reg [63:0]   s_bandm [0:NSYM-1];
    reg [127:0]  s_brmag [0:NSYM-1];            // |band_bps * ref| (sign in s_brneg)
    reg signed [W-1:0] s_cap [0:NSYM-1];        // rate_burst * rate_interval_ns
    reg signed [W-1:0] s_cmi [0:NSYM-1];        // capacity - interval
    // Token bucket as its empty time e = last - level: level(now) = min(cap, now - e), so a check
    // is one compare (e <= now - interval) and the update e' = max(now - cap, e) (+ interval if
    // a token is taken) is exactly the model's min(cap, level + now - last) (- interval).
    reg signed [W-1:0] s_e [0:NSYM-1];
    // Position headroom per side: hb = limit - (position + open buy remaining),
    // hs = limit - (open sell remaining - position). An order fails POSITION_LIMIT iff its
    // remaining exceeds its side's headroom; every state change adjusts one headroom.
    reg signed [W-1:0] s_hb [0:NSYM-1];
    reg signed [W-1:0] s_hs [0:NSYM-1];

    // ------------------------------------------------------------ pipeline registers
    reg          vA, vB, vC;
    reg [511:0]  fA, fB, fC;
    reg [63:0]   nowA, nowB, nowC;
    reg [N-1:0]  mA, mB, mC;        // one-hot: the open order with the frame's client id
    reg [N-1:0]  eA, eB, eC;        // open orders expired at the frame's time
    reg [YB-1:0] yA, yB, yC;        // symbol entry (NEW / REF / LIMITS: the frame's; AMEND: the order's)
    reg [63:0]   aw2m, aw3m, aw5m;  // |w2|, |w3|, |w5| of the frame in A (computed at take)
    reg          yhA, yhB, yhC;     // the symbol has an entry

    // ------------------------------------------------------------ stage C commit effects (forwarding)
    // Driven by the commit logic below; they correct the vectors of every frame behind it.
    wire         alloc_en;          // slot fs_oh takes the order in C
    wire [N-1:0] fs_oh;
    wire [N-1:0] free_mask;         // slots freed in C this clock
    wire         symalloc_en;       // symbol entry sf is allocated for fC's symbol
    wire [YB-1:0] sf;
    wire         stepC;             // C performs one step this clock
    wire         advC;              // the frame in C finishes this clock
    wire [63:0]  c_cid = fC[127:64];
    wire [63:0]  c_dl  = fC[383:320];
    wire [15:0]  c_sym = fC[63:48];

    wire [N-1:0] keep  = ~free_mask;
    wire [N-1:0] amask = alloc_en ? fs_oh : {N{1'b0}};

    function [N-1:0] fix_m;   // a CAM vector after C's commit: freed slots out, the new order in if same id
        input [N-1:0] m, keep_, amask_;
        input [63:0] cid, ccid;
        fix_m = (m & keep_) | ((cid == ccid) ? amask_ : {N{1'b0}});
    endfunction

    function [N-1:0] fix_e;   // an expiry vector after C's commit: the new order in if expired at t
        input [N-1:0] e, keep_, amask_;
        input [63:0] t, cdl;
        fix_e = (e & keep_) | ((cdl != 64'd0 && cdl <= t) ? amask_ : {N{1'b0}});
    endfunction

    // ------------------------------------------------------------ take: lookups on in_data
    wire [7:0]  in_type = in_data[7:0];
    wire [63:0] in_ts   = in_data[191:128];
    wire [63:0] in_cid  = in_data[127:64];
    wire [15:0] in_sym  = in_data[63:48];
    wire [63:0] in_now  = (has_ts(in_type) && in_ts > now) ? in_ts : now;
    integer i1, i2, i3, i4;
    reg [N-1:0] cam_in, exp_in;
    always @* begin
        for (i1 = 0; i1 < N; i1 = i1 + 1) begin
            cam_in[i1] = o_valid[i1] && o_cid[i1] == in_cid;
            exp_in[i1] = o_valid[i1] && o_deadline[i1] != 64'd0 && o_deadline[i1] <= in_now;
        end
    end
    integer j;
    reg yh_in; reg [YB-1:0] y_in;
    reg sfree; reg [YB-1:0] sfl;
    always @* begin
        yh_in = 1'b0; y_in = {YB{1'b0}}; sfree = 1'b0; sfl = {YB{1'b0}};
        for (j = NSYM - 1; j >= 0; j = j - 1) begin
            if (s_valid[j] && s_id[j] == in_sym) begin yh_in = 1'b1; y_in = j; end
            if (!s_valid[j]) begin sfree = 1'b1; sfl = j; end
        end
    end
    assign sf = sfl;

    // ------------------------------------------------------------ stage A
    wire [7:0]  a_type = fA[7:0];
    wire [63:0] a_w2 = fA[255:192], a_w3 = fA[319:256], a_w5 = fA[447:384], a_w6 = fA[511:448];
    wire        a_isam = (a_type == T_AMEND);
    // the order of an AMEND (it runs alone: the table is settled when it leaves A)
    reg [63:0] ha_price, ha_qty, ha_filled, ha_rem; reg ha_mkt, ha_buy; reg [YB-1:0] ha_y;
    always @* begin
        ha_price = 64'd0; ha_qty = 64'd0; ha_filled = 64'd0; ha_rem = 64'd0; ha_mkt = 1'b0; ha_buy = 1'b0;
        ha_y = {YB{1'b0}};
        for (i2 = 0; i2 < N; i2 = i2 + 1)
            if (mA[i2]) begin
                ha_price = ha_price | o_price[i2]; ha_qty = ha_qty | o_qty[i2]; ha_filled = ha_filled | o_filled[i2];
                ha_rem = ha_rem | o_rem[i2]; ha_mkt = ha_mkt | o_mkt[i2]; ha_buy = ha_buy | o_buy[i2];
                ha_y = ha_y | o_y[i2];
            end
    end
    wire          ha_yh = mA != {N{1'b0}};
    wire [63:0] am_price = (a_w2 != 64'd0) ? a_w2 : ha_price;   // AMEND: 0 keeps the order's value
    wire [63:0] am_qty   = (a_w3 != 64'd0) ? a_w3 : ha_qty;
    wire [63:0] am_ref   = ha_yh ? s_ref[ha_y] : 64'd0;
    // An AMEND spends one clock in A latching its operands (the table is settled: B and C are
    // empty), so that its products start from registers like everyone else's.
    reg         alat;
    reg [63:0]  lt_price, lt_qty, lt_pm, lt_qm, lt_ref, lt_refm;
    reg [YB-1:0] lt_y;
    reg         lt_yh, lt_mkt;
    wire [YB-1:0] a_y  = a_isam ? lt_y : yA;
    wire          a_yh = a_isam ? lt_yh : yhA;
    wire [63:0] a_ref  = a_isam ? lt_ref : (yhA ? s_ref[yA] : 64'd0);
    wire [63:0] a_refm = a_isam ? lt_refm : (yhA ? s_refm[yA] : 64'd0);
    wire [63:0] a_bandm = yhA ? s_bandm[yA] : 64'd0;
    wire        a_bandn = yhA ? s_band[yA][63] : 1'b0;
    wire        a_mkt    = a_isam ? lt_mkt : (fA[23:16] == 8'd1);
    wire [63:0] a_price  = a_isam ? lt_price : a_w2;
    wire [63:0] a_qty    = a_isam ? lt_qty : a_w3;
    // product 1 (sign-magnitude): NEW / AMEND qty * effective price; REF band * new ref;
    // LIMITS new band * ref
    wire [63:0] m1xm = (a_type == T_REF) ? a_bandm : a_isam ? lt_qm : aw3m;
    wire        m1xn = (a_type == T_REF) ? a_bandn : a_qty[63];
    wire        y_is_ref = (a_type == T_LIMITS) || (a_type != T_REF && a_mkt);
    wire [63:0] m1ym = y_is_ref ? a_refm : a_isam ? lt_pm : aw2m;
    wire        m1yn = y_is_ref ? a_ref[63] : a_price[63];
    // product 2: LIMITS rate_burst * rate_interval_ns (the interval is unsigned)
    wire [63:0] m2xm = aw5m;
    wire [31:0] pp1 [0:15];
    wire [31:0] pp2 [0:15];
    genvar ga, gb;
    generate
        for (ga = 0; ga < 4; ga = ga + 1) begin : ppa
            for (gb = 0; gb < 4; gb = gb + 1) begin : ppb
                assign pp1[4*ga+gb] = m1xm[16*ga +: 16] * m1ym[16*gb +: 16];
                assign pp2[4*ga+gb] = m2xm[16*ga +: 16] * a_w6[16*gb +: 16];
            end
        end
    endgenerate
    wire [64:0] a_pdiff = {a_price[63], a_price} - {a_ref[63], a_ref};   // price - ref, 65-bit signed
    wire [64:0] a_pabs  = a_pdiff[64] ? (~a_pdiff + 65'd1) : a_pdiff;
    // NEW_ORDER check 4 and the AMEND validity check (both from the frame and the settled order)
    wire n_invalid = ($signed(a_w3) <= 0) || (fA[23:16] == 8'd2 && $signed(a_w2) <= 0)
                     || (fA[23:16] == 8'd1 && a_w2 != 64'd0) || (fA[383:320] != 64'd0 && fA[383:320] <= nowA);
    wire am_invalid = $signed(a_w2) < 0 || $signed(a_w3) < 0 || (a_w2 == 64'd0 && a_w3 == 64'd0)
                      || (ha_mkt && a_w2 != 64'd0) || ($signed(am_qty) <= $signed(ha_filled));
    wire [63:0] am_rem = am_qty - ha_filled;        // the amended order's remaining

    // ------------------------------------------------------------ stage B
    reg [31:0]  pp1B [0:15];
    reg [31:0]  pp2B [0:15];
    reg         m1negB, m2negB;
    reg [64:0]  pabsB;
    reg         invB, mktB, buyB;
    reg [63:0]  priceB, qtyB, amremB, hremB;
    reg [127:0] mag1, mag2;
    integer p;
    always @* begin
        mag1 = 128'd0; mag2 = 128'd0;
        for (p = 0; p < 16; p = p + 1) begin
            mag1 = mag1 + ({96'd0, pp1B[p]} << (16 * ((p / 4) + (p % 4))));
            mag2 = mag2 + ({96'd0, pp2B[p]} << (16 * ((p / 4) + (p % 4))));
        end
    end
    wire [78:0] lhsB = {14'd0, pabsB} * 79'd10000;          // |price - ref| * 10000
    wire [63:0] b_interval = yhB ? s_interval[yB] : 64'd0;
    wire signed [W-1:0] b_cap = yhB ? s_cap[yB] : {W{1'b0}};
    wire signed [W-1:0] b_cmi = yhB ? s_cmi[yB] : {W{1'b0}};
    wire signed [W-1:0] thrB  = zx(nowB) - zx(b_interval);  // a token is there iff e <= now - interval
    wire signed [W-1:0] nmcB  = zx(nowB) - b_cap;           // refill floor: e' >= now - cap
    wire signed [W-1:0] nmciB = zx(nowB) - b_cmi;           // the same, a token taken
    // AMEND: its headroom change (the order's own remaining is replaced by the new one); the
    // headroom itself is read in C, after the expiry sweep that comes first
    wire [64:0] amdB = {1'b0, hremB} - {1'b0, amremB};

    // ------------------------------------------------------------ stage C registers
    reg [127:0] mag1C, mag2C;
    reg         m1negC, m2negC;
    reg [78:0]  lhsC;
    reg signed [W-1:0] thrC, nmcC, nmciC;
    reg [64:0]  amdC;
    reg         invC, mktC, buyC;
    reg [63:0]  priceC, qtyC, amremC;
    reg [1:0]   fsm;
    reg [N-1:0] e_oh;          // slot being expired (its EXPIRED frame is next)
    reg         lim2;          // LIMITS: capacity computed, commit next
    reg signed [W-1:0] x_cap;  // LIMITS: the new capacity

    // ------------------------------------------------------------ stage C: lookups
    wire [7:0]  c_type = fC[7:0];
    wire [7:0]  c_b1 = fC[15:8];
    wire [63:0] c_w2 = fC[255:192], c_w3 = fC[319:256], c_w4 = fC[383:320], c_w6 = fC[511:448];
    wire hit = mC != {N{1'b0}};
    reg [63:0] h_filled, h_rem; reg h_buy; reg [15:0] h_sym; reg [2:0] h_state; reg [YB-1:0] h_y;
    always @* begin
        h_filled = 64'd0; h_rem = 64'd0; h_buy = 1'b0; h_sym = 16'd0;
        h_state = 3'd0; h_y = {YB{1'b0}};
        for (i3 = 0; i3 < N; i3 = i3 + 1)
            if (mC[i3]) begin
                h_filled = h_filled | o_filled[i3];
                h_rem = h_rem | o_rem[i3]; h_buy = h_buy | o_buy[i3]; h_sym = h_sym | o_sym[i3];
                h_state = h_state | o_state[i3]; h_y = h_y | o_y[i3];
            end
    end
    wire [SB-1:0] hs = enc(mC);
    wire [N-1:0] free_oh = lowest(~o_valid);
    wire free_any = ~o_valid != {N{1'b0}};
    wire [SB-1:0] fs = enc(free_oh);
    wire [N-1:0] es_oh = lowest(eC);
    wire [N-1:0] os_oh = lowest(o_valid);
    wire open_any = o_valid != {N{1'b0}};
    wire open_two = (o_valid & (o_valid - 1'b1)) != {N{1'b0}};
    wire sweep_now = (fsm == F_EXEC) && has_ts(c_type) && (eC != {N{1'b0}});
    // the slot of a CANCEL_TO_VENUE + STATE_CHANGE pair: expiring, cancelled, or swept by the kill switch
    wire [N-1:0] p_oh = sweep_now ? es_oh : (fsm == F_EXEC && c_type == T_CANCEL) ? mC : os_oh;
    reg [63:0] p_cid, p_filled, p_rem; reg [15:0] p_sym; reg [2:0] p_state; reg p_buy; reg [YB-1:0] p_y;
    reg [63:0] e_cid, e_filled; reg [15:0] e_sym;
    always @* begin
        p_cid = 64'd0; p_filled = 64'd0; p_rem = 64'd0; p_sym = 16'd0; p_state = 3'd0; p_buy = 1'b0;
        p_y = {YB{1'b0}}; e_cid = 64'd0; e_filled = 64'd0; e_sym = 16'd0;
        for (i4 = 0; i4 < N; i4 = i4 + 1) begin
            if (p_oh[i4]) begin
                p_cid = p_cid | o_cid[i4]; p_filled = p_filled | o_filled[i4]; p_rem = p_rem | o_rem[i4];
                p_sym = p_sym | o_sym[i4]; p_state = p_state | o_state[i4]; p_buy = p_buy | o_buy[i4];
                p_y = p_y | o_y[i4];
            end
            if (e_oh[i4]) begin
                e_cid = e_cid | o_cid[i4]; e_filled = e_filled | o_filled[i4]; e_sym = e_sym | o_sym[i4];
            end
        end
    end
    wire [SB-1:0] px = enc(p_oh);

    // the frame's symbol entry (an AMEND's is its order's, found in A); a VENUE_FILL uses h_y
    wire [YB-1:0] cy  = yC;
    wire          cyh = yhC;
    wire [63:0] l_maxqty   = cyh ? s_maxqty[cy] : 64'd0;
    wire [63:0] l_maxnot   = cyh ? s_maxnot[cy] : 64'd0;
    wire [63:0] l_interval = cyh ? s_interval[cy] : 64'd0;
    wire [63:0] l_ref      = cyh ? s_ref[cy] : 64'd0;
    wire [63:0] l_plim     = cyh ? s_plim[cy] : 64'd0;
    wire        l_brneg    = cyh ? s_brneg[cy] : 1'b0;
    wire [127:0] l_brmag   = cyh ? s_brmag[cy] : 128'd0;
    wire        l_capok    = cyh ? s_capok[cy] : 1'b0;
    wire        l_haslim   = cyh ? s_haslim[cy] : 1'b0;
    wire signed [W-1:0] l_e  = cyh ? s_e[cy] : {W{1'b0}};
    wire signed [W-1:0] l_hb = cyh ? s_hb[cy] : {W{1'b0}};
    wire signed [W-1:0] l_hs = cyh ? s_hs[cy] : {W{1'b0}};

    // ------------------------------------------------------------ stage C: pre-trade risk (checks 5..9)
    wire is_amend = (c_type == T_AMEND);
    wire [63:0] nmaxnot = cyh ? s_nmaxnot[cy] : 64'd0;
    wire m1neg = m1negC && (mag1C != 128'd0);
    wire fail_qty  = $signed(qtyC) > $signed(l_maxqty);
    wire fail_not  = m1neg ? (l_maxnot[63] && mag1C < {64'd0, nmaxnot})
                           : (l_maxnot[63] || mag1C > {64'd0, l_maxnot});
    wire fail_band = ($signed(l_ref) <= 0)
                     || (!mktC && ((l_brneg && l_brmag != 128'd0) || {49'd0, lhsC} > l_brmag));
    wire signed [W-1:0] l_hside = buyC ? l_hb : l_hs;
    wire signed [W-1:0] amh = l_hside + {{(W-65){amdC[64]}}, amdC};   // AMEND: headroom after it
    wire fail_pos  = is_amend ? (amh < 0) : (l_hside < zx(qtyC));
    wire rate_on   = (l_interval != 64'd0);
    wire fail_rate = rate_on && (!l_capok || l_e > thrC);
    wire reach_rate = !fail_qty && !fail_not && !fail_band && !fail_pos && rate_on;
    wire [7:0] risk_reason = fail_qty ? R_MAXQTY : fail_not ? R_NOTIONAL : fail_band ? R_BAND
                           : fail_pos ? R_POSITION : fail_rate ? R_RATE : 8'd0;
    wire [7:0] n_reason = kill ? R_KILL : hit ? R_DUP : !free_any ? R_FULL : invC ? R_INVALID : risk_reason;
    wire [7:0] a_reason = kill ? R_KILL : !hit ? R_UNKNOWN : invC ? R_INVALID : risk_reason;
    wire risk_reached = (c_type == T_NEW) ? (!kill && !hit && free_any && !invC) : (!kill && hit && !invC);
    // bucket after the check: refilled to now (e >= now - cap), a token taken unless it failed
    wire e_gt = l_e > nmcC;
    wire signed [W-1:0] l_ei = l_e + zx(l_interval);
    wire signed [W-1:0] e_new = fail_rate ? (e_gt ? l_e : nmcC) : (e_gt ? l_ei : nmciC);
    // VENUE_FILL
    wire fill_bad  = ($signed(c_w3) <= 0) || ($signed(c_w2) <= 0);
    wire fill_over = c_w3 > h_rem;
    wire fill_full = c_w3 == h_rem;
    wire [63:0] fill_total = h_filled + c_w3;
    // LIMITS (second step): the new capacity and the bucket refilled to now under it
    wire signed [W-1:0] lim_nmc = zx(nowC) - x_cap;
    wire signed [W-1:0] lim_e = (l_haslim && l_e > lim_nmc) ? l_e : lim_nmc;
    wire signed [W-1:0] lim_hb = l_hb + sx(c_w4) - sx(l_plim);
    wire signed [W-1:0] lim_hs = l_hs + sx(c_w4) - sx(l_plim);
    // headroom after a NEW_ORDER, a fill, a freed order
    wire signed [W-1:0] h_new  = l_hside - zx(qtyC);
    wire signed [W-1:0] h_fill = (h_buy ? s_hs[h_y] : s_hb[h_y]) + zx(c_w3);   // the other side gains
    wire signed [W-1:0] h_free = (p_buy ? s_hb[p_y] : s_hs[p_y]) + zx(p_rem);

    // ------------------------------------------------------------ stage C: per-state action
    reg        ov;
    reg [7:0]  ot, ob1, ob2;
    reg [15:0] osym;
    reg [63:0] ow0, ow1, ow2, ow3, ow4;
    reg        ov2;
    reg [1:0]  pair;        // lane 1: 1 SUBMIT_TO_VENUE, 2 AMEND_TO_VENUE, 3 STATE_CHANGE(px -> pnew)
    reg [2:0]  pnew;
    reg        last;        // this step ends the frame's answer
    reg        emit;        // this step writes a beat
    reg [1:0]  nfsm;
    reg [7:0]  rej;
    reg        sweeping;
    reg        lim1;        // LIMITS first step: compute the capacity
    always @* begin
        ov = 1'b0; ot = 8'd0; ob1 = 8'd0; ob2 = 8'd0; osym = 16'd0;
        ow0 = 64'd0; ow1 = 64'd0; ow2 = 64'd0; ow3 = 64'd0; ow4 = 64'd0;
        ov2 = 1'b0; pair = 2'd0; pnew = 3'd0;
        last = 1'b0; emit = 1'b0; nfsm = F_EXEC; rej = 8'd0; sweeping = 1'b0; lim1 = 1'b0;
        case (fsm)
            F_EXEC: begin
                if (sweep_now) begin
                    sweeping = 1'b1; emit = 1'b1;
                    ov = 1'b1; ot = T_CANCEL_V; osym = p_sym; ow0 = p_cid;
                    ov2 = 1'b1; pair = 2'd3; pnew = S_EXPIRED;
                    nfsm = F_EXP3;
                end else if (c_type == T_LIMITS && !lim2) begin
                    lim1 = 1'b1;
                end else begin
                    last = 1'b1; emit = 1'b1;
                    case (c_type)
                        T_NEW: if (n_reason != 8'd0) rej = n_reason;
                               else begin
                                   ov = 1'b1; ot = T_ACCEPTED; ob1 = T_NEW; ow0 = c_cid; ow1 = fs; ow2 = nowC;
                                   ov2 = 1'b1; pair = 2'd1;
                               end
                        T_AMEND: if (a_reason != 8'd0) rej = a_reason;
                                 else begin
                                     ov = 1'b1; ot = T_ACCEPTED; ob1 = T_AMEND; ow0 = c_cid; ow1 = hs; ow2 = nowC;
                                     ov2 = 1'b1; pair = 2'd2;
                                 end
                        T_CANCEL: if (!hit) rej = R_UNKNOWN;
                                  else begin
                                      ov = 1'b1; ot = T_CANCEL_V; osym = h_sym; ow0 = c_cid;
                                      ov2 = 1'b1; pair = 2'd3; pnew = S_CANCELLED;
                                  end
                        T_ACK: if (!hit) rej = R_UNKNOWN;
                               else if (h_state == S_PENDING) begin
                                   ov = 1'b1; ot = T_STATE; ob1 = S_PENDING; ob2 = S_SUBMITTED; osym = h_sym;
                                   ow0 = c_cid; ow1 = hs; ow2 = h_filled;
                               end
                        T_FILL: if (!hit) rej = R_UNKNOWN;
                                else if (fill_bad) rej = R_INVALID;
                                else if (fill_over) rej = R_OVERFILL;
                                else begin
                                    ov = 1'b1; ot = T_STATE; ob1 = h_state; ob2 = fill_full ? S_FILLED : S_PARTIAL;
                                    osym = h_sym; ow0 = c_cid; ow1 = hs; ow2 = fill_total; ow3 = c_w3;
                                    ow4 = c_w2;
                                end
                        T_VREJ: if (!hit) rej = R_UNKNOWN;
                                else if (h_state == S_PARTIAL) rej = R_BADSTATE;
                                else begin
                                    ov = 1'b1; ot = T_STATE; ob1 = h_state; ob2 = S_REJECTED; osym = h_sym;
                                    ow0 = c_cid; ow1 = hs; ow2 = h_filled;
                                end
                        T_VCANC: if (!hit) rej = R_UNKNOWN;
                                 else begin
                                     ov = 1'b1; ot = T_STATE; ob1 = h_state; ob2 = S_CANCELLED; osym = h_sym;
                                     ow0 = c_cid; ow1 = hs; ow2 = h_filled;
                                 end
                        T_KILL: if (c_b1[0] && open_any) begin
                                    ov = 1'b1; ot = T_CANCEL_V; osym = p_sym; ow0 = p_cid;
                                    ov2 = 1'b1; pair = 2'd3; pnew = S_CANCELLED;
                                    if (open_two) begin last = 1'b0; nfsm = F_KILL; end
                                end
                        default: ;  // REF_PRICE, LIMITS, TICK, KILL_SWITCH off: no outbound frame
                    endcase
                    if (rej != 8'd0) begin
                        ov = 1'b1; ot = T_REJECTED; ob1 = c_type; ob2 = rej; ow0 = c_cid; ow1 = nowC;
                    end
                end
            end
            F_EXP3: begin
                emit = 1'b1; ov = 1'b1; nfsm = F_EXEC;
                ot = T_EXPIRED; osym = e_sym; ow0 = e_cid; ow1 = nowC; ow2 = e_filled;
            end
            F_KILL: begin
                emit = 1'b1; ov = 1'b1; ot = T_CANCEL_V; osym = p_sym; ow0 = p_cid;
                ov2 = 1'b1; pair = 2'd3; pnew = S_CANCELLED;
                if (open_two) nfsm = F_KILL; else last = 1'b1;
            end
            default: last = 1'b1;
        endcase
    end

    wire [511:0] beat0 = {64'd0, 64'd0, ow4, ow3, ow2, ow1, ow0, osym, 16'd0, 8'd0, ob2, ob1, ot};
    wire [511:0] beat1 =
        (pair == 2'd1) ? {128'd0, 64'd0, fC[319:192], 64'd0, fC[127:8], T_SUBMIT}  // NEW_ORDER minus ts, deadline
      : (pair == 2'd2) ? {192'd0, qtyC, priceC, 64'd0, c_cid, h_sym, 40'd0, T_AMEND_V}
      : (pair == 2'd3) ? {128'd0, 64'd0, 64'd0, p_filled, {{(64-SB){1'b0}}, px}, p_cid, p_sym, 16'd0, 8'd0,
                          5'd0, pnew, 5'd0, p_state, T_STATE}
      : 512'd0;

    // ------------------------------------------------------------ output FIFO (2 beats)
    reg [1:0]   q_cnt;
    reg         q_rd, q_wr;
    reg [1:0]   q_n [0:1];
    reg         q_eor [0:1];
    reg [511:0] q_d0 [0:1];
    reg [511:0] q_d1 [0:1];
    assign out_valid = q_cnt != 2'd0;
    assign out_n = q_n[q_rd];
    assign out_eor = q_eor[q_rd];
    assign out_data = q_d0[q_rd];
    assign out_data2 = q_d1[q_rd];
    wire pop = out_valid && out_ready;
    assign stepC = vC && (q_cnt != 2'd2);   // room for a beat, whatever out_ready does this clock
    wire push = stepC && emit;
    assign advC = stepC && last;

    // ------------------------------------------------------------ pipeline flow
    wire c_free = !vC || advC;
    wire b_go = vB && c_free;
    wire b_free = !vB || b_go;
    wire a_go = vA && b_free && !(ser(a_type) && (vB || vC)) && !(vB && ser(fB[7:0])) && !(vC && ser(c_type))
                && !(a_isam && !alat);
    wire a_latch = vA && a_isam && !alat && !vB && !vC;
    assign in_ready = !vA || a_go;
    wire take = in_valid && in_ready;
    assign idle = !vA && !vB && !vC && (q_cnt == 2'd0);

    // ------------------------------------------------------------ write enables (all gated by stepC)
    wire exec = stepC && (fsm == F_EXEC) && !sweeping && !lim1;
    wire ld_new   = exec && c_type == T_NEW && n_reason == 8'd0;
    wire upd_px   = exec && is_amend && a_reason == 8'd0;
    wire upd_fill = exec && c_type == T_FILL && hit && !fill_bad && !fill_over;
    wire upd_ack  = exec && c_type == T_ACK && hit && h_state == S_PENDING;
    wire free_h   = exec && hit && ((c_type == T_CANCEL) || (c_type == T_VCANC)
                                    || (c_type == T_VREJ && h_state != S_PARTIAL) || (upd_fill && fill_full));
    wire free_e   = stepC && fsm == F_EXP3;
    wire free_p   = (exec && c_type == T_KILL && c_b1[0] && open_any) || (stepC && fsm == F_KILL);
    wire bucket_we = exec && (c_type == T_NEW || is_amend) && risk_reached && reach_rate && cyh;
    wire ref_we   = exec && c_type == T_REF && (yhC || sfree);
    wire lim_we   = exec && c_type == T_LIMITS && (yhC || sfree);
    wire [YB-1:0] sidx = yhC ? yC : sf;   // the entry a REF_PRICE / LIMITS frame writes (allocated if new)
    assign alloc_en = ld_new;
    assign fs_oh = free_oh;
    // freed slots: a free by the hit order is the p slot only for CANCEL; the rest use mC / e_oh
    assign free_mask = (free_h ? mC : {N{1'b0}}) | (free_e ? e_oh : {N{1'b0}}) | (free_p ? os_oh : {N{1'b0}});
    assign symalloc_en = (ref_we || lim_we) && !yhC;
    // headroom: one write per step. The order that leaves by CANCEL / VENUE_CANCELLED / VENUE_REJECT
    // gives its remaining back (the p slot is the hit slot for CANCEL; for the venue frames use h_*).
    wire hr_venue = exec && hit && ((c_type == T_VCANC) || (c_type == T_VREJ && h_state != S_PARTIAL));
    wire signed [W-1:0] h_freeh = (h_buy ? s_hb[h_y] : s_hs[h_y]) + zx(h_rem);
    wire hr_p = sweeping && stepC || (exec && c_type == T_CANCEL && hit) || free_p;

    // ------------------------------------------------------------ control and pipeline registers
    integer r;
    always @(posedge clk) begin
        if (rst) begin
            vA <= 1'b0; vB <= 1'b0; vC <= 1'b0; now <= 64'd0; kill <= 1'b0; fsm <= F_EXEC; lim2 <= 1'b0;
            q_cnt <= 2'd0; q_rd <= 1'b0; q_wr <= 1'b0; e_oh <= {N{1'b0}}; alat <= 1'b0;
        end else begin
            // stage C
            if (stepC) begin
                if (sweeping) e_oh <= es_oh;
                if (exec && c_type == T_KILL) kill <= c_b1[0];
                fsm <= nfsm;
                lim2 <= lim1;
                if (lim1) x_cap <= m2negC ? -{{(W-128){1'b0}}, mag2C} : {{(W-128){1'b0}}, mag2C};
            end
            if (b_go) begin
                vC <= 1'b1; fC <= fB; nowC <= nowB; mC <= fix_m(mB, keep, amask, fB[127:64], c_cid); eC <= fix_e(eB, keep, amask, nowB, c_dl);
                yC <= yB; yhC <= yhB;
                mag1C <= mag1; mag2C <= mag2; m1negC <= m1negB; m2negC <= m2negB; lhsC <= lhsB;
                thrC <= thrB; nmcC <= nmcB; nmciC <= nmciB; amdC <= amdB;
                invC <= invB; mktC <= mktB; buyC <= buyB; priceC <= priceB; qtyC <= qtyB; amremC <= amremB;
            end else begin
                if (advC) vC <= 1'b0;
                mC <= fix_m(mC, keep, amask, c_cid, c_cid); eC <= fix_e(eC, keep, amask, nowC, c_dl);
            end
            // stage B
            if (a_go) begin
                vB <= 1'b1; fB <= fA; nowB <= nowA; mB <= fix_m(mA, keep, amask, fA[127:64], c_cid); eB <= fix_e(eA, keep, amask, nowA, c_dl);
                yB <= a_y; yhB <= a_yh;
                for (r = 0; r < 16; r = r + 1) begin pp1B[r] <= pp1[r]; pp2B[r] <= pp2[r]; end
                m1negB <= m1xn ^ m1yn; m2negB <= a_w5[63];
                pabsB <= a_pabs;
                invB <= a_isam ? am_invalid : n_invalid;
                mktB <= a_mkt; buyB <= a_isam ? ha_buy : (fA[15:8] == 8'd1);
                priceB <= a_price; qtyB <= a_qty; amremB <= am_rem; hremB <= ha_rem;
            end else begin
                if (b_go) vB <= 1'b0;
                mB <= fix_m(mB, keep, amask, fB[127:64], c_cid); eB <= fix_e(eB, keep, amask, nowB, c_dl);
            end
            // stage A (an AMEND latches its operands first)
            if (a_latch) begin
                alat <= 1'b1;
                lt_price <= am_price; lt_qty <= am_qty; lt_pm <= mag64(am_price); lt_qm <= mag64(am_qty);
                lt_ref <= am_ref; lt_refm <= mag64(am_ref); lt_y <= ha_y; lt_yh <= ha_yh; lt_mkt <= ha_mkt;
            end
            if (a_go) alat <= 1'b0;
            if (take) begin
                vA <= 1'b1; fA <= in_data; nowA <= in_now; now <= in_now;
                aw2m <= mag64(in_data[255:192]); aw3m <= mag64(in_data[319:256]); aw5m <= mag64(in_data[447:384]);
                mA <= fix_m(cam_in, keep, amask, in_cid, c_cid); eA <= fix_e(exp_in, keep, amask, in_now, c_dl);
                if (symalloc_en && in_sym == c_sym) begin yA <= sf; yhA <= 1'b1; end
                else begin yA <= y_in; yhA <= yh_in; end
            end else begin
                if (a_go) vA <= 1'b0;
                mA <= fix_m(mA, keep, amask, fA[127:64], c_cid); eA <= fix_e(eA, keep, amask, nowA, c_dl);
                if (symalloc_en && fA[63:48] == c_sym) begin yA <= sf; yhA <= 1'b1; end
            end
            // output FIFO
            if (push) begin
                q_n[q_wr] <= {1'b0, ov} + {1'b0, ov2}; q_eor[q_wr] <= last; q_d0[q_wr] <= beat0; q_d1[q_wr] <= beat1;
                q_wr <= ~q_wr;
            end
            if (pop) q_rd <= ~q_rd;
            q_cnt <= q_cnt + {1'b0, push} - {1'b0, pop};
        end
    end

    // ------------------------------------------------------------ order table slots
    genvar g;
    generate
        for (g = 0; g < N; g = g + 1) begin : slot
            always @(posedge clk) begin
                if (rst) o_valid[g] <= 1'b0;
                else if (ld_new && free_oh[g]) begin
                    o_valid[g] <= 1'b1; o_buy[g] <= (c_b1 == 8'd1); o_mkt[g] <= (fC[23:16] == 8'd1);
                    o_cid[g] <= c_cid; o_sym[g] <= c_sym; o_price[g] <= c_w2; o_y[g] <= yC;
                    o_qty[g] <= c_w3; o_filled[g] <= 64'd0; o_rem[g] <= c_w3; o_deadline[g] <= c_w4;
                    o_state[g] <= S_PENDING;
                end else begin
                    if (free_mask[g]) o_valid[g] <= 1'b0;
                    if (upd_px && mC[g]) begin
                        o_price[g] <= priceC; o_qty[g] <= qtyC; o_rem[g] <= amremC;
                    end
                    if (upd_fill && mC[g]) begin
                        o_filled[g] <= fill_total; o_rem[g] <= h_rem - c_w3;
                        o_state[g] <= fill_full ? S_FILLED : S_PARTIAL;
                    end
                    if (upd_ack && mC[g]) o_state[g] <= S_SUBMITTED;
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
                    if ((ref_we || lim_we) && sidx == y && !yhC) begin  // allocate: limits 0 (fail closed)
                        s_valid[y] <= 1'b1; s_id[y] <= c_sym; s_haslim[y] <= 1'b0; s_capok[y] <= 1'b0;
                        s_maxqty[y] <= 64'd0; s_maxnot[y] <= 64'd0; s_nmaxnot[y] <= 64'd0; s_band[y] <= 64'd0;
                        s_plim[y] <= 64'd0; s_interval[y] <= 64'd0; s_ref[y] <= 64'd0;
                        s_refm[y] <= 64'd0; s_bandm[y] <= 64'd0;
                        s_brneg[y] <= 1'b0; s_brmag[y] <= 128'd0;
                        s_cap[y] <= {W{1'b0}}; s_cmi[y] <= {W{1'b0}}; s_e[y] <= {W{1'b0}};
                        s_hb[y] <= {W{1'b0}}; s_hs[y] <= {W{1'b0}};
                    end
                    if (ref_we && sidx == y) begin
                        s_ref[y] <= c_w2; s_refm[y] <= mag64(c_w2); s_brneg[y] <= m1negC; s_brmag[y] <= mag1C;
                    end
                    if (lim_we && sidx == y) begin
                        s_haslim[y] <= 1'b1;
                        s_maxqty[y] <= fC[191:128]; s_maxnot[y] <= c_w2; s_nmaxnot[y] <= ~c_w2 + 64'd1; s_band[y] <= c_w3; s_bandm[y] <= mag64(c_w3);
                        s_plim[y] <= c_w4; s_interval[y] <= c_w6;
                        s_brneg[y] <= m1negC; s_brmag[y] <= mag1C;
                        s_cap[y] <= x_cap; s_cmi[y] <= x_cap - zx(c_w6);
                        s_capok[y] <= x_cap >= zx(c_w6);
                        // a new bucket starts full (e = now - cap); an existing one is refilled to now
                        s_e[y] <= lim_e;
                        s_hb[y] <= lim_hb; s_hs[y] <= lim_hs;
                    end
                    if (bucket_we && cy == y) s_e[y] <= e_new;
                    // position headroom: one change per step
                    if (ld_new && cy == y) begin
                        if (buyC) s_hb[y] <= h_new; else s_hs[y] <= h_new;
                    end
                    if (upd_px && cy == y) begin
                        if (buyC) s_hb[y] <= amh; else s_hs[y] <= amh;
                    end
                    if (upd_fill && h_y == y) begin
                        if (h_buy) s_hs[y] <= h_fill; else s_hb[y] <= h_fill;
                    end
                    if (hr_venue && h_y == y) begin
                        if (h_buy) s_hb[y] <= h_freeh; else s_hs[y] <= h_freeh;
                    end
                    if (hr_p && p_y == y) begin
                        if (p_buy) s_hb[y] <= h_free; else s_hs[y] <= h_free;
                    end
                end
            end
        end
    endgenerate
endmodule
