"""numpy ports of ggml's reference K-quantizers (ggml-quants.c:
quantize_row_q4_K_ref, quantize_row_q5_K_ref with make_qkx2_quants,
quantize_row_q6_K_ref with make_qx_quants), for the tests of `llamaft export`.
gguf-py (0.19) dequantizes these types but has no quantizer for them.

Faithful to the C code as written, evaluated without contraction: every
operation is one float32 numpy operation in the C order of evaluation, and
every sum is accumulated element by element in a Python loop (np.sum would
add pairwise and round differently). The loops run over the 16 or 32 values
of a group; all blocks of a tensor are processed at once along axis 0.
"""
import numpy as np

F = np.float32
QK_K = 256
GROUP_MAX_EPS = F(1e-15)


def nearest_int(v):
    """ggml's nearest_int: (v + 1.5 * 2^23) read as an int (round half to even)."""
    s = (v.astype(F) + F(12582912.0)).astype(F)
    return (s.view(np.int32) & 0x007FFFFF) - 0x00400000


def f16_bits(v):
    return np.asarray(v, dtype=F).astype(np.float16).view(np.uint16)


def f16_value(v):
    return np.asarray(v, dtype=F).astype(np.float16).astype(F)


def make_qkx2_quants(x, w, nmax, rmin, rdelta, nstep):
    """x, w: (B, 32). Returns scale (B,), the_min (B,), L (B, 32) uint8."""
    B, n = x.shape
    with np.errstate(all="ignore"):
        mn = x[:, 0].copy()
        mx = x[:, 0].copy()
        sum_w = w[:, 0].copy()
        sum_x = (sum_w * x[:, 0]).astype(F)
        for i in range(1, n):
            mn = np.where(x[:, i] < mn, x[:, i], mn)
            mx = np.where(x[:, i] > mx, x[:, i], mx)
            sum_w = (sum_w + w[:, i]).astype(F)
            sum_x = (sum_x + (w[:, i] * x[:, i]).astype(F)).astype(F)
        mn = np.where(mn > 0, F(0), mn).astype(F)
        flat = mx == mn
        rng = (mx - mn).astype(F)
        iscale = (F(nmax) / rng).astype(F)
        scale = (F(1) / iscale).astype(F)
        L = np.clip(nearest_int((iscale[:, None] * (x - mn[:, None]).astype(F)).astype(F)), 0, nmax)
        best = np.zeros(B, F)
        for i in range(n):
            diff = ((scale * L[:, i].astype(F)).astype(F) + mn).astype(F)
            diff = (diff - x[:, i]).astype(F)
            diff = (diff * diff).astype(F)
            best = (best + (w[:, i] * diff).astype(F)).astype(F)
        for step in range(nstep + 1):
            isc = ((F(rmin) + (F(rdelta) * F(step)).astype(F)).astype(F) + F(nmax)).astype(F)
            isc = (isc / (mx - mn).astype(F)).astype(F)  # min moves with each accepted candidate
            laux = np.clip(nearest_int((isc[:, None] * (x - mn[:, None]).astype(F)).astype(F)), 0, nmax)
            sum_l = np.zeros(B, F)
            sum_l2 = np.zeros(B, F)
            sum_xl = np.zeros(B, F)
            for i in range(n):
                l = laux[:, i].astype(F)
                wl = (w[:, i] * l).astype(F)
                sum_l = (sum_l + wl).astype(F)
                sum_l2 = (sum_l2 + (wl * l).astype(F)).astype(F)
                sum_xl = (sum_xl + (wl * x[:, i]).astype(F)).astype(F)
            D = ((sum_w * sum_l2).astype(F) - (sum_l * sum_l).astype(F)).astype(F)
            this_scale = (((sum_w * sum_xl).astype(F) - (sum_x * sum_l).astype(F)).astype(F) / D).astype(F)
            this_min = (((sum_l2 * sum_x).astype(F) - (sum_l * sum_xl).astype(F)).astype(F) / D).astype(F)
            pos = this_min > 0
            this_scale = np.where(pos, (sum_xl / sum_l2).astype(F), this_scale).astype(F)
            this_min = np.where(pos, F(0), this_min).astype(F)
            cur = np.zeros(B, F)
            for i in range(n):
                diff = ((this_scale * laux[:, i].astype(F)).astype(F) + this_min).astype(F)
                diff = (diff - x[:, i]).astype(F)
                diff = (diff * diff).astype(F)
                cur = (cur + (w[:, i] * diff).astype(F)).astype(F)
            upd = (D > 0) & (cur < best) & ~flat
            L = np.where(upd[:, None], laux, L)
            best = np.where(upd, cur, best)
            scale = np.where(upd, this_scale, scale)
            mn = np.where(upd, this_min, mn)
        L = np.where(flat[:, None], 0, L)
        scale = np.where(flat, F(0), scale).astype(F)
    return scale, (-mn).astype(F), L.astype(np.uint8)


