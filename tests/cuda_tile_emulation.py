"""CPU emulation of block_gemm.cu's data movement, for checking its index math without a GPU.

Mirrors (by hand: keep in step with block_gemm.cu) TileLoader (16-byte and element-wise paths, both
shared-memory layouts), the ldmatrix(.trans) x4 lane addresses of MmaWarpTile, and the fp32 SIMT
fragment reads; ldmatrix and the mma.m16n8k16 A/B fragment layouts are modelled from the PTX ISA.
Checks, for random block lists, tails, block sizes and leading dimensions, that every warp's
fragments equal the true operand tile in slot space (gathered through the block maps, zero outside).
tests/test_cuda_tile_emulation.py runs it: a seed per configuration by default, 40 seeds with --runslow.
"""
import itertools

import numpy as np

THREADS = 256


def make_map(blocks, bs, features):
    """Python twin of map_channel. blocks None = identity over `features`."""
    if blocks is None:
        extent = features
    else:
        bs = max(1, min(bs, features))
        extent = len(blocks) * bs

    def ch(j):
        if j < 0 or j >= extent:
            return -1
        if blocks is None:
            return j
        c = blocks[j // bs] * bs + j % bs
        return c if c < features else -1

    return dict(ch=ch, extent=extent, features=features, bs=bs, blocks=blocks)


def vector_friendly(ld, cmap, vec):
    if ld % vec or cmap["features"] % vec:
        return False
    if cmap["blocks"] is not None:
        return cmap["bs"] % vec == 0
    return cmap["extent"] % vec == 0


class Layout:
    def __init__(self, esize, k_contig):
        self.vec = 16 // esize
        self.kk = 32 if esize == 2 else 16
        self.rows = 128
        self.k_contig = k_contig
        self.line = self.kk + self.vec if k_contig else self.rows + self.vec
        self.elems = self.rows * self.line if k_contig else self.kk * self.line
        self.per_thread = self.rows * self.kk // self.vec // THREADS

    def offset(self, r, k):
        return r * self.line + k if self.k_contig else k * self.line + r


def load_tile(L, data, ld, rows_map, ks_map, vec_ok, row0, k0):
    """Emulates TileLoader ctor + load for every thread; returns the smem stage (NaN = never written)."""
    smem = np.full(L.elems, np.nan)
    per_line = L.kk // L.vec if L.k_contig else L.rows // L.vec
    flat = data.reshape(-1)
    for tid in range(THREADS):
        for i in range(L.per_thread):
            c = tid + i * THREADS
            rl = c // per_line if L.k_contig else (c % per_line) * L.vec
            kl = (c % per_line) * L.vec if L.k_contig else c // per_line
            r = rows_map["ch"](row0 + rl)
            fixed = (r * ld if r >= 0 else -1) if L.k_contig else r
            dst = L.offset(rl, kl)
            if vec_ok:
                k = ks_map["ch"](k0 + kl)
                ok = fixed >= 0 and k >= 0
                at = fixed + k if L.k_contig else k * ld + fixed
                for e in range(L.vec):
                    smem[dst + e] = flat[at + e] if ok else 0.0
            elif L.k_contig:
                for e in range(L.vec):
                    k = ks_map["ch"](k0 + kl + e)
                    smem[dst + e] = flat[fixed + k] if (fixed >= 0 and k >= 0) else 0.0
            else:
                k = ks_map["ch"](k0 + kl)
                for e in range(L.vec):
                    rr = rows_map["ch"](row0 + rl + e)
                    smem[dst + e] = flat[k * ld + rr] if (rr >= 0 and k >= 0) else 0.0
    return smem


def true_tile(data, ld, rows_map, ks_map, k_contig, row0, k0, kk):
    out = np.zeros((128, kk))
    flat = data.reshape(-1)
    for r in range(128):
        rr = rows_map["ch"](row0 + r)
        for k in range(kk):
            kr = ks_map["ch"](k0 + k)
            if rr >= 0 and kr >= 0:
                out[r, k] = flat[rr * ld + kr] if k_contig else flat[kr * ld + rr]
    return out


def ldmatrix_x4(smem, addrs, trans):
    """addrs[lane] = element offset of the 8-element row lane supplies. Returns regs[lane][4] as pairs."""
    regs = [[None] * 4 for _ in range(32)]
    for j in range(4):
        mat = np.array([smem[addrs[8 * j + r]: addrs[8 * j + r] + 8] for r in range(8)])
        for t in range(32):
            g, q = t // 4, t % 4
            if trans:
                regs[t][j] = (mat[2 * q, g], mat[2 * q + 1, g])
            else:
                regs[t][j] = (mat[g, 2 * q], mat[g, 2 * q + 1])
    return regs


def check_mma(LA, LB, sa, sb, tileA, tileB):
    for warp in range(8):
        wm, wn = (warp // 4) * 64, (warp % 4) * 32
        for kk in range(0, LA.kk, 16):
            for mi in range(4):
                addrs = []
                for lane in range(32):
                    q, l8 = lane // 8, lane % 8
                    m = wm + mi * 16 + (q & 1) * 8
                    k = kk + (q >> 1) * 8
                    addrs.append(LA.offset(m + l8, k) if LA.k_contig else LA.offset(m, k + l8))
                regs = ldmatrix_x4(sa, addrs, not LA.k_contig)
                # PTX m16n8k16 A fragment: reg0 (g, 2q..), reg1 (g+8, 2q..), reg2 (g, 2q+8..), reg3 (g+8, 2q+8..)
                for t in range(32):
                    g, q = t // 4, t % 4
                    for reg, (dr, dk) in enumerate([(0, 0), (8, 0), (0, 8), (8, 8)]):
                        for e in range(2):
                            want = tileA[wm + mi * 16 + g + dr, kk + 2 * q + dk + e]
                            assert regs[t][reg][e] == want, ("A", warp, kk, mi, t, reg, e)
            for np_ in range(2):
                addrs = []
                for lane in range(32):
                    q, l8 = lane // 8, lane % 8
                    n = wn + np_ * 16 + (q >> 1) * 8
                    k = kk + (q & 1) * 8
                    addrs.append(LB.offset(n + l8, k) if LB.k_contig else LB.offset(n, k + l8))
                regs = ldmatrix_x4(sb, addrs, not LB.k_contig)
                # B fragment of n8 tile: reg0 (k 2q.., n g), reg1 (k 2q+8.., n g); tiles 2np (r0,r1), 2np+1 (r2,r3)
                for t in range(32):
                    g, q = t // 4, t % 4
                    for sub in range(2):
                        for half in range(2):
                            pair = regs[t][2 * sub + half]
                            for e in range(2):
                                want = tileB[wn + (2 * np_ + sub) * 8 + g, kk + 2 * q + 8 * half + e]
                                assert pair[e] == want, ("B", warp, kk, np_, t, sub, half, e)


def simt_line(k_contig, t, i):
    return t + 16 * i if k_contig else (t * 4 + i if i < 4 else 64 + t * 4 + (i - 4))


def check_simt(LA, LB, sa, sb, tileA, tileB):
    for tid in range(THREADS):
        tm, tn = tid // 16, tid % 16
        for k in range(LA.kk):
            for i in range(8):
                if LA.k_contig:
                    a = sa[LA.offset(simt_line(True, tm, i), k)]
                else:  # float4 reads at (t*4, k) and (64 + t*4, k)
                    base = LA.offset(tm * 4 if i < 4 else 64 + tm * 4, k)
                    a = sa[base + (i % 4)]
                assert a == tileA[simt_line(LA.k_contig, tm, i), k]
                if LB.k_contig:
                    b = sb[LB.offset(simt_line(True, tn, i), k)]
                else:
                    base = LB.offset(tn * 4 if i < 4 else 64 + tn * 4, k)
                    b = sb[base + (i % 4)]
                assert b == tileB[simt_line(LB.k_contig, tn, i), k]


def operand(rng, n_rows_real, n_k_real, k_contig):
    """Real matrix in memory (row-major), with an ld padding; returns data, ld."""
    if k_contig:
        shape = (n_rows_real, n_k_real)
    else:
        shape = (n_k_real, n_rows_real)
    ld = shape[1] + rng.choice([0, 8, 3])
    data = np.zeros((shape[0], ld))
    data[:, : shape[1]] = rng.integers(1, 1000, size=shape)
    return data, ld


def run(seed):
    rng = np.random.default_rng(seed)
    esize = int(rng.choice([2, 4]))
    a_k, b_k = [(True, True), (True, False), (False, False)][seed % 3]
    bs = int(rng.choice([8, 16, 24, 32, 3, 128]))
    fr = int(rng.integers(100, 300))  # real features of the rows side
    fk = int(rng.integers(60, 300))
    def blocks_for(f):
        nb = -(-f // bs)
        kind = rng.choice(["all", "some"])
        if kind == "all":
            return None
        return sorted(rng.choice(nb, size=max(1, nb // 2), replace=False).tolist())
    maps = {}
    for name, f in [("ar", fr), ("ak", fk), ("br", fr + 7), ("bk", fk)]:
        maps[name] = make_map(blocks_for(f) if name != "bk" else maps["ak"]["blocks"], bs, f)
    LA, LB = Layout(esize, a_k), Layout(esize, b_k)
    A, lda = operand(rng, maps["ar"]["features"], fk, a_k)
    B, ldb = operand(rng, maps["br"]["features"], fk, b_k)
    vec = 16 // esize
    for vec_a, vec_b in [(False, False), (vector_friendly(lda, maps["ak" if a_k else "ar"], vec),
                                          vector_friendly(ldb, maps["bk" if b_k else "br"], vec))]:
        for (row0, n0), k0 in itertools.product([(0, 0), (128, 128)],
                                                range(0, max(maps["ak"]["extent"], 1) + LA.kk, LA.kk)):
            sa = load_tile(LA, A, lda, maps["ar"], maps["ak"], vec_a, row0, k0)
            sb = load_tile(LB, B, ldb, maps["br"], maps["bk"], vec_b, n0, k0)
            ta = true_tile(A, lda, maps["ar"], maps["ak"], a_k, row0, k0, LA.kk)
            tb = true_tile(B, ldb, maps["br"], maps["bk"], b_k, n0, k0, LB.kk)
            if esize == 2:
                check_mma(LA, LB, sa, sb, ta, tb)
            else:
                check_simt(LA, LB, sa, sb, ta, tb)
    return esize, a_k, b_k, bs, vec_a, vec_b

