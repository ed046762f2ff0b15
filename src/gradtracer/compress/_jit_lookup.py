"""The numba kernels behind :mod:`gradtracer.compress.index_kernel` (imported lazily).

Kept apart so that importing :mod:`gradtracer.compress` does not import numba, and so
that the kernels and the LLVM intrinsics they call live at module level, where numba can
cache their machine code next to this file. See :mod:`~gradtracer.compress.index_kernel`
for what they compute; call them through its wrappers.
"""

from __future__ import annotations

from typing import Any

import numba
import numpy as np
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

#: Rows located (and prefetched) ahead of the decode, per pipeline stage.
CHUNK = 64
#: Requests ahead whose row a single-pass kernel prefetches.
PREFETCH_AHEAD = 16
_jit = numba.njit(cache=True, nogil=True, boundscheck=False)

_I8P, _I32 = ir.IntType(8).as_pointer(), ir.IntType(32)


@intrinsic
def prefetch_row(typingctx: Any, arr: Any, row: Any) -> Any:
    """Prefetch (read, keep in all cache levels) the first byte of ``arr[row]``."""

    def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
        aty = sig.args[0]
        ary = context.make_array(aty)(context, builder, args[0])
        zero = context.get_constant(types.intp, 0)
        ptr = cgutils.get_item_pointer(context, builder, aty, ary, [args[1], zero])
        fnty = ir.FunctionType(ir.VoidType(), [_I8P, _I32, _I32, _I32])
        fn = cgutils.get_or_insert_function(builder.module, fnty, "llvm.prefetch.p0")
        flags = [ir.Constant(_I32, 0), ir.Constant(_I32, 3), ir.Constant(_I32, 1)]
        builder.call(fn, [builder.bitcast(ptr, _I8P), *flags])
        return context.get_dummy_value()

    return types.void(arr, row), codegen


@intrinsic
def prefetch_address(typingctx: Any, address: Any) -> Any:
    """Prefetch (read, keep in all cache levels) the byte at ``address`` (int64)."""

    def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
        fnty = ir.FunctionType(ir.VoidType(), [_I8P, _I32, _I32, _I32])
        fn = cgutils.get_or_insert_function(builder.module, fnty, "llvm.prefetch.p0")
        flags = [ir.Constant(_I32, 0), ir.Constant(_I32, 3), ir.Constant(_I32, 1)]
        builder.call(fn, [builder.inttoptr(args[0], _I8P), *flags])
        return context.get_dummy_value()

    return types.void(types.int64), codegen


@intrinsic
def fma32(typingctx: Any, a: Any, b: Any, c: Any) -> Any:
    """``a * b + c`` in float32, rounded once."""

    def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
        f = ir.FloatType()
        fn = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(f, [f, f, f]), "llvm.fma.f32"
        )
        return builder.call(fn, list(args))

    return types.float32(types.float32, types.float32, types.float32), codegen


@intrinsic
def half_bits(typingctx: Any, bits: Any) -> Any:
    """The float16 with bit pattern ``bits`` (uint16), as float32 (exact)."""

    def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
        return builder.fpext(builder.bitcast(args[0], ir.HalfType()), ir.FloatType())

    return types.float32(types.uint16), codegen


@intrinsic
def float_bits(typingctx: Any, bits: Any) -> Any:
    """The float32 with bit pattern ``bits`` (uint32)."""

    def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
        return builder.bitcast(args[0], ir.FloatType())

    return types.float32(types.uint32), codegen


@intrinsic
def popcount(typingctx: Any, x: Any) -> Any:
    """Set bits of a uint64."""

    def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
        i64 = ir.IntType(64)
        fn = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(i64, [i64]), "llvm.ctpop.i64"
        )
        return builder.call(fn, [args[0]])

    return types.uint64(types.uint64), codegen


_F32, _I64 = ir.FloatType(), ir.IntType(64)
_V8F, _V8I = ir.VectorType(_F32, 8), ir.VectorType(_I32, 8)
#: Bytes of 8 columns in each kind's stored row (the fallback row is float32).
_GROUP_BYTES = {"fp32": 32, "fp16": 16, "int8": 8, "int4": 4, "int2": 2}


def _splat(builder: Any, value: Any, vty: Any) -> Any:
    undef = ir.Constant(vty, ir.Undefined)
    one = builder.insert_element(undef, value, ir.Constant(_I32, 0))
    return builder.shuffle_vector(one, undef, ir.Constant(ir.VectorType(_I32, 8), None))


def _fma_v8(builder: Any) -> Any:
    return cgutils.get_or_insert_function(
        builder.module, ir.FunctionType(_V8F, [_V8F] * 3), "llvm.fma.v8f32"
    )