def _quantize_k_asym(blocks, five_bits):
    """Q4_K (five_bits False) or Q5_K blocks from (B, 256) fp32."""
    x = blocks.astype(F)
    B = x.shape[0]
    nmax, rmin, nstep = (31, -0.5, 15) if five_bits else (15, -1.0, 20)
    L = np.zeros((B, QK_K), np.uint8)
    scales = np.zeros((B, 8), F)
    mins = np.zeros((B, 8), F)
    max_scale = np.zeros(B, F)
    max_min = np.zeros(B, F)
    with np.errstate(all="ignore"):
        for j in range(8):
            xs = x[:, 32 * j:32 * j + 32]
            sum_x2 = np.zeros(B, F)
            for l in range(32):
                sum_x2 = (sum_x2 + (xs[:, l] * xs[:, l]).astype(F)).astype(F)
            av_x = np.sqrt((sum_x2 / F(32)).astype(F)).astype(F)
            w = (av_x[:, None] + np.abs(xs)).astype(F)
            s, m, lj = make_qkx2_quants(xs, w, nmax, rmin, 0.1, nstep)
            scales[:, j], mins[:, j], L[:, 32 * j:32 * j + 32] = s, m, lj
            max_scale = np.where(s > max_scale, s, max_scale)
            max_min = np.where(m > max_min, m, max_min)
        inv_scale = np.where(max_scale > 0, (F(63) / max_scale).astype(F), F(0)).astype(F)
        inv_min = np.where(max_min > 0, (F(63) / max_min).astype(F), F(0)).astype(F)
        sc = np.zeros((B, 12), np.uint8)
        for j in range(8):
            ls = np.minimum(nearest_int((inv_scale * scales[:, j]).astype(F)) & 0xFF, 63).astype(np.uint8)
            lm = np.minimum(nearest_int((inv_min * mins[:, j]).astype(F)) & 0xFF, 63).astype(np.uint8)
            if j < 4:
                sc[:, j] = ls
                sc[:, j + 4] = lm
            else:
                sc[:, j + 4] = (ls & 0xF) | ((lm & 0xF) << 4)
                sc[:, j - 4] |= (ls >> 4) << 6
                sc[:, j] |= (lm >> 4) << 6
        d16 = f16_bits((max_scale / F(63)).astype(F))
        dmin16 = f16_bits((max_min / F(63)).astype(F))
        d_all = d16.view(np.float16).astype(F)
        dmin_all = dmin16.view(np.float16).astype(F)
        for j in range(8):
            if j < 4:
                s = sc[:, j] & 63
                m = sc[:, j + 4] & 63
            else:
                s = (sc[:, j + 4] & 0xF) | ((sc[:, j - 4] >> 6) << 4)
                m = (sc[:, j + 4] >> 4) | ((sc[:, j] >> 6) << 4)
            d = (d_all * s.astype(F)).astype(F)
            dm = (dmin_all * m.astype(F)).astype(F)
            xs = x[:, 32 * j:32 * j + 32]
            l = np.clip(nearest_int(((xs + dm[:, None]).astype(F) / d[:, None]).astype(F)), 0, nmax)
            L[:, 32 * j:32 * j + 32] = np.where((d != 0)[:, None], l, L[:, 32 * j:32 * j + 32])
    head = np.concatenate([d16.view(np.uint8).reshape(B, 2), dmin16.view(np.uint8).reshape(B, 2), sc], axis=1)
    if not five_bits:
        q = np.zeros((B, 128), np.uint8)
        for g in range(4):
            q[:, 32 * g:32 * g + 32] = L[:, 64 * g:64 * g + 32] | (L[:, 64 * g + 32:64 * g + 64] << 4)
        return np.concatenate([head, q], axis=1)
    qh = np.zeros((B, 32), np.uint8)
    ql = np.zeros((B, 128), np.uint8)
    for g in range(4):
        l1 = L[:, 64 * g:64 * g + 32].astype(np.int32)
        l2 = L[:, 64 * g + 32:64 * g + 64].astype(np.int32)
        qh |= np.where(l1 > 15, 1 << (2 * g), 0).astype(np.uint8)
        qh |= np.where(l2 > 15, 2 << (2 * g), 0).astype(np.uint8)
        l1 = np.where(l1 > 15, l1 - 16, l1)
        l2 = np.where(l2 > 15, l2 - 16, l2)
        ql[:, 32 * g:32 * g + 32] = (l1 | (l2 << 4)).astype(np.uint8)
    return np.concatenate([head, qh, ql], axis=1)


def quantize_q4_k(blocks):
    return _quantize_k_asym(blocks, False)


def quantize_q5_k(blocks):
    return _quantize_k_asym(blocks, True)


