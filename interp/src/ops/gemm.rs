//! Matrix products: the SGEMM/DGEMM entry point every kernel uses, Gemm and MatMul.
//!
//! The float products go to the `gemm` crate: packed, cache-blocked, with AVX2/FMA and (feature
//! `x86-v4`) AVX-512 micro-kernels chosen at run time, parallel on rayon's pool (so it nests
//! with the other kernels' rayon loops without oversubscribing the cores). Measured on this
//! project's 2-core AVX-512 machine on ResNet-18's convolution shapes, it was 15-25% faster
//! than `matrixmultiply` single-threaded, and `matrixmultiply`'s own threads do not split the
//! 64-row products of the first layers (nor share rayon's pool).
//! Integer products (MatMul and Gemm accept int32/int64 in ONNX) use a plain wrapping loop.

use super::elementwise::{broadcast_shape, broadcast_strides};
use super::num::{Arith, Elem, Float};
use super::{arity, array, bad, data_of, same_dtype, unsupported};
use crate::error::Result;
use crate::tensor::Tensor;

/// A matrix operand: data with row and column strides (in elements).
#[derive(Clone, Copy)]
pub struct Mat<'a, T> {
    pub data: &'a [T],
    pub rs: usize,
    pub cs: usize,
}

impl<'a, T> Mat<'a, T> {
    /// A row-major matrix with `cols` columns.
    pub fn rows(data: &'a [T], cols: usize) -> Self {
        Mat { data, rs: cols, cs: 1 }
    }
    /// The transpose of a row-major matrix with `cols` columns.
    pub fn rows_t(data: &'a [T], cols: usize) -> Self {
        Mat { data, rs: 1, cs: cols }
    }
    fn fits(&self, r: usize, c: usize) -> bool {
        r == 0 || c == 0 || (r - 1) * self.rs + (c - 1) * self.cs < self.data.len()
    }
}

/// A float type with a BLAS-like kernel.
pub trait GemmFloat: Float {
    /// Runs `f` on a scratch buffer of `len` elements (contents unspecified), reused across
    /// calls on the same thread so that large im2col buffers are neither reallocated nor
    /// zeroed on every convolution.
    fn with_scratch<R>(len: usize, f: impl FnOnce(&mut [Self]) -> R) -> R;

    /// The slice as f32 when `Self` is f32 (the type of the AVX-512 convolution kernel).
    fn f32s(s: &[Self]) -> Option<&[f32]>;
    fn f32s_mut(s: &mut [Self]) -> Option<&mut [f32]>;

    /// # Safety
    /// The pointers must cover the `m x k`, `k x n` and `m x n` strided ranges.
    unsafe fn raw(
        m: usize,
        k: usize,
        n: usize,
        alpha: Self,
        a: *const Self,
        rsa: isize,
        csa: isize,
        b: *const Self,
        rsb: isize,
        csb: isize,
        beta: Self,
        c: *mut Self,
        rsc: isize,
        csc: isize,
        parallel: bool,
    );
}

/// Runs `f` on the first `len` elements (contents unspecified) of the calling thread's buffer
/// `key`, grown as needed and kept for the next call, so that large scratch buffers are neither
/// reallocated nor zeroed on every call. Re-entered on the same thread (the kernels do not), it
/// falls back to a fresh buffer.
pub fn with_thread_buffer<T: Copy + Default, R>(
    key: &'static std::thread::LocalKey<std::cell::RefCell<Vec<T>>>,
    len: usize,
    f: impl FnOnce(&mut [T]) -> R,
) -> R {
    key.with(|cell| match cell.try_borrow_mut() {
        Ok(mut buf) => {
            if buf.len() < len {
                buf.resize(len, T::default());
            }
            f(&mut buf[..len])
        }
        Err(_) => f(&mut vec![T::default(); len]),
    })
}