def _qparams(builder: Any, kind: str, qp: Any) -> tuple[Any, Any]:
    """Splatted ``(scale, bias)`` of a row whose qparams lie at address ``qp`` (fp16 pair
    for int4 / int2, float32 pair for int8; unused for the float kinds)."""
    if kind in ("int4", "int2"):
        pair = builder.load(
            builder.inttoptr(qp, ir.VectorType(ir.HalfType(), 2).as_pointer()), align=1
        )
        pair = builder.fpext(pair, ir.VectorType(_F32, 2))
    else:
        pair = builder.load(builder.inttoptr(qp, ir.VectorType(_F32, 2).as_pointer()), align=1)
    vs = _splat(builder, builder.extract_element(pair, ir.Constant(_I32, 0)), _V8F)
    vb = _splat(builder, builder.extract_element(pair, ir.Constant(_I32, 1)), _V8F)
    return vs, vb


def _decode_group(builder: Any, kind: str, src: Any, g: Any, vs: Any, vb: Any) -> Any:
    """Columns ``8g .. 8g + 7`` of the row stored at address ``src`` as ``<8 x float>``:
    ``fma(scale, code, bias)`` in float32 (fp16: exact widening; fp32: the values)."""
    width = _GROUP_BYTES[kind]
    sp = builder.add(src, builder.mul(g, ir.Constant(_I64, width)))
    if kind in ("int4", "int2"):
        ity = ir.IntType(8 * width)
        word = builder.load(builder.inttoptr(sp, ity.as_pointer()), align=1)
        if width < 4:
            word = builder.zext(word, _I32)
        step = 4 if kind == "int4" else 2
        shifts = ir.Constant(_V8I, [step * k for k in range(8)])
        mask = ir.Constant(_V8I, [(1 << step) - 1] * 8)
        codes = builder.and_(builder.lshr(_splat(builder, word, _V8I), shifts), mask)
        return builder.call(_fma_v8(builder), [vs, builder.uitofp(codes, _V8F), vb])
    if kind == "int8":
        vty = ir.VectorType(ir.IntType(8), 8)
        codes = builder.load(builder.inttoptr(sp, vty.as_pointer()), align=1)
        return builder.call(_fma_v8(builder), [vs, builder.uitofp(codes, _V8F), vb])
    if kind == "fp16":
        vty = ir.VectorType(ir.HalfType(), 8)
        return builder.fpext(builder.load(builder.inttoptr(sp, vty.as_pointer()), align=1), _V8F)
    return builder.load(builder.inttoptr(sp, _V8F.as_pointer()), align=1)


def _add_row_intrinsic(kind: str, store: bool = False) -> Any:
    """An intrinsic ``(dst, src, groups, qparams)``: add ``8 * groups`` columns of the row
    stored at address ``src`` (layout of ``kind``), decoded to float32, into the float32
    columns at address ``dst``. ``qparams`` is the address of the row's scale and bias
    (ignored for fp32 / fp16). Each value is ``fma(scale, code, bias)`` in float32 (fp16:
    exact widening), added as ``dst + value``: the operations of :func:`_decode` and of
    the chunk-buffer pooling, eight lanes at a time. With ``store``, the values are
    written to ``dst`` instead of added (the operations of :func:`_decode` alone)."""

    def typer(typingctx: Any, dst: Any, src: Any, groups: Any, qparams: Any) -> Any:
        def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
            dst, src, groups, qp = args
            vs, vb = _qparams(builder, kind, qp)
            with cgutils.for_range(builder, groups) as loop:
                g = loop.index
                val = _decode_group(builder, kind, src, g, vs, vb)
                dp = builder.add(dst, builder.mul(g, ir.Constant(_I64, 32)))
                dp = builder.inttoptr(dp, _V8F.as_pointer())
                if store:
                    builder.store(val, dp, align=4)
                else:
                    acc = builder.load(dp, align=4)
                    builder.store(builder.fadd(acc, val), dp, align=4)
            return context.get_dummy_value()

        return types.void(types.int64, types.int64, types.int64, types.int64), codegen

    typer.__name__ = f"{'store' if store else 'add'}_{kind}_row"
    return intrinsic(typer)


#: Kind codes of :data:`gradtracer.compress.index_kernel.KINDS` (5, the fallback row, is
#: stored as one float32 row).
_KIND_CODES = {"fp32": 0, "fp16": 1, "int8": 2, "int4": 3, "int2": 4}