def make_qx_quants_q6(x):
    """make_qx_quants(n = 16, nmax = 32, rmse_type = 1, qw = NULL); x (B, 16).
    Returns scale (B,), L (B, 16) int (0..63)."""
    B, n = x.shape
    nmax = 32
    with np.errstate(all="ignore"):
        mx = np.zeros(B, F)
        amax = np.zeros(B, F)
        for i in range(n):
            ax = np.abs(x[:, i])
            upd = ax > amax
            amax = np.where(upd, ax, amax)
            mx = np.where(upd, x[:, i], mx)
        zero = amax < GROUP_MAX_EPS

        def sums(iscale):
            l = np.clip(nearest_int((iscale[:, None] * x).astype(F)), -nmax, nmax - 1)
            sumlx = np.zeros(B, F)
            suml2 = np.zeros(B, F)
            for i in range(n):
                li = l[:, i].astype(F)
                w = (x[:, i] * x[:, i]).astype(F)
                sumlx = (sumlx + ((w * x[:, i]).astype(F) * li).astype(F)).astype(F)
                suml2 = (suml2 + ((w * li).astype(F) * li).astype(F)).astype(F)
            return l, sumlx, suml2

        iscale = (F(-nmax) / mx).astype(F)
        l, sumlx, suml2 = sums(iscale)
        L = l + nmax
        scale = np.where(suml2 != 0, (sumlx / suml2).astype(F), F(0)).astype(F)
        best = (scale * sumlx).astype(F)
        for step in range(-9, 10):
            if step == 0:
                continue
            isc = (-(F(nmax) + (F(0.1) * F(step)).astype(F)).astype(F) / mx).astype(F)
            l, sumlx, suml2 = sums(isc)
            upd = (suml2 > 0) & ((sumlx * sumlx).astype(F) > (best * suml2).astype(F))
            L = np.where(upd[:, None], l + nmax, L)
            new_scale = (sumlx / suml2).astype(F)
            scale = np.where(upd, new_scale, scale).astype(F)
            best = np.where(upd, (new_scale * sumlx).astype(F), best).astype(F)
        L = np.where(zero[:, None], 0, L)
        scale = np.where(zero, F(0), scale).astype(F)
    return scale, L


def quantize_q6_k(blocks):
    x = blocks.astype(F)
    B = x.shape[0]
    L = np.zeros((B, QK_K), np.int32)
    scales = np.zeros((B, 16), F)
    max_scale = np.zeros(B, F)
    max_abs = np.zeros(B, F)
    with np.errstate(all="ignore"):
        for ib in range(16):
            s, l = make_qx_quants_q6(x[:, 16 * ib:16 * ib + 16])
            scales[:, ib] = s
            L[:, 16 * ib:16 * ib + 16] = l
            a = np.abs(s)
            upd = a > max_abs
            max_abs = np.where(upd, a, max_abs)
            max_scale = np.where(upd, s, max_scale)
        zero = max_abs < GROUP_MAX_EPS
        iscale = (F(-128) / max_scale).astype(F)
        d16 = f16_bits((F(1) / iscale).astype(F))
        d_all = d16.view(np.float16).astype(F)
        sc = np.minimum(127, nearest_int((iscale[:, None] * scales).astype(F))).astype(np.int8)
        for j in range(16):
            d = (d_all * sc[:, j].astype(F)).astype(F)
            xs = x[:, 16 * j:16 * j + 16]
            l = np.clip(nearest_int((xs / d[:, None]).astype(F)), -32, 31) + 32
            L[:, 16 * j:16 * j + 16] = np.where((d != 0)[:, None], l, L[:, 16 * j:16 * j + 16])
    Lu = L.astype(np.uint8)
    ql = np.zeros((B, 128), np.uint8)
    qh = np.zeros((B, 64), np.uint8)
    for half in range(2):
        base = 128 * half
        q = [Lu[:, base + 32 * k:base + 32 * k + 32] for k in range(4)]
        ql[:, 64 * half:64 * half + 32] = (q[0] & 0xF) | ((q[2] & 0xF) << 4)
        ql[:, 64 * half + 32:64 * half + 64] = (q[1] & 0xF) | ((q[3] & 0xF) << 4)
        qh[:, 32 * half:32 * half + 32] = (q[0] >> 4) | ((q[1] >> 4) << 2) | ((q[2] >> 4) << 4) | ((q[3] >> 4) << 6)
    out = np.concatenate([ql, qh, sc.view(np.uint8), d16.view(np.uint8).reshape(B, 2)], axis=1)
    out[zero] = 0
    return out


def quantize(data, type_name):
    """(rows, n) fp32 -> (rows, n / 256 * block bytes) uint8 for Q4_K, Q5_K, Q6_K."""
    rows, n = data.shape
    fn = {"Q4_K": quantize_q4_k, "Q5_K": quantize_q5_k, "Q6_K": quantize_q6_k}[type_name]
    blocks = data.astype(F).reshape(rows * n // QK_K, QK_K)
    return fn(blocks).reshape(rows, -1)
