// GEMM over active channel blocks, in slot space (see kernel_args.h):
//   out[out_rows(m), out_cols(n)] = act(sum_k a(m, k) * b(n, k) + bias)
// One kernel template serves forward (x . W^T), dX (dy' . W) and dW (dy'^T . x): the operands
// differ only in which dimension is contiguous in memory, which the smem layout mirrors.
//
// Structure: 128x128 output tile per 256-thread CTA, K walked in BK-slot steps through a
// multi-stage cp.async pipeline (16-byte copies; an element-wise fallback when the operand is
// not 16-byte friendly, e.g. odd block sizes). fp16/bf16 run on tensor cores (ldmatrix +
// mma.sync m16n8k16, fp32 accumulators); fp32 runs on FFMA (no TF32: results match fp32 GEMMs).
// The epilogue adds bias, applies ReLU and scatters to the real channels; split-K writes fp32
// partials that split_k_reduce_kernel sums in a fixed order (deterministic). Extra CTAs of the
// same launch write the zeros of the inactive output blocks.
#include <cuda_runtime.h>

#include <algorithm>
#include <type_traits>

#include "device_utils.cuh"
#include "zero_fill.cuh"

namespace amgp {
namespace cuda {
namespace {

constexpr int kThreads = 256;
constexpr int kTileM = kGemmTileM;
constexpr int kTileN = kGemmTileN;
constexpr int kGroupM = 8;  // CTA raster: 8 M-tiles share each N-tile sweep (L2 reuse)
static_assert(kThreads == kZeroThreads, "the GEMM's extra CTAs run the zero fill");

template <typename T>
struct GemmConfig {
  static constexpr bool kTensorCores = !std::is_same<T, float>::value;
  static constexpr int kTileK = kTensorCores ? 32 : 16;
  static constexpr int kStages = kTensorCores ? 4 : 3;
  static constexpr int kVec = 16 / sizeof(T);  // elements per 16-byte copy
  static constexpr int kMinBlocks = kTensorCores ? 2 : 1;  // 2 CTAs/SM: <= 128 registers, no spills
};

// Raw storage type: element copies in the fallback path move bits, zero is all-zero bits.
template <typename T>
using Raw = typename std::conditional<sizeof(T) == 2, uint16_t, uint32_t>::type;

// Shared-memory image of one operand tile (ROWS x kTileK) in the operand's own memory order,
// padded by one 16-byte vector per line (conflict-free ldmatrix / LDS.128, 16-byte aligned lines).
template <typename T, bool K_CONTIG>
struct TileLayout {
  static constexpr int kRows = 128;
  static constexpr int kK = GemmConfig<T>::kTileK;
  static constexpr int kVec = GemmConfig<T>::kVec;
  static constexpr int kLine = K_CONTIG ? kK + kVec : kRows + kVec;  // elements per smem line
  static constexpr int kElems = K_CONTIG ? kRows * kLine : kK * kLine;
  static constexpr int kChunks = kRows * kK / kVec;
  static constexpr int kChunksPerThread = kChunks / kThreads;
  static_assert(kChunks % kThreads == 0, "tile must split evenly over the threads");
  static_assert((kLine * sizeof(T)) % 16 == 0, "smem lines must stay 16-byte aligned");

  __device__ static int offset(int r, int k) { return K_CONTIG ? r * kLine + k : k * kLine + r; }
};

__device__ __forceinline__ void cp_async_16(void* smem, const void* gmem, bool valid) {
  const unsigned dst = static_cast<unsigned>(__cvta_generic_to_shared(smem));
  const int src_bytes = valid ? 16 : 0;  // 0: fill the 16 bytes with zeros, read nothing
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(gmem), "r"(src_bytes));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int N>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
}

// Loads one operand's K-step tiles into shared memory. Each thread owns kChunksPerThread
// 16-byte chunks at fixed tile positions; the position along the non-K dimension is mapped
// to a real channel once, the K position once per K-step. The operand description is read
// from the kernel parameters on each use (constant bank), which keeps registers for the MMA.
template <typename T, bool K_CONTIG>
struct TileLoader {
  using L = TileLayout<T, K_CONTIG>;
  static constexpr int kVec = L::kVec;
  static constexpr int kPerLine = K_CONTIG ? L::kK / kVec : L::kRows / kVec;  // chunks per smem line