def _pool_run_intrinsic(groups: int) -> Any:
    """An intrinsic ``(dst, kk, ss, m, where, qoff)`` for tables of ``8 * groups``
    columns: add the ``m`` rows of one bag, kinds at address ``kk`` and slots at ``ss``
    (int64 each), into the float32 bag at address ``dst``. The bag's sums stay in vector
    registers across the rows (loaded from ``dst`` first, stored once at the end), and
    every row is added in index order, so the result equals :func:`_add_chunk` bit for
    bit. ``where`` is the address of the ``(6, 3)`` int64 row-address table of
    :func:`~gradtracer.compress.index_kernel.kernel_args`, ``qoff`` of the ``(6,)`` int64
    qparam offsets."""

    def typer(typingctx: Any, dst: Any, kk: Any, ss: Any, m: Any, where: Any, qoff: Any) -> Any:
        def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
            dst, kk, ss, m, where, qoff = args
            i64p = _I64.as_pointer()
            dps = [
                builder.inttoptr(builder.add(dst, ir.Constant(_I64, 32 * g)), _V8F.as_pointer())
                for g in range(groups)
            ]
            accs = [cgutils.alloca_once(builder, _V8F) for _ in range(groups)]
            for acc, dp in zip(accs, dps):
                builder.store(builder.load(dp, align=4), acc)
            wp = builder.inttoptr(where, i64p)
            qp_base = builder.inttoptr(qoff, i64p)
            with cgutils.for_range(builder, m) as loop:
                t = loop.index
                kind = builder.load(builder.gep(builder.inttoptr(kk, i64p), [t]))
                slot = builder.load(builder.gep(builder.inttoptr(ss, i64p), [t]))
                k3 = builder.mul(kind, ir.Constant(_I64, 3))
                addr = builder.load(builder.gep(wp, [k3]))
                stride = builder.load(builder.gep(wp, [builder.add(k3, ir.Constant(_I64, 1))]))
                src = builder.add(addr, builder.mul(slot, stride))
                merge = builder.append_basic_block("pool_merge")
                default = builder.append_basic_block("pool_fp32")
                switch = builder.switch(kind, default)
                for name, code in _KIND_CODES.items():
                    block = (
                        default if name == "fp32" else builder.append_basic_block(f"pool_{name}")
                    )
                    if name != "fp32":
                        switch.add_case(ir.Constant(_I64, code), block)
                    builder.position_at_end(block)
                    qoff_k = builder.load(builder.gep(qp_base, [ir.Constant(_I64, code)]))
                    vs, vb = _qparams(builder, name, builder.add(src, qoff_k)) if name in (
                        "int8", "int4", "int2") else (None, None)  # fmt: skip
                    for g, acc in enumerate(accs):
                        val = _decode_group(builder, name, src, ir.Constant(_I64, g), vs, vb)
                        builder.store(builder.fadd(builder.load(acc), val), acc)
                    builder.branch(merge)
                builder.position_at_end(merge)
            for acc, dp in zip(accs, dps):
                builder.store(builder.load(acc), dp, align=4)
            return context.get_dummy_value()

        return types.void(*([types.int64] * 6)), codegen

    typer.__name__ = f"pool_run{groups}"
    return intrinsic(typer)


add_fp32_row = _add_row_intrinsic("fp32")
add_fp16_row = _add_row_intrinsic("fp16")
add_int8_row = _add_row_intrinsic("int8")
add_int4_row = _add_row_intrinsic("int4")
add_int2_row = _add_row_intrinsic("int2")
store_fp32_row = _add_row_intrinsic("fp32", store=True)
store_fp16_row = _add_row_intrinsic("fp16", store=True)
store_int8_row = _add_row_intrinsic("int8", store=True)
store_int4_row = _add_row_intrinsic("int4", store=True)
store_int2_row = _add_row_intrinsic("int2", store=True)
pool_run1 = _pool_run_intrinsic(1)
pool_run2 = _pool_run_intrinsic(2)
pool_run4 = _pool_run_intrinsic(4)
pool_run8 = _pool_run_intrinsic(8)
pool_run16 = _pool_run_intrinsic(16)


