"""A reference implementation of bitsandbytes' blockwise quantization, written
from the published algorithm (Dettmers et al., "QLoRA", 2023, and
bitsandbytes' functional.py / kernels.cu), in numpy float32, with torch only
for create_dynamic_map (whose float32 values come from torch.linspace).

NF4, quantize_4bit(quant_type="nf4", blocksize=64, compress_statistics=True)
(with compress_statistics=False the fp32 absmax is kept as it is):
  absmax_b = max |x| over each block of 64; code = nearest NF4 value of
  x * (1 / absmax_b) by the midpoint thresholds (x > threshold); two codes
  per byte, the first in the high nibble; then offset = mean(absmax) and
  absmax - offset is quantized with quantize_blockwise(blocksize=256) to the
  signed dynamic map, keeping one fp32 absmax2 per group.
  (bitsandbytes takes the mean with torch in float32; here it is the
  correctly rounded mean, computed in float64.)
int8 (llamaft's quant.base = int8): blocks of 64, q = rint(x * (127 / absmax)),
  dequantized as q * (absmax / 127).
"""
import numpy as np

f32 = np.float32

# bitsandbytes get_4bit_type("nf4"), and create_normal_map's construction for
# an independent check of the table.
NF4 = np.array([-1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453, -0.28444138169288635,
                -0.18477343022823334, -0.09105003625154495, 0.0, 0.07958029955625534, 0.16093020141124725,
                0.24611230194568634, 0.33791524171829224, 0.44070982933044434, 0.5626170039176941,
                0.7229568362236023, 1.0], dtype=f32)


def normal_map(offset=0.9677083):
    """bitsandbytes' create_normal_map(offset, use_extra_value=True): normal
    quantiles of float32 torch.linspace points (statistics.NormalDist instead
    of scipy), 8 positive and 7 negative, plus zero, divided by the maximum in
    float32."""
    import torch
    from statistics import NormalDist
    ppf = NormalDist().inv_cdf
    v1 = [ppf(float(p)) for p in torch.linspace(offset, 0.5, 9)[:-1]]
    v3 = [-ppf(float(p)) for p in torch.linspace(offset, 0.5, 8)[:-1]]
    values = torch.tensor(sorted(v1 + [0.0] + v3), dtype=torch.float32)
    return (values / values.max()).numpy()


def create_dynamic_map(signed=True, max_exponent_bits=7, total_bits=8):
    """bitsandbytes.functional.create_dynamic_map, as published."""
    import torch
    data = []
    non_sign_bits = total_bits - 1
    additional_items = 2 ** (non_sign_bits - max_exponent_bits) - 1
    for i in range(max_exponent_bits):
        fraction_items = int(2 ** (i + non_sign_bits - max_exponent_bits) + 1 if signed
                             else 2 ** (i + non_sign_bits - max_exponent_bits + 1) + 1)
        boundaries = torch.linspace(0.1, 1, fraction_items)
        means = (boundaries[:-1] + boundaries[1:]) / 2.0
        data += ((10 ** (-(max_exponent_bits - 1) + i)) * means).tolist()
        if signed:
            data += (-(10 ** (-(max_exponent_bits - 1) + i)) * means).tolist()
    if additional_items > 0:
        boundaries = torch.linspace(0.1, 1, additional_items + 1)
        means = (boundaries[:-1] + boundaries[1:]) / 2.0
        data += ((10 ** (-(max_exponent_bits - 1) + i)) * means).tolist()
        if signed:
            data += (-(10 ** (-(max_exponent_bits - 1) + i)) * means).tolist()
    data.append(0)
    data.append(1.0)
    assert len(data) == 2 ** total_bits
    data.sort()
    return np.array(data, dtype=f32)


def _blocks(x, size):
    n = len(x)
    nb = (n + size - 1) // size
    pad = np.zeros(nb * size, dtype=f32)
    pad[:n] = x
    return pad.reshape(nb, size)


# The thresholds of bitsandbytes' dQuantizeNF4 decision tree (kernels.cu), as
# the float literals written there ("-0.8480964004993439f", ...): the
# midpoints of neighbouring NF4 values, printed to 16-17 digits.
NF4_TREE_LITERALS = ["-0.8480964004993439", "-0.6106329262256622", "-0.4599952697753906", "-0.33967943489551544",
                     "-0.23460740596055984", "-0.13791173323988914", "-0.045525018125772476", "0.03979014977812767",
                     "0.1202552504837513", "0.2035212516784668", "0.2920137718319893", "0.3893125355243683",
                     "0.5016634166240692", "0.6427869200706482", "0.8614784181118011"]


def f32_from_decimal(text):
    """A C float literal's value: the decimal rounded once, to the nearest
    float32 (ties to even). np.float32(float(text)) rounds twice, through
    double, and differs where the double lands on a float32 tie: it does for
    "-0.8480964004993439", whose exact midpoint (-1 + NF4[1]) / 2 needs 25
    bits; the compiler's single rounding gives the float32 above the tie."""
    from fractions import Fraction
    exact = Fraction(text)
    near = np.float32(float(text))
    cands = [np.nextafter(near, f32(-np.inf)), near, np.nextafter(near, f32(np.inf))]
    dist = [abs(Fraction(float(c)) - exact) for c in cands]
    best = min(dist)
    winners = [c for c, d in zip(cands, dist) if d == best]
    return f32(min(winners, key=lambda c: int(np.array(c, f32).view(np.uint32)) & 1))