  // K_CONTIG: real row * ld, else: real column of the chunk's first element; -1 = invalid.
  int64_t fixed[L::kChunksPerThread];

  __device__ static int chunk(int tid, int i) { return tid + i * kThreads; }
  __device__ static int r_local(int tid, int i) {
    return K_CONTIG ? chunk(tid, i) / kPerLine : (chunk(tid, i) % kPerLine) * kVec;
  }
  __device__ static int k_local(int tid, int i) {
    return K_CONTIG ? (chunk(tid, i) % kPerLine) * kVec : chunk(tid, i) / kPerLine;
  }

  __device__ TileLoader(const Operand& op, int row0, int tid) {
#pragma unroll
    for (int i = 0; i < L::kChunksPerThread; ++i) {
      const int32_t r = map_channel(op.rows, row0 + r_local(tid, i));
      fixed[i] = K_CONTIG ? (r >= 0 ? static_cast<int64_t>(r) * op.ld : -1) : r;
    }
  }

  __device__ void load(const Operand& op, T* stage, int row0, int k0, int tid) const {
    const Raw<T>* data = static_cast<const Raw<T>*>(op.data);
    Raw<T>* tile = reinterpret_cast<Raw<T>*>(stage);
#pragma unroll
    for (int i = 0; i < L::kChunksPerThread; ++i) {
      const int rl = r_local(tid, i), kl = k_local(tid, i);
      Raw<T>* dst = tile + L::offset(rl, kl);
      if (op.vectorizable) {
        // The whole chunk is valid or invalid together (vector_friendly on the host).
        const int32_t k = map_channel(op.ks, k0 + kl);
        const bool ok = fixed[i] >= 0 && k >= 0;
        const int64_t at = K_CONTIG ? fixed[i] + k : static_cast<int64_t>(k) * op.ld + fixed[i];
        cp_async_16(dst, ok ? data + at : data, ok);
      } else if (K_CONTIG) {  // element-wise fallback: odd block sizes, tails, misalignment
#pragma unroll 1
        for (int e = 0; e < kVec; ++e) {
          const int32_t k = map_channel(op.ks, k0 + kl + e);
          dst[e] = (fixed[i] >= 0 && k >= 0) ? data[fixed[i] + k] : Raw<T>(0);
        }
      } else {
        const int32_t k = map_channel(op.ks, k0 + kl);
#pragma unroll 1
        for (int e = 0; e < kVec; ++e) {
          const int32_t r = map_channel(op.rows, row0 + rl + e);
          dst[e] = (r >= 0 && k >= 0) ? data[static_cast<int64_t>(k) * op.ld + r] : Raw<T>(0);
        }
      }
    }
  }
};

// ---------------------------------------------------------------------------------------------
// Tensor-core warp tile: 8 warps as 2 (M) x 4 (N), each 64 x 32 = 4 x 4 mma.m16n8k16 tiles.

__device__ __forceinline__ void ldmatrix_x4(uint32_t (&r)[4], const void* smem, bool trans) {
  const unsigned a = static_cast<unsigned>(__cvta_generic_to_shared(smem));
  if (trans)
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(a));
  else
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(a));
}