def _two_scale_intrinsic(bits: int, add: bool) -> Any:
    """An intrinsic ``(dst, src, groups, col, off, step)`` for a ``bits``-bit two-scale row
    at address ``src`` (each 8 codes fill ``bits`` bytes, low bits first): columns
    ``((code - off) * step) * col[c]`` in float32 (the tensor decode's operations, in its
    order) for ``8 * groups`` columns, stored at ``dst`` or (``add``) added to it; ``col``
    is the address of the float32 column scales."""

    def typer(typingctx: Any, dst: Any, src: Any, groups: Any, col: Any, off: Any, st: Any) -> Any:
        def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
            dst, src, groups, col, off, st = args
            voff, vst = _splat(builder, off, _V8F), _splat(builder, st, _V8F)
            lane = ir.IntType(32 if bits <= 4 else 64)
            vlane = ir.VectorType(lane, 8)

            def group(g: Any, load_width: int) -> None:
                sp = builder.add(src, builder.mul(g, ir.Constant(_I64, bits)))
                if bits == 8:
                    vty = ir.VectorType(ir.IntType(8), 8)
                    codes = builder.load(builder.inttoptr(sp, vty.as_pointer()), align=1)
                else:
                    ity = ir.IntType(load_width)
                    word = builder.load(builder.inttoptr(sp, ity.as_pointer()), align=1)
                    if ity.width < lane.width:
                        word = builder.zext(word, lane)
                    shifts = ir.Constant(vlane, [bits * k for k in range(8)])
                    mask = ir.Constant(vlane, [(1 << bits) - 1] * 8)
                    codes = builder.and_(builder.lshr(_splat(builder, word, vlane), shifts), mask)
                    if lane.width > 32:
                        codes = builder.trunc(codes, _V8I)
                q = builder.fsub(builder.uitofp(codes, _V8F), voff)
                cp = builder.add(col, builder.mul(g, ir.Constant(_I64, 32)))
                cs = builder.load(builder.inttoptr(cp, _V8F.as_pointer()), align=4)
                val = builder.fmul(builder.fmul(q, vst), cs)
                dp = builder.add(dst, builder.mul(g, ir.Constant(_I64, 32)))
                dp = builder.inttoptr(dp, _V8F.as_pointer())
                if add:
                    val = builder.fadd(builder.load(dp, align=4), val)
                builder.store(val, dp, align=4)

            exact = 8 * bits
            if exact in (16, 32, 64):  # 2, 4 and 8 bits: one plain load a group
                with cgutils.for_range(builder, groups) as loop:
                    group(loop.index, exact)
            else:  # 3, 5, 6, 7 bits: a lane-wide load (the next group's bytes follow in the
                # row), the last group with a load of exactly its bytes (no read past the row)
                last = builder.sub(groups, ir.Constant(_I64, 1))
                with cgutils.for_range(builder, last) as loop:
                    group(loop.index, lane.width)
                group(last, exact)
            return context.get_dummy_value()

        return (
            types.void(
                types.int64, types.int64, types.int64, types.int64, types.float32, types.float32
            ),
            codegen,
        )

    typer.__name__ = f"two_scale_{'add' if add else 'put'}{bits}"
    return intrinsic(typer)


ts_put2, ts_put3, ts_put4, ts_put5, ts_put6, ts_put7, ts_put8 = (
    _two_scale_intrinsic(b, False) for b in range(2, 9)
)
ts_add2, ts_add3, ts_add4, ts_add5, ts_add6, ts_add7, ts_add8 = (
    _two_scale_intrinsic(b, True) for b in range(2, 9)
)


@_jit
def _locate(rows, a, m, n_rows, bits, words, directory, kinds, dl, ds, where, kk, ss):
    """Kind and slot of ``rows[a:a + m]`` into ``kk``/``ss``, prefetching the first and
    last byte of each row; returns the position of the first row outside the table, or -1.

    ``where[k] = (address, row stride, row bytes - 1)`` of kind ``k``'s block, so the
    prefetch needs no branch on the kind."""
    shift = 6 - (bits >> 1)  # log2 of the codes per 64-bit word for 1, 2 or 4 bits
    if bits == 4:
        lo = np.uint64(0x1111111111111111)
    elif bits == 2:
        lo = np.uint64(0x5555555555555555)
    else:
        lo = np.uint64(0xFFFFFFFFFFFFFFFF)
    mask = np.uint64((1 << bits) - 1)
    ones = np.uint64(0xFFFFFFFFFFFFFFFF)
    for t in range(m):
        r = rows[a + t]
        if r < 0 or r >= n_rows:
            return a + t
        if bits == 0:
            k, s = kinds[0], r
        elif dl.size:
            k, s = kinds[np.int64(dl[r])], np.int64(ds[r])
        else:
            blk, pos = r >> 6, r & 63
            wi = pos >> shift
            within = np.uint64((pos & ((1 << shift) - 1)) * bits)
            lev = (words[blk, wi] >> within) & mask
            pattern = lev * lo
            partial = (np.uint64(1) << within) - np.uint64(1)
            count = np.uint64(0)
            for q in range(bits):  # every word of the block, masked: no data-dependent branch
                x = words[blk, q] ^ pattern  # a code equal to lev is all zero bits
                if bits == 4:
                    x = x | (x >> np.uint64(1)) | (x >> np.uint64(2)) | (x >> np.uint64(3))
                elif bits == 2:
                    x = x | (x >> np.uint64(1))
                before = (ones * np.uint64(q < wi)) | (partial * np.uint64(q == wi))
                count += popcount(~x & lo & before)
            k = kinds[np.int64(lev)]
            s = np.int64(directory[blk, np.int64(lev)]) + np.int64(count)
        kk[t] = k
        ss[t] = s
        address = where[k, 0] + s * where[k, 1]
        prefetch_address(address)
        prefetch_address(address + where[k, 2])
    return -1


