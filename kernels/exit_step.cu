// Exit-step kernels for the early-exit chain (PABEE, DeeBERT, max-prob).
//
// The specification is runtime/policies.py; kernels/reference.py is an exact
// NumPy model of every buffer these kernels read and write. Keep all three in
// step.
//
// Build: this file has no host code and no #include, so it compiles unchanged
// with NVRTC (cuda.core Program, see kernels/loader.py) and with
// `nvcc -cubin -arch=sm_XX -std=c++17` (kernels/compile.py, used by CI).
// fp16 is read as raw 16-bit words and widened with the PTX instruction
// cvt.f32.f16, because NVRTC does not ship cuda_fp16.h as a builtin header.
// Do not build with -use_fast_math: the entropy/max-prob paths use expf/logf.
//
// Layout
// ------
// A "packed" batch holds the n_active rows that are still running; active_idx
// maps packed row -> original sample id (0..B-1). Per-sample state buffers have
// one entry per ORIGINAL sample (length B) and are indexed through active_idx:
//   prev_label   int32  [B]     last argmax label, -1 = none (first layer / NaN)
//   prev_value   float32[B]     last regression output, NaN = none
//   counter      int32  [B]     consecutive agreements (patience)
//   done         uint8  [B]     1 once the sample has exited
//   exit_layer   int32  [B]     1-based layer at which it exited, 0 = running
//   exit_outputs float32[B, C]  the row's logits at its exit layer (widened to fp32)
// Buffers a policy does not use may be null (see each kernel).
//
// Semantics (identical to runtime/policies.py)
// --------------------------------------------
// * Classification labels are argmax with ties broken to the LOWEST index
//   (numpy.argmax); -0.0 == +0.0 counts as a tie.
// * NaN logits never count as settled: a row containing any NaN gets label -1,
//   its patience counter resets to 0 and the entropy/max-prob rules do not
//   fire for it. Regression compares |y_i - y_{i-1}| < tau, which is false
//   for NaN, so a NaN output also resets the counter.
// * Counters are per sample. The last layer (layer == num_layers) always fires.
// * Patience, regression patience and full depth are bit-exact with the
//   NumPy policies (regression compares in double precision, as NumPy does;
//   fp32/fp16 values widen to double exactly).
// * Entropy and max-prob are computed in fp32 here while NumPy uses float64:
//   rows whose score lies within ~1e-6 of the threshold may decide
//   differently (the error is ~1e-6 absolute, in nats for entropy and as a
//   probability for max-prob, i.e. ~1e-6 relative for scores of order 1).
//   Sums run per lane, then over a butterfly, so no summation over C classes
//   is sequential; all terms of S and T have one sign, so nothing cancels.
// * NaN-free rows whose softmax is undefined (a +inf logit, or every logit
//   -inf) follow NumPy exactly: policies.entropy drops the NaN probabilities
//   (p > 0 is false) and returns entropy 0, so the entropy rule FIRES for them;
//   max-prob sees a NaN maximum and does NOT fire.
//
// Entry points (all extern "C"; the argument lists are the ABI with loader.py,
// declared in kernels/spec.py KERNEL_SIGNATURES and checked against the cubin)
// ----------------------------------------------------------------------------
// exit_{full,patience,regression,entropy,maxprob}_step_{f32,f16}(
//     const T* logits, const int* active_idx, const int* n_active_dev,
//     int n_active, int num_classes, int layer, int num_layers,
//     int patience, double tau, float threshold,
//     int* prev_label, float* prev_value, int* counter,
//     unsigned char* done, int* exit_layer, float* exit_outputs)
//   One warp per packed row; launch with blockDim.x a multiple of 32 and
//   gridDim.x * (blockDim.x / 32) >= n_active.
// exit_compact(const unsigned char* done, const int* active_idx,
//     const int* n_active_dev, int n_active,
//     int* active_idx_out, int* keep_rows, int* n_remaining)
//   Launch with ONE block, blockDim.x a multiple of 32 and <= 1024.
// gather_rows(const unsigned char* src, unsigned char* dst,
//     const int* keep_rows, const int* n_rows_dev, int n_rows, long long row_bytes)
//   Any grid; rows stride over gridDim.y, bytes of a row over gridDim.x * blockDim.x.
//
// n_active_dev / n_rows_dev: when non-null the row count is read from device
// memory (e.g. the n_remaining written by exit_compact, so that no host sync is
// needed); it is clamped to the host-side n_active / n_rows, which is then the
// capacity the grid was sized for.