/// Runs the `gemm` crate's product (`dst = beta_dst * dst + alpha * lhs * rhs` in its terms),
/// on rayon's pool when `parallel` (callers pass whether the size makes threads pay).
macro_rules! gemm_impl {
    ($t:ty, $scratch:ident, $f32s:expr, $f32s_mut:expr) => {
        thread_local! {
            static $scratch: std::cell::RefCell<Vec<$t>> = const { std::cell::RefCell::new(Vec::new()) };
        }

        impl GemmFloat for $t {
            fn with_scratch<R>(len: usize, f: impl FnOnce(&mut [$t]) -> R) -> R {
                with_thread_buffer(&$scratch, len, f)
            }

            fn f32s(s: &[$t]) -> Option<&[f32]> {
                $f32s(s)
            }
            fn f32s_mut(s: &mut [$t]) -> Option<&mut [f32]> {
                $f32s_mut(s)
            }

            unsafe fn raw(
                m: usize, k: usize, n: usize, alpha: $t,
                a: *const $t, rsa: isize, csa: isize,
                b: *const $t, rsb: isize, csb: isize,
                beta: $t, c: *mut $t, rsc: isize, csc: isize, parallel: bool,
            ) {
                let par = if parallel {
                    gemm::Parallelism::Rayon(0)
                } else {
                    gemm::Parallelism::None
                };
                // SAFETY: forwarded from the caller's contract; `read_dst` is false when beta
                // is 0, so C may be uninitialized garbage then.
                unsafe {
                    gemm::gemm(
                        m, n, k, c, csc, rsc, beta != 0.0, a, csa, rsa, b, csb, rsb, beta, alpha,
                        false, false, false, par,
                    )
                }
            }
        }
    };
}
gemm_impl!(f32, SCRATCH_F32, Some, Some);
gemm_impl!(f64, SCRATCH_F64, |_| None, |_| None);

/// Multiply-adds (m*n*k) above which a product runs on several threads.
const PAR_FLOPS: usize = 1 << 18;

/// `C = alpha * A * B + beta * C` for an `m x k` A, `k x n` B and a row-major `m x n` C with
/// row stride `ldc`. With `beta == 0`, C is not read (it may hold garbage or NaN).
pub fn gemm<T: GemmFloat>(
    m: usize,
    k: usize,
    n: usize,
    alpha: T,
    a: Mat<'_, T>,
    b: Mat<'_, T>,
    beta: T,
    c: &mut [T],
    ldc: usize,
) {
    gemm_on(m, k, n, alpha, a, b, beta, c, ldc, m * n * k >= PAR_FLOPS)
}

/// `C = A * B` on the calling thread (for callers that run products in parallel themselves),
/// row-major C with row stride `ldc`; C is not read.
pub fn gemm_serial<T: GemmFloat>(
    m: usize,
    k: usize,
    n: usize,
    a: Mat<'_, T>,
    b: Mat<'_, T>,
    c: &mut [T],
    ldc: usize,
) {
    gemm_on(m, k, n, T::of(1.0), a, b, T::ZERO, c, ldc, false)
}

/// [`gemm`], on rayon's pool when `parallel`.
fn gemm_on<T: GemmFloat>(
    m: usize,
    k: usize,
    n: usize,
    alpha: T,
    a: Mat<'_, T>,
    b: Mat<'_, T>,
    beta: T,
    c: &mut [T],
    ldc: usize,
    parallel: bool,
) {
    assert!(
        a.fits(m, k) && b.fits(k, n) && (m == 0 || n == 0 || (m - 1) * ldc + n <= c.len()),
        "invariant: gemm operands are sized by their callers ({m}x{k}x{n})"
    );
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        for r in 0..m {
            c[r * ldc..r * ldc + n]
                .iter_mut()
                .for_each(|v| *v = if beta == T::ZERO { T::ZERO } else { *v * beta });
        }
        return;
    }
    // SAFETY: the assert above proves every strided access is in bounds.
    unsafe {
        T::raw(
            m,
            k,
            n,
            alpha,
            a.data.as_ptr(),
            a.rs as isize,
            a.cs as isize,
            b.data.as_ptr(),
            b.rs as isize,
            b.cs as isize,
            beta,
            c.as_mut_ptr(),
            ldc as isize,
            1,
            parallel,
        )
    }
}