@_jit
def _decode(kk, ss, m, blocks, fb, out, o):
    """Rows ``(kk[t], ss[t])`` for ``t < m`` into ``out[o + t]``."""
    f32, f16, i8, i4, i2 = blocks
    d = out.shape[1]
    w8, w4, w2 = i8.shape[1] - 8, i4.shape[1] - 4, i2.shape[1] - 4
    sh8, sh16, sh24 = np.uint32(8), np.uint32(16), np.uint32(24)
    sixteenth, sixteen = np.float32(0.0625), np.float32(16.0)
    two, three, four, six = np.int32(2), np.int32(3), np.int32(4), np.int32(6)
    for t in range(m):
        kind, s, i = kk[t], ss[t], o + t
        if kind == 3:
            scale = half_bits(np.uint16(i4[s, w4]) | (np.uint16(i4[s, w4 + 1]) << np.uint16(8)))
            bias = half_bits(np.uint16(i4[s, w4 + 2]) | (np.uint16(i4[s, w4 + 3]) << np.uint16(8)))
            for j in range(d >> 1):  # nibbles split in float32 (exact): 8 lanes a vector
                q = np.float32(i4[s, j])
                hi = np.floor(q * sixteenth)
                out[i, 2 * j] = fma32(scale, q - hi * sixteen, bias)
                out[i, 2 * j + 1] = fma32(scale, hi, bias)
            if d & 1:
                out[i, d - 1] = fma32(scale, np.float32(i4[s, d >> 1] & 15), bias)
        elif kind == 4:
            scale = half_bits(np.uint16(i2[s, w2]) | (np.uint16(i2[s, w2 + 1]) << np.uint16(8)))
            bias = half_bits(np.uint16(i2[s, w2 + 2]) | (np.uint16(i2[s, w2 + 3]) << np.uint16(8)))
            for j in range(d >> 2):  # int32 lanes (numba would widen uint8 arithmetic to 64 bits)
                b = np.int32(i2[s, j])
                out[i, 4 * j] = fma32(scale, np.float32(b & three), bias)
                out[i, 4 * j + 1] = fma32(scale, np.float32((b >> two) & three), bias)
                out[i, 4 * j + 2] = fma32(scale, np.float32((b >> four) & three), bias)
                out[i, 4 * j + 3] = fma32(scale, np.float32(b >> six), bias)
            for c in range(d - d % 4, d):
                code = (i2[s, c >> 2] >> ((c & 3) * 2)) & 3
                out[i, c] = fma32(scale, np.float32(code), bias)
        elif kind == 2:
            sb = (
                np.uint32(i8[s, w8])
                | (np.uint32(i8[s, w8 + 1]) << sh8)
                | (np.uint32(i8[s, w8 + 2]) << sh16)
                | (np.uint32(i8[s, w8 + 3]) << sh24)
            )
            bb = (
                np.uint32(i8[s, w8 + 4])
                | (np.uint32(i8[s, w8 + 5]) << sh8)
                | (np.uint32(i8[s, w8 + 6]) << sh16)
                | (np.uint32(i8[s, w8 + 7]) << sh24)
            )
            scale, bias = float_bits(sb), float_bits(bb)
            for c in range(d):
                out[i, c] = fma32(scale, np.float32(i8[s, c]), bias)
        elif kind == 1:
            for c in range(d):
                out[i, c] = half_bits(f16[s, c])
        elif kind == 0:
            for c in range(d):
                out[i, c] = f32[s, c]
        else:
            for c in range(d):
                out[i, c] = fb[c]


@_jit
def gather_rows(rows, n_rows, bits, words, directory, kinds, dl, ds, where, blocks, fb, out):
    """Rows in request order; chunk ``c + 1`` is located while chunk ``c`` decodes."""
    n = rows.size
    kk = np.empty(2 * CHUNK, np.int64)
    ss = np.empty(2 * CHUNK, np.int64)
    n_chunks = (n + CHUNK - 1) // CHUNK
    for c in range(n_chunks + 1):
        if c < n_chunks:
            a = c * CHUNK
            h = (c & 1) * CHUNK
            bad = _locate(
                rows, a, min(CHUNK, n - a), n_rows, bits, words, directory,
                kinds, dl, ds, where, kk[h:], ss[h:],
            )  # fmt: skip
            if bad >= 0:
                return bad
        if c > 0:
            a = (c - 1) * CHUNK
            h = ((c - 1) & 1) * CHUNK
            _decode(kk[h:], ss[h:], min(CHUNK, n - a), blocks, fb, out, a)
    return -1