NF4_THRESHOLDS = np.array([f32_from_decimal(t) for t in NF4_TREE_LITERALS], dtype=f32)


def nf4_codes(y):
    """NF4 code of each normalised value as dQuantizeNF4's tree gives it: the
    number of thresholds below it (x > threshold; ties and NaN go low)."""
    return (y[..., None] > NF4_THRESHOLDS).sum(-1).astype(np.uint8)


def dquantize_search(code, x):
    """bitsandbytes' dQuantize<0> (kernels.cu) for one float32 value, as
    published: a 7-level binary search of the sorted map from pivot 127, then
    the nearer of the last pivot and its visited neighbour by their float32
    midpoint; a value exactly on that midpoint keeps the searched pivot."""
    x = f32(x)
    pivot, upper_pivot, lower_pivot = 127, 255, 0
    lower, upper = f32(-1.0), f32(1.0)
    val = code[pivot]
    i = 64
    while i > 0:
        if x > val:
            lower_pivot, lower = pivot, val
            pivot += i
        else:
            upper_pivot, upper = pivot, val
            pivot -= i
        val = code[pivot]
        i >>= 1
    if upper_pivot == 255:
        upper = code[upper_pivot]
    if lower_pivot == 0:
        lower = code[lower_pivot]
    if x > val:
        midpoint = f32((upper + val) * f32(0.5))
        return upper_pivot if x > midpoint else pivot
    midpoint = f32((lower + val) * f32(0.5))
    return lower_pivot if x < midpoint else pivot


def quantize_8bit_dynamic(y, code):
    """dQuantize<0>: away from a midpoint, the number of float32 midpoints of
    neighbouring map values below y (what the binary search finds); a value
    exactly on a midpoint takes the search itself (dquantize_search), whose
    tie-break depends on the path. Returns the codes and how many values sat
    on a midpoint (real weights have them: SmolLM2's absmax values, from a
    Q4_1 GGUF, put 3 on a midpoint)."""
    mids = ((code[:-1] + code[1:]) * f32(0.5)).astype(f32)
    q = (y[:, None] > mids[None, :]).sum(1).astype(np.uint8)
    on_mid = np.nonzero((y[:, None] == mids[None, :]).any(1))[0]
    for i in on_mid:
        q[i] = dquantize_search(code, y[i])
    return q, int(len(on_mid))


def quantize_nf4(x, double_quant=True):
    x = np.asarray(x, dtype=f32).ravel()
    n = len(x)
    b = _blocks(x, 64)
    absmax = np.abs(b).max(1).astype(f32)
    with np.errstate(divide="ignore", invalid="ignore"):
        y = b * (f32(1) / absmax)[:, None]
    codes = nf4_codes(y).ravel()[:n]
    if n % 2:
        codes = np.append(codes, 0)
    packed = ((codes[0::2] << 4) | codes[1::2]).astype(np.uint8)
    if not double_quant:  # compress_statistics=False: the fp32 absmax is kept
        return {"codes": packed, "absmax": absmax, "ties": 0}
    offset = f32(absmax.astype(np.float64).mean())
    centred = (absmax - offset).astype(f32)
    groups = _blocks(centred, 256)
    nb = len(absmax)
    absmax2 = np.abs(groups).max(1).astype(f32)
    code8 = create_dynamic_map()
    scaled = (groups * (f32(1) / absmax2)[:, None]).astype(f32).ravel()[:nb]
    qabsmax, ties = quantize_8bit_dynamic(scaled, code8)
    return {"codes": packed, "qabsmax": qabsmax, "absmax2": absmax2, "offset": offset, "absmax": absmax,
            "ties": ties}


def dequantize_nf4(q, n):
    if "qabsmax" in q:
        code8 = create_dynamic_map()
        absmax = (code8[q["qabsmax"]] * np.repeat(q["absmax2"], 256)[:len(q["qabsmax"])] + q["offset"]).astype(f32)
    else:
        absmax = q["absmax"]
    codes = np.stack([q["codes"] >> 4, q["codes"] & 15], 1).ravel()[:n]
    return (NF4[codes] * np.repeat(absmax, 64)[:n]).astype(f32)


def quantize_int8(x):
    x = np.asarray(x, dtype=f32).ravel()
    n = len(x)
    b = _blocks(x, 64)
    absmax = np.abs(b).max(1).astype(f32)
    with np.errstate(divide="ignore", invalid="ignore"):
        inv = np.where(absmax > 0, f32(127) / absmax, f32(0)).astype(f32)
    q = np.clip(np.rint(b * inv[:, None]), -127, 127).astype(np.int8).ravel()[:n]
    return {"q": q, "absmax": absmax}


def dequantize_int8(q, n):
    return (q["q"].astype(f32) * np.repeat((q["absmax"] / f32(127)).astype(f32), 64)[:n]).astype(f32)