/// The integer product `C += A * B` (wrapping).
fn gemm_int<T: Arith>(
    m: usize,
    k: usize,
    n: usize,
    a: Mat<'_, T>,
    b: Mat<'_, T>,
    c: &mut [T],
    ldc: usize,
) {
    for i in 0..m {
        for p in 0..k {
            let av = a.data[i * a.rs + p * a.cs];
            let row = &mut c[i * ldc..i * ldc + n];
            for (j, cv) in row.iter_mut().enumerate() {
                *cv = cv.add(av.mul(b.data[p * b.rs + j * b.cs]));
            }
        }
    }
}

/// ONNX Gemm: `Y = alpha * A' * B' + beta * C` with `A'`, `B'` optionally transposed and C
/// unidirectionally broadcast to `[M, N]`.
pub(crate) fn gemm_op(
    alpha: f32,
    beta: f32,
    ta: bool,
    tb: bool,
    inputs: &[&Tensor],
) -> Result<Tensor> {
    arity(inputs, 2, 3)?;
    same_dtype(inputs)?;
    let (ash, bsh) = (inputs[0].shape(), inputs[1].shape());
    if ash.len() != 2 || bsh.len() != 2 {
        return Err(bad(format!("A and B must be 2-D, got {ash:?} and {bsh:?}")));
    }
    let (m, k) = if ta { (ash[1], ash[0]) } else { (ash[0], ash[1]) };
    let (k2, n) = if tb { (bsh[1], bsh[0]) } else { (bsh[0], bsh[1]) };
    if k != k2 {
        return Err(bad(format!("inner dims differ: A' is {m}x{k}, B' is {k2}x{n}")));
    }
    if let Some(c) = inputs.get(2) {
        let bs = broadcast_shape(c.shape(), &[m, n])?;
        if bs != [m, n] {
            return Err(bad(format!("C {:?} does not broadcast to [{m}, {n}]", c.shape())));
        }
    }
    fn go<T: Elem>(
        inputs: &[&Tensor],
        m: usize,
        k: usize,
        n: usize,
        ta: bool,
        tb: bool,
        f: impl FnOnce(Mat<'_, T>, Mat<'_, T>, &mut [T], bool),
    ) -> Tensor {
        let view = |i: usize| T::view(inputs[i]).expect("invariant: dtypes checked equal");
        let (a, b) = (data_of(view(0)), data_of(view(1)));
        let am = if ta { Mat::rows_t(&a, m) } else { Mat::rows(&a, k) };
        let bm = if tb { Mat::rows_t(&b, k) } else { Mat::rows(&b, n) };
        let mut out = vec![T::default(); m * n];
        let has_c = inputs.len() == 3;
        if has_c {
            let c = view(2);
            let cd = data_of(c);
            let st = broadcast_strides(c.shape(), &[m, n]);
            for i in 0..m {
                for j in 0..n {
                    out[i * n + j] = cd[i * st[0] + j * st[1]];
                }
            }
        }
        f(am, bm, &mut out, has_c);
        T::wrap(array(&[m, n], out))
    }
    Ok(match inputs[0] {
        Tensor::F32(_) => go::<f32>(inputs, m, k, n, ta, tb, |a, b, c, has_c| {
            gemm(m, k, n, alpha, a, b, if has_c { beta } else { 0.0 }, c, n)
        }),
        Tensor::F64(_) => go::<f64>(inputs, m, k, n, ta, tb, |a, b, c, has_c| {
            gemm(m, k, n, alpha as f64, a, b, if has_c { beta as f64 } else { 0.0 }, c, n)
        }),
        Tensor::I32(_) | Tensor::I64(_) if alpha == 1.0 && (beta == 1.0 || inputs.len() == 2) => {
            match inputs[0] {
                Tensor::I32(_) => {
                    go::<i32>(inputs, m, k, n, ta, tb, |a, b, c, _| gemm_int(m, k, n, a, b, c, n))
                }
                _ => go::<i64>(inputs, m, k, n, ta, tb, |a, b, c, _| gemm_int(m, k, n, a, b, c, n)),
            }
        }
        t => {
            return Err(unsupported(format!(
                "gemm of {} tensors with alpha {alpha}, beta {beta}",
                t.dtype()
            )))
        }
    })
}