@_jit
def _store_chunk(kk, ss, m, a, where, qoff, base, stride, groups):
    """Write rows ``(kk[t], ss[t])`` to output rows ``a + t`` (address ``base``, ``stride``
    bytes a row) eight columns at a time."""
    for t in range(m):
        kind, s = kk[t], ss[t]
        dst = base + (a + t) * stride
        src = where[kind, 0] + s * where[kind, 1]
        if kind == 3:
            store_int4_row(dst, src, groups, src + qoff[3])
        elif kind == 4:
            store_int2_row(dst, src, groups, src + qoff[4])
        elif kind == 2:
            store_int8_row(dst, src, groups, src + qoff[2])
        elif kind == 1:
            store_fp16_row(dst, src, groups, src)
        else:  # fp32, or the fallback row of dropped rows (row stride 0)
            store_fp32_row(dst, src, groups, src)


@_jit
def gather_rows8(
    rows, n_rows, bits, words, directory, kinds, dl, ds, where, blocks, fb, out, qoff
):  # fmt: skip
    """:func:`gather_rows` for ``dim % 8 == 0`` (``out`` C-contiguous): each located row is
    decoded eight columns at a time straight into its output row (``qoff[k]`` the byte
    offset of kind ``k``'s scale and bias in its row)."""
    base = out.ctypes.data
    stride = out.shape[1] * 4
    groups = out.shape[1] >> 3
    n = rows.size
    kk = np.empty(2 * CHUNK, np.int64)
    ss = np.empty(2 * CHUNK, np.int64)
    n_chunks = (n + CHUNK - 1) // CHUNK
    for c in range(n_chunks + 1):
        if c < n_chunks:
            a = c * CHUNK
            h = (c & 1) * CHUNK
            bad = _locate(
                rows, a, min(CHUNK, n - a), n_rows, bits, words, directory,
                kinds, dl, ds, where, kk[h:], ss[h:],
            )  # fmt: skip
            if bad >= 0:
                return bad
        if c > 0:
            a = (c - 1) * CHUNK
            h = ((c - 1) & 1) * CHUNK
            _store_chunk(kk[h:], ss[h:], min(CHUNK, n - a), a, where, qoff, base, stride, groups)
    return -1


@_jit
def pool_rows(
    indices, offsets, n_rows, bits, words, directory, kinds, dl, ds, where, blocks, fb, out
):
    """Sum the rows of bag ``k`` (``indices[offsets[k]:offsets[k + 1]]``) into ``out[k]``."""
    n = indices.size
    d = out.shape[1]
    kk = np.empty(2 * CHUNK, np.int64)
    ss = np.empty(2 * CHUNK, np.int64)
    buf = np.empty((CHUNK, d), np.float32)
    n_chunks = (n + CHUNK - 1) // CHUNK
    bag = 0
    for c in range(n_chunks + 1):
        if c < n_chunks:
            a = c * CHUNK
            h = (c & 1) * CHUNK
            bad = _locate(
                indices, a, min(CHUNK, n - a), n_rows, bits, words, directory,
                kinds, dl, ds, where, kk[h:], ss[h:],
            )  # fmt: skip
            if bad >= 0:
                return bad
        if c > 0:
            a = (c - 1) * CHUNK
            h = ((c - 1) & 1) * CHUNK
            m = min(CHUNK, n - a)
            _decode(kk[h:], ss[h:], m, blocks, fb, buf, 0)
            for t in range(m):
                while offsets[bag + 1] <= a + t:
                    bag += 1
                for j in range(d):
                    out[bag, j] += buf[t, j]
    return -1


@_jit
def _add_chunk(kk, ss, m, a, offsets, bag, where, qoff, out, base, groups):
    """Add rows ``(kk[t], ss[t])``, index positions ``a + t``, into their bags of ``out``
    (address ``base``) eight columns at a time; returns the bag of the last row."""
    stride = out.shape[1] * 4
    for t in range(m):
        while offsets[bag + 1] <= a + t:
            bag += 1
        kind, s = kk[t], ss[t]
        dst = base + bag * stride
        src = where[kind, 0] + s * where[kind, 1]
        if kind == 3:
            add_int4_row(dst, src, groups, src + qoff[3])
        elif kind == 4:
            add_int2_row(dst, src, groups, src + qoff[4])
        elif kind == 2:
            add_int8_row(dst, src, groups, src + qoff[2])
        elif kind == 1:
            add_fp16_row(dst, src, groups, src)
        else:
            add_fp32_row(dst, src, groups, src)
    return bag