#define PABEE_FULL_MASK 0xffffffffu
#define PABEE_NO_LABEL (-1)
#define PABEE_INT_MAX 0x7fffffff

#define PABEE_KIND_FULL 0
#define PABEE_KIND_PATIENCE 1
#define PABEE_KIND_REGRESSION 2
#define PABEE_KIND_ENTROPY 3
#define PABEE_KIND_MAXPROB 4

#define PABEE_COMPACT_ITEMS 4

struct pabee_half_bits {
    unsigned short bits;
};

__device__ __forceinline__ float pabee_load(const float* p, long long i) { return p[i]; }

__device__ __forceinline__ float pabee_load(const pabee_half_bits* p, long long i) {
    float f;
    asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(p[i].bits));
    return f;
}

// Bit tests: independent of any fast-math flag.
__device__ __forceinline__ bool pabee_is_nan(float x) {
    return (__float_as_uint(x) & 0x7fffffffu) > 0x7f800000u;
}

__device__ __forceinline__ bool pabee_is_finite(float x) {
    return (__float_as_uint(x) & 0x7f800000u) != 0x7f800000u;
}

__device__ __forceinline__ int pabee_row_count(const int* count_dev, int count) {
    if (count_dev == nullptr) return count;
    int n = *count_dev;
    return n < count ? n : count;
}

// Argmax of one row over the warp. Ties -> lowest index. has_nan is warp-uniform.
template <typename T>
__device__ __forceinline__ void pabee_warp_argmax(const T* row, int num_classes, int lane, int* label,
                                                  bool* has_nan) {
    float best = -__int_as_float(0x7f800000);  // -inf
    int best_idx = PABEE_INT_MAX;
    bool nan_seen = false;
    for (int c = lane; c < num_classes; c += 32) {
        float x = pabee_load(row, c);
        if (pabee_is_nan(x)) {
            nan_seen = true;
        } else if (x > best || (x == best && c < best_idx)) {
            best = x;
            best_idx = c;
        }
    }
    for (int off = 16; off > 0; off >>= 1) {
        float other = __shfl_xor_sync(PABEE_FULL_MASK, best, off);
        int other_idx = __shfl_xor_sync(PABEE_FULL_MASK, best_idx, off);
        if (other > best || (other == best && other_idx < best_idx)) {
            best = other;
            best_idx = other_idx;
        }
    }
    *has_nan = __any_sync(PABEE_FULL_MASK, nan_seen) != 0;
    *label = *has_nan ? PABEE_NO_LABEL : best_idx;
}