/// numpy matmul: 1-D operands are promoted (and the added dim removed), batch dims broadcast.
pub(crate) fn matmul(inputs: &[&Tensor]) -> Result<Tensor> {
    arity(inputs, 2, 2)?;
    same_dtype(inputs)?;
    let (ash, bsh) = (inputs[0].shape().to_vec(), inputs[1].shape().to_vec());
    if ash.is_empty() || bsh.is_empty() {
        return Err(bad("matmul operands must have rank >= 1"));
    }
    let a2 = if ash.len() == 1 { vec![1, ash[0]] } else { ash.clone() };
    let b2 = if bsh.len() == 1 { vec![bsh[0], 1] } else { bsh.clone() };
    let (m, k) = (a2[a2.len() - 2], a2[a2.len() - 1]);
    let (k2, n) = (b2[b2.len() - 2], b2[b2.len() - 1]);
    if k != k2 {
        return Err(bad(format!("inner dims differ: {ash:?} x {bsh:?}")));
    }
    let (abatch, bbatch) = (&a2[..a2.len() - 2], &b2[..b2.len() - 2]);
    let batch = broadcast_shape(abatch, bbatch)?;
    let mut out_shape = batch.clone();
    if ash.len() > 1 {
        out_shape.push(m);
    }
    if bsh.len() > 1 {
        out_shape.push(n);
    }
    let nb: usize = batch.iter().product();
    let (sa, sb) = (broadcast_strides(abatch, &batch), broadcast_strides(bbatch, &batch));

    fn go<T: Elem>(
        inputs: &[&Tensor],
        out_shape: &[usize],
        batch: &[usize],
        nb: usize,
        sa: &[usize],
        sb: &[usize],
        m: usize,
        k: usize,
        n: usize,
        bbatch_empty: bool,
        mul: impl Fn(usize, usize, usize, Mat<'_, T>, Mat<'_, T>, &mut [T]),
    ) -> Tensor {
        let a = data_of(T::view(inputs[0]).expect("invariant: dtypes checked equal"));
        let b = data_of(T::view(inputs[1]).expect("invariant: dtypes checked equal"));
        let mut out = vec![T::default(); nb * m * n];
        if bbatch_empty {
            // B is one matrix: fold A's batch into its rows, one product.
            mul(nb * m, k, n, Mat::rows(&a, k), Mat::rows(&b, n), &mut out);
        } else {
            let mut idx = vec![0usize; batch.len()];
            for bi in 0..nb {
                let (mut oa, mut ob) = (0, 0);
                for d in 0..batch.len() {
                    oa += idx[d] * sa[d];
                    ob += idx[d] * sb[d];
                }
                let am = Mat::rows(&a[oa * m * k..(oa + 1) * m * k], k);
                let bm = Mat::rows(&b[ob * k * n..(ob + 1) * k * n], n);
                mul(m, k, n, am, bm, &mut out[bi * m * n..(bi + 1) * m * n]);
                for d in (0..batch.len()).rev() {
                    idx[d] += 1;
                    if idx[d] < batch[d] {
                        break;
                    }
                    idx[d] = 0;
                }
            }
        }
        T::wrap(array(out_shape, out))
    }
    let bb = bbatch.is_empty();
    Ok(match inputs[0] {
        Tensor::F32(_) => {
            go::<f32>(inputs, &out_shape, &batch, nb, &sa, &sb, m, k, n, bb, |m, k, n, a, b, c| {
                gemm(m, k, n, 1.0, a, b, 0.0, c, n)
            })
        }
        Tensor::F64(_) => {
            go::<f64>(inputs, &out_shape, &batch, nb, &sa, &sb, m, k, n, bb, |m, k, n, a, b, c| {
                gemm(m, k, n, 1.0, a, b, 0.0, c, n)
            })
        }
        Tensor::I32(_) => {
            go::<i32>(inputs, &out_shape, &batch, nb, &sa, &sb, m, k, n, bb, |m, k, n, a, b, c| {
                gemm_int(m, k, n, a, b, c, n)
            })
        }
        Tensor::I64(_) => {
            go::<i64>(inputs, &out_shape, &batch, nb, &sa, &sb, m, k, n, bb, |m, k, n, a, b, c| {
                gemm_int(m, k, n, a, b, c, n)
            })
        }
        t => return Err(unsupported(format!("matmul of {} tensors", t.dtype()))),
    })
}