@_jit
def _pool_runs(kk, ss, m, a, offsets, bag, where, qoff, base, stride, groups):
    """:func:`_add_chunk` one bag at a time: each bag's run of rows in the chunk is pooled
    by a ``pool_run<groups>`` intrinsic (``groups`` 1, 2, 4, 8 or 16)."""
    kk_at, ss_at = kk.ctypes.data, ss.ctypes.data
    where_at, qoff_at = where.ctypes.data, qoff.ctypes.data
    t = 0
    while t < m:
        while offsets[bag + 1] <= a + t:
            bag += 1
        end = min(m, offsets[bag + 1] - a)
        dst = base + bag * stride
        n = end - t
        if groups == 8:
            pool_run8(dst, kk_at + 8 * t, ss_at + 8 * t, n, where_at, qoff_at)
        elif groups == 4:
            pool_run4(dst, kk_at + 8 * t, ss_at + 8 * t, n, where_at, qoff_at)
        elif groups == 16:
            pool_run16(dst, kk_at + 8 * t, ss_at + 8 * t, n, where_at, qoff_at)
        elif groups == 2:
            pool_run2(dst, kk_at + 8 * t, ss_at + 8 * t, n, where_at, qoff_at)
        else:
            pool_run1(dst, kk_at + 8 * t, ss_at + 8 * t, n, where_at, qoff_at)
        t = end
    return bag


@_jit
def pool_rows8(
    indices, offsets, n_rows, bits, words, directory, kinds, dl, ds, where, blocks, fb, out,
    qoff,
):  # fmt: skip
    """:func:`pool_rows` for ``dim % 8 == 0`` without the chunk buffer: each located row
    is decoded eight columns at a time straight into its bag (``out`` C-contiguous;
    ``qoff[k]`` the byte offset of kind ``k``'s scale and bias in its row)."""
    base = out.ctypes.data
    n = indices.size
    groups = out.shape[1] >> 3
    stride = out.shape[1] * 4
    runs = groups == 1 or groups == 2 or groups == 4 or groups == 8 or groups == 16
    kk = np.empty(2 * CHUNK, np.int64)
    ss = np.empty(2 * CHUNK, np.int64)
    n_chunks = (n + CHUNK - 1) // CHUNK
    bag = 0
    for c in range(n_chunks + 1):
        if c < n_chunks:
            a = c * CHUNK
            h = (c & 1) * CHUNK
            bad = _locate(
                indices, a, min(CHUNK, n - a), n_rows, bits, words, directory,
                kinds, dl, ds, where, kk[h:], ss[h:],
            )  # fmt: skip
            if bad >= 0:
                return bad
        if c > 0:
            a = (c - 1) * CHUNK
            h = ((c - 1) & 1) * CHUNK
            if runs:
                bag = _pool_runs(
                    kk[h:], ss[h:], min(CHUNK, n - a), a, offsets, bag, where, qoff, base,
                    stride, groups,
                )  # fmt: skip
            else:
                bag = _add_chunk(
                    kk[h:], ss[h:], min(CHUNK, n - a), a, offsets, bag, where, qoff, out, base,
                    groups,
                )  # fmt: skip
    return -1