template <typename T>
__device__ __forceinline__ void mma_16816(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  if (std::is_same<T, __half>::value)
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
        "{%0,%1,%2,%3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  else
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
        "{%0,%1,%2,%3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

template <typename T, bool A_K, bool B_K>
struct MmaWarpTile {
  using LA = TileLayout<T, A_K>;
  using LB = TileLayout<T, B_K>;
  float acc[4][4][4];
  int wm, wn, lane;

  __device__ explicit MmaWarpTile(int tid) {
    const int warp = tid / 32;
    wm = (warp / 4) * 64;
    wn = (warp % 4) * 32;
    lane = tid % 32;
#pragma unroll
    for (int i = 0; i < 4; ++i)
#pragma unroll
      for (int j = 0; j < 4; ++j)
#pragma unroll
        for (int e = 0; e < 4; ++e) acc[i][j][e] = 0.f;
  }

  __device__ void compute(const T* sa, const T* sb) {
    const int q = lane / 8, l8 = lane % 8;
#pragma unroll
    for (int kk = 0; kk < LA::kK; kk += 16) {
      uint32_t af[4][4], bf[4][2];
#pragma unroll
      for (int mi = 0; mi < 4; ++mi) {
        // Matrices: (rows 0-7, k 0-7), (rows 8-15, k 0-7), (rows 0-7, k 8-15), (rows 8-15, k 8-15).
        const int m = wm + mi * 16 + (q & 1) * 8;
        const int k = kk + (q >> 1) * 8;
        const int at = A_K ? LA::offset(m + l8, k) : LA::offset(m, k + l8);
        ldmatrix_x4(af[mi], sa + at, !A_K);
      }
#pragma unroll
      for (int np = 0; np < 2; ++np) {
        // Matrices: (n 0-7, k 0-7), (n 0-7, k 8-15), (n 8-15, k 0-7), (n 8-15, k 8-15).
        const int n = wn + np * 16 + (q >> 1) * 8;
        const int k = kk + (q & 1) * 8;
        const int at = B_K ? LB::offset(n + l8, k) : LB::offset(n, k + l8);
        uint32_t r[4];
        ldmatrix_x4(r, sb + at, !B_K);
        bf[2 * np][0] = r[0];
        bf[2 * np][1] = r[1];
        bf[2 * np + 1][0] = r[2];
        bf[2 * np + 1][1] = r[3];
      }
#pragma unroll
      for (int mi = 0; mi < 4; ++mi)
#pragma unroll
        for (int ni = 0; ni < 4; ++ni) mma_16816<T>(acc[mi][ni], af[mi], bf[ni][0], bf[ni][1]);
    }
  }

  // f(m_local, n_local, value) for every accumulator (mma C fragment layout).
  template <typename F>
  __device__ void for_each(F&& f) const {
    const int g = lane / 4, t = lane % 4;
#pragma unroll
    for (int mi = 0; mi < 4; ++mi)
#pragma unroll
      for (int ni = 0; ni < 4; ++ni)
#pragma unroll
        for (int e = 0; e < 4; ++e)
          f(wm + mi * 16 + g + (e >> 1) * 8, wn + ni * 8 + 2 * t + (e & 1), acc[mi][ni][e]);
  }
};

// ---------------------------------------------------------------------------------------------
// fp32 FFMA thread tile: 16 x 16 threads, 8 x 8 outputs each. Along a K-contiguous operand a
// thread takes every 16th line (few bank conflicts); along an M/N-contiguous one two float4 runs.

template <bool K_CONTIG>
__device__ __forceinline__ int simt_line(int t, int i) {
  return K_CONTIG ? t + 16 * i : (i < 4 ? t * 4 + i : 64 + t * 4 + (i - 4));
}

template <bool K_CONTIG>
__device__ __forceinline__ void simt_fragment(float (&v)[8], const float* s, int t, int k) {
  using L = TileLayout<float, K_CONTIG>;
  if (K_CONTIG) {
#pragma unroll
    for (int i = 0; i < 8; ++i) v[i] = s[L::offset(simt_line<true>(t, i), k)];
  } else {
    const float4 lo = *reinterpret_cast<const float4*>(s + L::offset(t * 4, k));
    const float4 hi = *reinterpret_cast<const float4*>(s + L::offset(64 + t * 4, k));
    v[0] = lo.x; v[1] = lo.y; v[2] = lo.z; v[3] = lo.w;
    v[4] = hi.x; v[5] = hi.y; v[6] = hi.z; v[7] = hi.w;
  }
}

template <bool A_K, bool B_K>
struct SimtThreadTile {
  float acc[8][8];
  int tm, tn;

  __device__ explicit SimtThreadTile(int tid) : tm(tid / 16), tn(tid % 16) {
#pragma unroll
    for (int i = 0; i < 8; ++i)
#pragma unroll
      for (int j = 0; j < 8; ++j) acc[i][j] = 0.f;
  }

  __device__ void compute(const float* sa, const float* sb) {
#pragma unroll
    for (int k = 0; k < GemmConfig<float>::kTileK; ++k) {
      float a[8], b[8];
      simt_fragment<A_K>(a, sa, tm, k);
      simt_fragment<B_K>(b, sb, tn, k);
#pragma unroll
      for (int i = 0; i < 8; ++i)
#pragma unroll
        for (int j = 0; j < 8; ++j) acc[i][j] = fmaf(a[i], b[j], acc[i][j]);
    }
  }

  template <typename F>
  __device__ void for_each(F&& f) const {
#pragma unroll
    for (int i = 0; i < 8; ++i)
#pragma unroll
      for (int j = 0; j < 8; ++j) f(simt_line<A_K>(tm, i), simt_line<B_K>(tn, j), acc[i][j]);
  }
};

template <typename T, bool A_K, bool B_K>
using WarpTile = typename std::conditional<GemmConfig<T>::kTensorCores, MmaWarpTile<T, A_K, B_K>,
                                           SimtThreadTile<A_K, B_K>>::type;

// ---------------------------------------------------------------------------------------------

// Final value of output slot (m, n): bias, ReLU, scatter to the real channel.
template <typename T>
__device__ __forceinline__ void store_output(const GemmArgs& p, int64_t m, int64_t n, float v) {
  const int32_t r = map_channel(p.out_rows, m);
  const int32_t c = map_channel(p.out_cols, n);
  if (r < 0 || c < 0) return;
  if (p.bias != nullptr) v += to_float(static_cast<const T*>(p.bias)[map_channel(p.bias_cols, n)]);
  if (p.relu) v = relu_keep_nan(v);
  static_cast<T*>(p.out)[static_cast<int64_t>(r) * p.ld_out + c] = from_float<T>(v);
}

template <typename T>
constexpr int gemm_smem_bytes(bool a_k, bool b_k) {
  return GemmConfig<T>::kStages * sizeof(T) *
         ((a_k ? TileLayout<T, true>::kElems : TileLayout<T, false>::kElems) +
          (b_k ? TileLayout<T, true>::kElems : TileLayout<T, false>::kElems));
}

template <typename T, bool A_K, bool B_K>
__global__ void __launch_bounds__(kThreads, GemmConfig<T>::kMinBlocks) block_gemm_kernel(const GemmArgs p) {
  using C = GemmConfig<T>;
  using LA = TileLayout<T, A_K>;
  using LB = TileLayout<T, B_K>;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  T* smem = reinterpret_cast<T*>(smem_raw);

  // Grouped raster over the (M, N) tile grid; CTAs past the tiles write the inactive zeros
  // (scheduled last, they fill the final wave).
  const int tiles_m = (p.m + kTileM - 1) / kTileM;
  const int tiles_n = (p.n + kTileN - 1) / kTileN;
  const int pid = blockIdx.x;
  if (pid >= tiles_m * tiles_n) {
    if (blockIdx.z == 0) zero_fill_ctas(p.zero, pid - tiles_m * tiles_n, p.zero_ctas);
    return;
  }
  const int per_group = kGroupM * tiles_n;
  const int first_m = (pid / per_group) * kGroupM;
  const int group_rows = min(tiles_m - first_m, kGroupM);
  const int m0 = (first_m + (pid % per_group) % group_rows) * kTileM;
  const int n0 = ((pid % per_group) / group_rows) * kTileN;

  // This split's K-steps.
  const int k_steps = (p.k + C::kTileK - 1) / C::kTileK;
  const int steps_per_split = (k_steps + p.splits - 1) / p.splits;
  const int step_begin = blockIdx.z * steps_per_split;
  const int step_end = min(k_steps, step_begin + steps_per_split);
  const int steps = max(0, step_end - step_begin);

  const int tid = threadIdx.x;
  const TileLoader<T, A_K> load_a(p.a, m0, tid);
  const TileLoader<T, B_K> load_b(p.b, n0, tid);
  auto stage_a = [&](int s) { return smem + s * (LA::kElems + LB::kElems); };
  auto stage_b = [&](int s) { return smem + s * (LA::kElems + LB::kElems) + LA::kElems; };

#pragma unroll
  for (int s = 0; s < C::kStages - 1; ++s) {
    if (s < steps) {
      load_a.load(p.a, stage_a(s), m0, (step_begin + s) * C::kTileK, tid);
      load_b.load(p.b, stage_b(s), n0, (step_begin + s) * C::kTileK, tid);
    }
    cp_async_commit();
  }

  WarpTile<T, A_K, B_K> tile(tid);
  for (int i = 0; i < steps; ++i) {
    // Step i's group is complete once at most kStages-2 newer groups are pending; the barrier
    // also guarantees everyone finished computing on the stage that is refilled below.
    cp_async_wait<C::kStages - 2>();
    __syncthreads();
    const int next = i + C::kStages - 1;
    if (next < steps) {
      load_a.load(p.a, stage_a(next % C::kStages), m0, (step_begin + next) * C::kTileK, tid);
      load_b.load(p.b, stage_b(next % C::kStages), n0, (step_begin + next) * C::kTileK, tid);
    }
    cp_async_commit();
    tile.compute(stage_a(i % C::kStages), stage_b(i % C::kStages));
  }
  cp_async_wait<0>();

  if (p.splits > 1) {
    float* ws = p.workspace + static_cast<int64_t>(blockIdx.z) * p.m * p.n;
    tile.for_each([&](int ml, int nl, float v) {
      const int64_t m = m0 + ml, n = n0 + nl;
      if (m < p.m && n < p.n) ws[m * p.n + n] = v;
    });
  } else {
    tile.for_each([&](int ml, int nl, float v) { store_output<T>(p, m0 + ml, n0 + nl, v); });
  }
}

template <typename T>
__global__ void split_k_reduce_kernel(const GemmArgs p) {
  const int64_t count = static_cast<int64_t>(p.m) * p.n;
  for (int64_t idx = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; idx < count;
       idx += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    float v = 0.f;
    for (int z = 0; z < p.splits; ++z) v += p.workspace[z * count + idx];
    store_output<T>(p, idx / p.n, idx % p.n, v);
  }
}

template <typename T, bool A_K, bool B_K>
cudaError_t launch_typed(const GemmArgs& p, cudaStream_t stream) {
  const int64_t tiles = static_cast<int64_t>((p.m + kTileM - 1) / kTileM) * ((p.n + kTileN - 1) / kTileN);
  if (tiles == 0) return cudaSuccess;
  if (tiles > INT32_MAX || p.splits < 1 || p.splits > 65535 || (p.splits > 1 && p.workspace == nullptr))
    return cudaErrorInvalidValue;
  constexpr int smem = gemm_smem_bytes<T>(A_K, B_K);
  auto kernel = block_gemm_kernel<T, A_K, B_K>;
  cudaError_t err = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, smem);
  if (err != cudaSuccess) return err;
  if (p.zero_ctas < 0 || tiles + p.zero_ctas > INT32_MAX) return cudaErrorInvalidValue;
  kernel<<<dim3(static_cast<unsigned>(tiles + p.zero_ctas), 1, p.splits), kThreads, smem, stream>>>(p);
  err = cudaGetLastError();
  if (err != cudaSuccess || p.splits == 1) return err;
  const int64_t count = static_cast<int64_t>(p.m) * p.n;
  const int64_t blocks = std::min<int64_t>((count + 255) / 256, 65535);
  split_k_reduce_kernel<T><<<static_cast<unsigned>(blocks), 256, 0, stream>>>(p);
  return cudaGetLastError();
}

}  // namespace

// Instantiated layouts: forward (a: K-contig x, b: K-contig W), dX (a: K-contig dy', b: N-contig W),
// dW (a: M-contig dy', b: N-contig x). Other combinations are rejected.
cudaError_t launch_block_gemm(const GemmArgs& p, cudaStream_t stream) {
  const bool a_k = p.a.k_contiguous, b_k = p.b.k_contiguous;
  if (!a_k && b_k) return cudaErrorInvalidValue;
  return dispatch_dtype(p.dtype, [&](auto tag) -> cudaError_t {
    using T = decltype(tag);
    if (a_k && b_k) return launch_typed<T, true, true>(p, stream);
    if (a_k) return launch_typed<T, true, false>(p, stream);
    return launch_typed<T, false, false>(p, stream);
  });
}

}  // namespace cuda
}  // namespace amgp