// Softmax statistics of one row in fp32: max m, S = sum exp(x - m) and
// T = sum exp(x - m) * (x - m) over the terms with exp(x - m) > 0.
// Entropy = log S - T / S; max probability = 1 / S. has_nan and max_finite are
// warp-uniform; S and T are only meaningful when !has_nan && max_finite.
template <typename T>
__device__ __forceinline__ void pabee_warp_softmax_stats(const T* row, int num_classes, int lane, float* sum_exp,
                                                         float* sum_exp_z, bool* has_nan, bool* max_finite) {
    float m = -__int_as_float(0x7f800000);
    bool nan_seen = false;
    for (int c = lane; c < num_classes; c += 32) {
        float x = pabee_load(row, c);
        if (pabee_is_nan(x)) nan_seen = true;
        else if (x > m) m = x;
    }
    for (int off = 16; off > 0; off >>= 1) {
        float other = __shfl_xor_sync(PABEE_FULL_MASK, m, off);
        if (other > m) m = other;
    }
    *has_nan = __any_sync(PABEE_FULL_MASK, nan_seen) != 0;
    *max_finite = pabee_is_finite(m);
    float s = 0.0f, t = 0.0f;
    if (!*has_nan && *max_finite) {
        for (int c = lane; c < num_classes; c += 32) {
            float z = pabee_load(row, c) - m;
            float e = expf(z);
            if (e > 0.0f) {
                s += e;
                t += e * z;
            }
        }
    }
    for (int off = 16; off > 0; off >>= 1) {
        s += __shfl_xor_sync(PABEE_FULL_MASK, s, off);
        t += __shfl_xor_sync(PABEE_FULL_MASK, t, off);
    }
    *sum_exp = s;
    *sum_exp_z = t;
}

template <int KIND, typename T>
__device__ __forceinline__ void pabee_exit_step(const T* __restrict__ logits, const int* __restrict__ active_idx,
                                                const int* n_active_dev, int n_active, int num_classes, int layer,
                                                int num_layers, int patience, double tau, float threshold,
                                                int* prev_label, float* prev_value, int* counter,
                                                unsigned char* done, int* exit_layer, float* exit_outputs) {
    const int warps_per_block = blockDim.x >> 5;
    const int lane = threadIdx.x & 31;
    const long long row_ll = (long long)blockIdx.x * warps_per_block + (threadIdx.x >> 5);
    const int n = pabee_row_count(n_active_dev, n_active);
    if (row_ll >= n) return;  // warp-uniform: the whole warp leaves together
    const int row = (int)row_ll;
    const int sid = active_idx[row];
    const T* x = logits + (long long)row * num_classes;

    bool fired = false;
    if (KIND == PABEE_KIND_PATIENCE) {
        int label;
        bool has_nan;
        pabee_warp_argmax(x, num_classes, lane, &label, &has_nan);
        if (lane == 0) {
            // NaN rows never settle: label -1 cannot agree with anything.
            bool agree = (label != PABEE_NO_LABEL) && (label == prev_label[sid]);
            int c = agree ? counter[sid] + 1 : 0;
            counter[sid] = c;
            prev_label[sid] = label;
            fired = c >= patience;
        }
    } else if (KIND == PABEE_KIND_REGRESSION) {
        if (lane == 0) {
            float y = pabee_load(x, 0);
            // Double precision, as NumPy: both values widen exactly, so the
            // difference rounds the same way. NaN compares false -> reset.
            double diff = (double)y - (double)prev_value[sid];
            bool agree = fabs(diff) < tau;
            int c = agree ? counter[sid] + 1 : 0;
            counter[sid] = c;
            prev_value[sid] = y;
            fired = c >= patience;
        }
    } else if (KIND == PABEE_KIND_ENTROPY || KIND == PABEE_KIND_MAXPROB) {
        float s, t;
        bool has_nan, max_finite;
        pabee_warp_softmax_stats(x, num_classes, lane, &s, &t, &has_nan, &max_finite);
        // NaN logits never settle: the score is NaN and no comparison holds.
        if (!has_nan) {
            if (KIND == PABEE_KIND_ENTROPY) {
                // max = +-inf: NumPy's probabilities are all NaN, every p*log(p)
                // term is dropped and the entropy is 0 (see the header).
                float h = max_finite ? logf(s) - t / s : 0.0f;
                fired = h < threshold;
            } else if (max_finite) {  // max = +-inf: NumPy's max probability is NaN
                fired = (1.0f / s) >= threshold;
            }
        }
    }
    if (layer == num_layers) fired = true;  // the last layer always fires
    fired = __shfl_sync(PABEE_FULL_MASK, fired ? 1 : 0, 0) != 0;
    if (!fired) return;

    float* out = exit_outputs + (long long)sid * num_classes;
    for (int c = lane; c < num_classes; c += 32) out[c] = pabee_load(x, c);
    if (lane == 0) {
        done[sid] = 1;
        exit_layer[sid] = layer;
    }
}