@_jit
def two_scale_rows(rows, n_rows, bits, codes, step, col, half, out):
    """``out[i, c] = ((code - half + 0.5) * step[row]) * col[c]`` in float32, the row
    ``PREFETCH_AHEAD`` requests ahead prefetched; returns the first bad position or -1."""
    n = rows.size
    d = out.shape[1]
    off = np.float32(half - 0.5)
    width = codes.shape[1]
    mask = (1 << bits) - 1
    umask = np.uint64(mask)
    sixteenth, sixteen = np.float32(0.0625), np.float32(16.0)
    two, three, four, six = np.int32(2), np.int32(3), np.int32(4), np.int32(6)
    for i in range(n):
        r = rows[i]
        if r < 0 or r >= n_rows:
            return i
        if i + PREFETCH_AHEAD < n:
            ahead = rows[i + PREFETCH_AHEAD]
            if ahead >= 0 and ahead < n_rows:
                prefetch_row(codes, ahead)
        st = step[r]
        if bits == 8:
            for c in range(d):
                out[i, c] = ((np.float32(codes[r, c]) - off) * st) * col[c]
        elif bits == 4:
            for j in range(d >> 1):  # nibbles split in float32 (exact), as in _decode
                q = np.float32(codes[r, j])
                hi = np.floor(q * sixteenth)
                out[i, 2 * j] = ((q - hi * sixteen - off) * st) * col[2 * j]
                out[i, 2 * j + 1] = ((hi - off) * st) * col[2 * j + 1]
            if d & 1:
                out[i, d - 1] = ((np.float32(codes[r, d >> 1] & 15) - off) * st) * col[d - 1]
        elif bits == 2:
            for j in range(d >> 2):  # int32 lanes, as in _decode
                b = np.int32(codes[r, j])
                out[i, 4 * j] = ((np.float32(b & three) - off) * st) * col[4 * j]
                out[i, 4 * j + 1] = ((np.float32((b >> two) & three) - off) * st) * col[4 * j + 1]
                out[i, 4 * j + 2] = ((np.float32((b >> four) & three) - off) * st) * col[4 * j + 2]
                out[i, 4 * j + 3] = ((np.float32(b >> six) - off) * st) * col[4 * j + 3]
            for c in range(d - d % 4, d):
                code = (codes[r, c >> 2] >> ((c & 3) * 2)) & 3
                out[i, c] = ((np.float32(code) - off) * st) * col[c]
        else:  # 3, 5, 6 or 7 bits: every 8 codes fill ``bits`` bytes, read as one word
            full = d >> 3
            for g in range(full):
                base = g * bits
                word = np.uint64(0)
                for k in range(bits):
                    word |= np.uint64(codes[r, base + k]) << np.uint64(8 * k)
                for k in range(8):
                    code = (word >> np.uint64(k * bits)) & umask
                    c = 8 * g + k
                    out[i, c] = ((np.float32(code) - off) * st) * col[c]
            for c in range(8 * full, d):  # the tail: a code may straddle two bytes
                first = c * bits
                byte = first >> 3
                pair = np.int64(codes[r, byte])
                if byte + 1 < width:
                    pair |= np.int64(codes[r, byte + 1]) << 8
                code = (pair >> (first & 7)) & mask
                out[i, c] = ((np.float32(code) - off) * st) * col[c]
    return -1


@_jit
def _two_scale_row8(dst, src, groups, col, off, st, bits, add):
    """One row through the intrinsic of its width (the branch on ``bits`` always predicts)."""
    if add:
        if bits == 4:
            ts_add4(dst, src, groups, col, off, st)
        elif bits == 2:
            ts_add2(dst, src, groups, col, off, st)
        elif bits == 8:
            ts_add8(dst, src, groups, col, off, st)
        elif bits == 3:
            ts_add3(dst, src, groups, col, off, st)
        elif bits == 5:
            ts_add5(dst, src, groups, col, off, st)
        elif bits == 6:
            ts_add6(dst, src, groups, col, off, st)
        else:
            ts_add7(dst, src, groups, col, off, st)
    elif bits == 4:
        ts_put4(dst, src, groups, col, off, st)
    elif bits == 2:
        ts_put2(dst, src, groups, col, off, st)
    elif bits == 8:
        ts_put8(dst, src, groups, col, off, st)
    elif bits == 3:
        ts_put3(dst, src, groups, col, off, st)
    elif bits == 5:
        ts_put5(dst, src, groups, col, off, st)
    elif bits == 6:
        ts_put6(dst, src, groups, col, off, st)
    else:
        ts_put7(dst, src, groups, col, off, st)


@_jit
def two_scale_rows8(rows, offsets, n_rows, bits, codes, step, col, half, out):
    """Two-scale rows for ``dim % 8 == 0``, eight columns at a time (``out``, ``codes``
    and ``col`` C-contiguous). With ``offsets`` empty, row
    ``i`` goes to ``out[i]``; otherwise the rows of bag ``k`` are added, in index order,
    into ``out[k]`` (zeros on entry). Returns the first bad position or -1."""
    n = rows.size
    groups = out.shape[1] >> 3
    width = codes.shape[1]
    stride = out.shape[1] * 4
    base, cbase, colbase = out.ctypes.data, codes.ctypes.data, col.ctypes.data
    off = np.float32(half - 0.5)
    pooled = offsets.size > 0
    bag = 0
    for i in range(n):
        r = rows[i]
        if r < 0 or r >= n_rows:
            return i
        if i + PREFETCH_AHEAD < n:
            ahead = rows[i + PREFETCH_AHEAD]
            if ahead >= 0 and ahead < n_rows:
                prefetch_address(cbase + ahead * width)
        if pooled:
            while offsets[bag + 1] <= i:
                bag += 1
            dst = base + bag * stride
        else:
            dst = base + i * stride
        _two_scale_row8(dst, cbase + r * width, groups, colbase, off, step[r], bits, pooled)
    return -1


@_jit
def bag_sums(rows_out, offsets, out):
    """``out[k] += rows_out[i]`` for the positions ``i`` of bag ``k``, in index order."""
    d = out.shape[1]
    for k in range(offsets.size - 1):
        for i in range(offsets[k], offsets[k + 1]):
            for c in range(d):
                out[k, c] += rows_out[i, c]
