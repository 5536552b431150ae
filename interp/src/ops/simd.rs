//! Element-wise loops compiled twice: for the baseline x86-64 target (SSE2, 4 f32 lanes) and
//! with AVX2 (8 lanes), chosen at run time. Only wider registers, never FMA: `y + a * x` is a
//! multiply then an add in both versions, so results are the same on every machine.

use super::num::Float;

/// `y[i] += a * x[i]` over `min(len)` elements.
#[inline]
pub(crate) fn axpy<T: Float>(y: &mut [T], a: T, x: &[T]) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2 (checked just above).
        return unsafe { axpy_avx2(y, a, x) };
    }
    axpy_plain(y, a, x)
}

#[inline(always)]
fn axpy_plain<T: Float>(y: &mut [T], a: T, x: &[T]) {
    y.iter_mut().zip(x).for_each(|(v, &xv)| *v += a * xv);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn axpy_avx2<T: Float>(y: &mut [T], a: T, x: &[T]) {
    axpy_plain(y, a, x)
}

/// The masks of a 32-column AVX-512 micro-tile's two 16-lane vectors when only its first `cols`
/// columns are inside the matrix (bit `l` set: lane `l` is loaded and stored).
pub(crate) fn column_masks(cols: usize) -> (u16, u16) {
    let low = if cols >= 16 { 0xffff } else { (1u16 << cols) - 1 };
    let high = if cols >= 32 {
        0xffff
    } else if cols > 16 {
        (1u16 << (cols - 16)) - 1
    } else {
        0
    };
    (low, high)
}