#define PABEE_STEP_ARGS(T)                                                                                        \
    const T *logits, const int *active_idx, const int *n_active_dev, int n_active, int num_classes, int layer,   \
        int num_layers, int patience, double tau, float threshold, int *prev_label, float *prev_value,           \
        int *counter, unsigned char *done, int *exit_layer, float *exit_outputs

#define PABEE_STEP_PASS                                                                                           \
    logits, active_idx, n_active_dev, n_active, num_classes, layer, num_layers, patience, tau, threshold,        \
        prev_label, prev_value, counter, done, exit_layer, exit_outputs

#define PABEE_DEFINE_STEP(NAME, KIND)                                                                             \
    extern "C" __global__ void NAME##_f32(PABEE_STEP_ARGS(float)) {                                              \
        pabee_exit_step<KIND, float>(PABEE_STEP_PASS);                                                            \
    }                                                                                                             \
    extern "C" __global__ void NAME##_f16(PABEE_STEP_ARGS(pabee_half_bits)) {                                    \
        pabee_exit_step<KIND, pabee_half_bits>(PABEE_STEP_PASS);                                                  \
    }

// Full depth: fires only at the last layer. Uses done, exit_layer, exit_outputs.
PABEE_DEFINE_STEP(exit_full_step, PABEE_KIND_FULL)
// PABEE classification patience. Uses prev_label, counter, done, exit_layer, exit_outputs.
PABEE_DEFINE_STEP(exit_patience_step, PABEE_KIND_PATIENCE)
// PABEE regression patience (num_classes must be 1; element 0 is the output).
// Uses prev_value, counter, done, exit_layer, exit_outputs.
PABEE_DEFINE_STEP(exit_regression_step, PABEE_KIND_REGRESSION)
// DeeBERT: softmax entropy (nats) < threshold. Uses done, exit_layer, exit_outputs.
PABEE_DEFINE_STEP(exit_entropy_step, PABEE_KIND_ENTROPY)
// Max softmax probability >= threshold. Uses done, exit_layer, exit_outputs.
PABEE_DEFINE_STEP(exit_maxprob_step, PABEE_KIND_MAXPROB)

