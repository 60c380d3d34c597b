"""CUDA C source of the pre/post-processing kernels, compiled at run time by NVRTC (kernels.py).

Kept as a Python string so it ships inside the package without package-data plumbing.
No headers are included: NVRTC has no C library, and fp16 stores use one PTX instruction.
Arithmetic mirrors the CPU reference on purpose (compiled with --fmad=false): the resize uses
OpenCV's fixed-point taps (tables built by gpu/resize_tables.py), decode multiplies and adds in
the same order as NumPy, and overlap is computed like cv2.dnn.NMSBoxes (double IoU, rounded to
float).
"""

SOURCE = r"""
typedef unsigned char u8;
typedef unsigned short u16;
typedef unsigned int u32;
typedef unsigned long long u64;

// ---------------------------------------------------------------- letterbox -----------------

// OpenCV's vertical pass for uint8 (VResizeLinearVec_32s8u): multiply-high of (row >> 4).
__device__ __forceinline__ int vmix(int r0, int r1, int b0, int b1) {
    int v = ((b0 * (r0 >> 4)) >> 16) + ((b1 * (r1 >> 4)) >> 16);
    v = (v + 2) >> 2;
    return v < 0 ? 0 : (v > 255 ? 255 : v);
}

// Value of output pixel (x, y) of the letterboxed image, 3 channels in source order.
__device__ __forceinline__ void letterbox_px(
        const u8* __restrict__ src, int pitch, int cn,
        const int* __restrict__ xofs, const short2* __restrict__ xcoef, int src_w,
        const int* __restrict__ yofs, const short2* __restrict__ ycoef, int src_h,
        int left, int top, int new_w, int new_h, int pad, int x, int y, int v[3]) {
    int rx = x - left, ry = y - top;
    if (rx < 0 || ry < 0 || rx >= new_w || ry >= new_h) {
        v[0] = v[1] = v[2] = pad;
        return;
    }
    int x0 = xofs[rx], y0 = yofs[ry];
    int x1 = min(x0 + 1, src_w - 1), y1 = min(y0 + 1, src_h - 1);
    short2 a = xcoef[rx], b = ycoef[ry];
    const u8* p0 = src + (size_t)y0 * pitch;
    const u8* p1 = src + (size_t)y1 * pitch;
    #pragma unroll
    for (int c = 0; c < 3; ++c) {
        int r0 = (int)p0[x0 * cn + c] * a.x + (int)p0[x1 * cn + c] * a.y;
        int r1 = (int)p1[x0 * cn + c] * a.x + (int)p1[x1 * cn + c] * a.y;
        v[c] = vmix(r0, r1, b.x, b.y);
    }
}

#define LETTERBOX_ARGS \
    const u8* __restrict__ src, int pitch, int cn, \
    const int* __restrict__ xofs, const short2* __restrict__ xcoef, int src_w, \
    const int* __restrict__ yofs, const short2* __restrict__ ycoef, int src_h, \
    int left, int top, int new_w, int new_h, int pad

#define LETTERBOX_CALL src, pitch, cn, xofs, xcoef, src_w, yofs, ycoef, src_h, \
    left, top, new_w, new_h, pad

// Letterboxed HWC uint8 image, exactly core.letterbox.letterbox's output.
extern "C" __global__ void letterbox_hwc_u8(LETTERBOX_ARGS, u8* __restrict__ dst, int dst_w,
        int dst_h) {
    int x = blockIdx.x * blockDim.x + threadIdx.x;
    int y = blockIdx.y * blockDim.y + threadIdx.y;
    if (x >= dst_w || y >= dst_h) return;
    int v[3];
    letterbox_px(LETTERBOX_CALL, x, y, v);
    u8* d = dst + ((size_t)y * dst_w + x) * 3;
    d[0] = (u8)v[0]; d[1] = (u8)v[1]; d[2] = (u8)v[2];
}

// Fused letterbox + channel swap + (v - mean) * scale + HWC->CHW, float32 planes.
extern "C" __global__ void letterbox_chw_f32(LETTERBOX_ARGS, float* __restrict__ dst, int dst_w,
        int dst_h,
        int swap_rb, float m0, float m1, float m2, float s0, float s1, float s2) {
    int x = blockIdx.x * blockDim.x + threadIdx.x;
    int y = blockIdx.y * blockDim.y + threadIdx.y;
    if (x >= dst_w || y >= dst_h) return;
    int v[3];
    letterbox_px(LETTERBOX_CALL, x, y, v);
    size_t plane = (size_t)dst_w * dst_h, o = (size_t)y * dst_w + x;
    int c0 = swap_rb ? 2 : 0, c2 = swap_rb ? 0 : 2;
    dst[o] = ((float)v[c0] - m0) * s0;
    dst[plane + o] = ((float)v[1] - m1) * s1;
    dst[2 * plane + o] = ((float)v[c2] - m2) * s2;
}

__device__ __forceinline__ u16 f2h(float f) {
    u16 h;
    asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h) : "f"(f));
    return h;
}

// The same, float16 planes (for engines built with fp16 inputs).
extern "C" __global__ void letterbox_chw_f16(LETTERBOX_ARGS, u16* __restrict__ dst, int dst_w,
        int dst_h,
        int swap_rb, float m0, float m1, float m2, float s0, float s1, float s2) {
    int x = blockIdx.x * blockDim.x + threadIdx.x;
    int y = blockIdx.y * blockDim.y + threadIdx.y;
    if (x >= dst_w || y >= dst_h) return;
    int v[3];
    letterbox_px(LETTERBOX_CALL, x, y, v);
    size_t plane = (size_t)dst_w * dst_h, o = (size_t)y * dst_w + x;
    int c0 = swap_rb ? 2 : 0, c2 = swap_rb ? 0 : 2;
    dst[o] = f2h(((float)v[c0] - m0) * s0);
    dst[plane + o] = f2h(((float)v[1] - m1) * s1);
    dst[2 * plane + o] = f2h(((float)v[c2] - m2) * s2);
}

// ---------------------------------------------------------------- decode --------------------

// One thread per anchor: best class (first maximum, like argmax) of obj * cls (YOLOX) or cls
// (YOLOv8); anchors whose score passes the threshold append a sortable key:
// score bits in the high word (scores are >= 0), inverted anchor index in the low word, so
// sorting keys descending orders by score, ties by lower anchor first.
extern "C" __global__ void decode_candidates(
        const float* __restrict__ pred, int num_anchors, int num_classes,
        int anchor_stride, int attr_stride, int has_obj, float conf_thr, int inclusive,
        u64* __restrict__ keys, int* __restrict__ best_cls, int* __restrict__ count) {
    int a = blockIdx.x * blockDim.x + threadIdx.x;
    if (a >= num_anchors) return;
    const float* p = pred + (size_t)a * anchor_stride;
    int first = has_obj ? 5 : 4;
    float obj = has_obj ? p[4 * attr_stride] : 1.0f;
    float best = -1.0f;
    int bc = 0;
    for (int c = 0; c < num_classes; ++c) {
        float s = p[(size_t)(first + c) * attr_stride];
        if (has_obj) s = obj * s;
        if (s > best) { best = s; bc = c; }
    }
    best_cls[a] = bc;
    bool pass = inclusive ? (best >= conf_thr) : (best > conf_thr);
    if (pass && best >= 0.0f) {
        int i = atomicAdd(count, 1);
        keys[i] = ((u64)__float_as_uint(best) << 32) | (u64)(0xFFFFFFFFu - (u32)a);
    }
}

__device__ __forceinline__ void decode_box(const float* __restrict__ pred, int anchor,
        int anchor_stride,
        int attr_stride, int grid_decode, const int* __restrict__ levels, int nlev, float* b) {
    const float* p = pred + (size_t)anchor * anchor_stride;
    float cx = p[0], cy = p[attr_stride], w = p[2 * attr_stride], h = p[3 * attr_stride];
    if (grid_decode) {  // YOLOX raw head: (xy + grid) * stride, exp(wh) * stride
        int start = 0, gw = 1, stride = 1;
        for (int l = 0; l < nlev; ++l) {
            if (anchor >= levels[3 * l]) {
                start = levels[3 * l]; gw = levels[3 * l + 1]; stride = levels[3 * l + 2];
            }
        }
        int local = anchor - start;
        float s = (float)stride;
        cx = (cx + (float)(local % gw)) * s;
        cy = (cy + (float)(local / gw)) * s;
        w = expf(w) * s;
        h = expf(h) * s;
    }
    b[0] = cx - w / 2.0f; b[1] = cy - h / 2.0f; b[2] = cx + w / 2.0f; b[3] = cy + h / 2.0f;
}

__device__ __forceinline__ double iou(float4 a, float4 b) {
    double xx1 = fmax((double)a.x, (double)b.x), yy1 = fmax((double)a.y, (double)b.y);
    double xx2 = fmin((double)a.z, (double)b.z), yy2 = fmin((double)a.w, (double)b.w);
    double inter = fmax(xx2 - xx1, 0.0) * fmax(yy2 - yy1, 0.0);
    double ua = ((double)a.z - a.x) * ((double)a.w - a.y)
              + ((double)b.z - b.x) * ((double)b.w - b.y) - inter;
    return ua > 0.0 ? inter / ua : 0.0;
}

// cv2.dnn.NMSBoxes' rectOverlap: 1.f - (float)(1 - IoU), compared with a float threshold.
__device__ __forceinline__ float overlap(float4 a, float4 b) {
    return 1.0f - (float)(1.0 - iou(a, b));
}

// One block: exact top-`cap` of the candidate keys (radix select when more passed), bitonic
// sort, box decode of the survivors, greedy NMS, un-letterbox and clip, compact output:
// out[0] = count, then count rows of x1, y1, x2, y2, score, class (source pixels).
// Dynamic shared memory: cap * 8 + cap / 8 bytes. cap is a power of two.
extern "C" __global__ void __launch_bounds__(1024) select_nms(
        const float* __restrict__ pred, int num_anchors, int anchor_stride, int attr_stride,
        int grid_decode, const int* __restrict__ levels, int nlev,
        const u64* __restrict__ keys, const int* __restrict__ best_cls,
        const int* __restrict__ count,
        int cap, float iou_thr, int class_agnostic, int max_det,
        float pad_x, float pad_y, float scale_x, float scale_y, float clip_w, float clip_h,
        int clip,
        float4* __restrict__ tmp_boxes, int* __restrict__ tmp_cls, float* __restrict__ tmp_score,
        float* __restrict__ out) {
    extern __shared__ u64 skeys[];
    u32* removed = (u32*)(skeys + cap);
    __shared__ u32 hist[256];
    __shared__ u64 s_prefix;
    __shared__ int s_k, s_m;
    const int tid = threadIdx.x, nt = blockDim.x;
    int n = min(*count, num_anchors);
    int m = n;

    if (n > cap) {  // k-th largest key, 8 bits at a time; keys are unique so the cut is exact
        u64 prefix = 0, mask = 0;
        int k = cap;
        for (int shift = 56; shift >= 0; shift -= 8) {
            for (int i = tid; i < 256; i += nt) hist[i] = 0;
            __syncthreads();
            for (int i = tid; i < n; i += nt) {
                u64 key = keys[i];
                if ((key & mask) == prefix) atomicAdd(&hist[(key >> shift) & 255], 1u);
            }
            __syncthreads();
            if (tid == 0) {
                int acc = 0;
                for (int d = 255; d >= 0; --d) {
                    if (acc + (int)hist[d] >= k) { prefix |= (u64)d << shift; k -= acc; break; }
                    acc += hist[d];
                }
                s_prefix = prefix; s_k = k;
            }
            __syncthreads();
            prefix = s_prefix; k = s_k;
            mask |= (u64)255 << shift;
        }
        if (tid == 0) s_m = 0;
        __syncthreads();
        for (int i = tid; i < n; i += nt) {
            u64 key = keys[i];
            if (key >= prefix) skeys[atomicAdd(&s_m, 1)] = key;
        }
        m = cap;
    } else {
        for (int i = tid; i < n; i += nt) skeys[i] = keys[i];
    }
    int p2 = 1;
    while (p2 < m) p2 <<= 1;
    for (int i = m + tid; i < p2; i += nt) skeys[i] = 0ull;
    for (int i = tid; i < (p2 + 31) / 32; i += nt) removed[i] = 0u;
    __syncthreads();

    for (int k = 2; k <= p2; k <<= 1) {  // bitonic sort, descending
        for (int j = k >> 1; j > 0; j >>= 1) {
            for (int i = tid; i < p2; i += nt) {
                int ixj = i ^ j;
                if (ixj > i) {
                    u64 a = skeys[i], b = skeys[ixj];
                    bool desc = (i & k) == 0;
                    if (desc ? (a < b) : (a > b)) { skeys[i] = b; skeys[ixj] = a; }
                }
            }
            __syncthreads();
        }
    }

    for (int i = tid; i < m; i += nt) {
        u64 key = skeys[i];
        int anchor = (int)(0xFFFFFFFFu - (u32)(key & 0xFFFFFFFFull));
        float b[4];
        decode_box(pred, anchor, anchor_stride, attr_stride, grid_decode, levels, nlev, b);
        tmp_boxes[i] = make_float4(b[0], b[1], b[2], b[3]);
        tmp_cls[i] = best_cls[anchor];
        tmp_score[i] = __uint_as_float((u32)(key >> 32));
    }
    __syncthreads();

    int kept = 0;
    for (int i = 0; i < m && kept < max_det; ++i) {
        if ((removed[i >> 5] >> (i & 31)) & 1u) continue;  // same value in every thread
        float4 bi = tmp_boxes[i];
        int ci = tmp_cls[i];
        if (tid == 0) {
            float x1 = (bi.x - pad_x) / scale_x, y1 = (bi.y - pad_y) / scale_y;
            float x2 = (bi.z - pad_x) / scale_x, y2 = (bi.w - pad_y) / scale_y;
            if (clip) {
                x1 = fminf(fmaxf(x1, 0.0f), clip_w); x2 = fminf(fmaxf(x2, 0.0f), clip_w);
                y1 = fminf(fmaxf(y1, 0.0f), clip_h); y2 = fminf(fmaxf(y2, 0.0f), clip_h);
            }
            float* o = out + 1 + 6 * kept;
            o[0] = x1; o[1] = y1; o[2] = x2; o[3] = y2; o[4] = tmp_score[i]; o[5] = (float)ci;
        }
        ++kept;
        if (kept >= max_det) break;
        for (int j = i + 1 + tid; j < m; j += nt) {
            if (!class_agnostic && tmp_cls[j] != ci) continue;
            if ((removed[j >> 5] >> (j & 31)) & 1u) continue;
            if (overlap(bi, tmp_boxes[j]) > iou_thr) atomicOr(&removed[j >> 5], 1u << (j & 31));
        }
        __syncthreads();
    }
    if (tid == 0) out[0] = (float)kept;
}
"""

KERNEL_NAMES = ('letterbox_hwc_u8', 'letterbox_chw_f32', 'letterbox_chw_f16', 'decode_candidates',
                'select_nms')