// Stable compaction of the rows that are still running (done[active_idx[i]] == 0).
// Writes, for new packed row j:   active_idx_out[j] = active_idx[keep_rows[j]]
// where keep_rows[j] is the old packed row, in increasing order (kept rows keep
// their relative order), and *n_remaining = number of kept rows. One block
// walks the batch in tiles of blockDim.x * PABEE_COMPACT_ITEMS rows with a
// block-wide exclusive scan per tile, carrying the running offset; any
// n_active works (one tile covers 4096 rows with 1024 threads).
// active_idx_out and keep_rows must not alias active_idx.
extern "C" __global__ void __launch_bounds__(1024)
    exit_compact(const unsigned char* __restrict__ done, const int* __restrict__ active_idx, const int* n_active_dev,
                 int n_active, int* __restrict__ active_idx_out, int* __restrict__ keep_rows, int* n_remaining) {
    __shared__ int warp_sums[32];
    if (blockIdx.x != 0) return;
    const int n = pabee_row_count(n_active_dev, n_active);
    const int tid = threadIdx.x;
    const int lane = tid & 31;
    const int warp = tid >> 5;
    const int num_warps = blockDim.x >> 5;
    const int tile = blockDim.x * PABEE_COMPACT_ITEMS;
    int carry = 0;  // identical in every thread
    for (int base = 0; base < n; base += tile) {
        int flags[PABEE_COMPACT_ITEMS];
        int local = 0;
        const int first = base + tid * PABEE_COMPACT_ITEMS;
#pragma unroll
        for (int k = 0; k < PABEE_COMPACT_ITEMS; ++k) {
            int i = first + k;
            int keep = (i < n && done[active_idx[i]] == 0) ? 1 : 0;
            flags[k] = keep;
            local += keep;
        }
        int incl = local;  // inclusive scan within the warp
        for (int off = 1; off < 32; off <<= 1) {
            int y = __shfl_up_sync(PABEE_FULL_MASK, incl, off);
            if (lane >= off) incl += y;
        }
        if (lane == 31) warp_sums[warp] = incl;
        __syncthreads();
        if (warp == 0) {
            int w = lane < num_warps ? warp_sums[lane] : 0;
            for (int off = 1; off < 32; off <<= 1) {
                int y = __shfl_up_sync(PABEE_FULL_MASK, w, off);
                if (lane >= off) w += y;
            }
            if (lane < num_warps) warp_sums[lane] = w;  // inclusive warp totals
        }
        __syncthreads();
        int pos = carry + (warp > 0 ? warp_sums[warp - 1] : 0) + incl - local;
#pragma unroll
        for (int k = 0; k < PABEE_COMPACT_ITEMS; ++k) {
            if (flags[k]) {
                int i = first + k;
                active_idx_out[pos] = active_idx[i];
                keep_rows[pos] = i;
                ++pos;
            }
        }
        carry += warp_sums[num_warps - 1];
        __syncthreads();  // warp_sums is rewritten by the next tile
    }
    if (tid == 0) *n_remaining = carry;
}

template <typename V>
__device__ __forceinline__ void pabee_copy_rows(const V* __restrict__ src, V* __restrict__ dst,
                                                const int* __restrict__ keep_rows, int n, long long row_vecs) {
    const long long stride = (long long)gridDim.x * blockDim.x;
    for (int r = blockIdx.y; r < n; r += gridDim.y) {
        const V* s = src + (long long)keep_rows[r] * row_vecs;
        V* d = dst + (long long)r * row_vecs;
        for (long long j = (long long)blockIdx.x * blockDim.x + threadIdx.x; j < row_vecs; j += stride) d[j] = s[j];
    }
}

// dst[r, :] = src[keep_rows[r], :] for r < n_rows, rows of row_bytes bytes.
// Dtype-agnostic: hidden states [n, S, H] in fp32/fp16/bf16 (row_bytes =
// S*H*itemsize) and int64 attention masks [n, S] (row_bytes = 8*S) use the same
// kernel. Copies 16/8/4/2/1-byte words, the widest that the row size and both
// base addresses allow. src and dst must not overlap.
extern "C" __global__ void gather_rows(const unsigned char* __restrict__ src, unsigned char* __restrict__ dst,
                                       const int* __restrict__ keep_rows, const int* n_rows_dev, int n_rows,
                                       long long row_bytes) {
    const int n = pabee_row_count(n_rows_dev, n_rows);
    const unsigned long long addr_bits = (unsigned long long)src | (unsigned long long)dst;
    const unsigned long long bits = addr_bits | (unsigned long long)row_bytes;
    if ((bits & 15ull) == 0) {
        pabee_copy_rows((const uint4*)src, (uint4*)dst, keep_rows, n, row_bytes >> 4);
    } else if ((bits & 7ull) == 0) {
        pabee_copy_rows((const uint2*)src, (uint2*)dst, keep_rows, n, row_bytes >> 3);
    } else if ((bits & 3ull) == 0) {
        pabee_copy_rows((const unsigned int*)src, (unsigned int*)dst, keep_rows, n, row_bytes >> 2);
    } else if ((bits & 1ull) == 0) {
        pabee_copy_rows((const unsigned short*)src, (unsigned short*)dst, keep_rows, n, row_bytes >> 1);
    } else {
        pabee_copy_rows(src, dst, keep_rows, n, row_bytes);
    }
}
