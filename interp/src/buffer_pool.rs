//! [`BufferPool`]: f32 buffers a float run frees, handed to later convolutions of the same run.

/// f32 buffers of tensors freed during a run, reused for convolution outputs later in the same
/// run: no allocation, zeroing or page faults for them (the convolution overwrites every
/// element).
#[derive(Default)]
pub(crate) struct BufferPool {
    free: Vec<Vec<f32>>,
}

impl std::fmt::Debug for BufferPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "BufferPool({} buffers)", self.free.len())
    }
}

impl BufferPool {
    /// Buffers kept at most (the largest are kept).
    const KEEP: usize = 8;

    pub(crate) fn put(&mut self, a: ndarray::ArrayD<f32>) {
        let (v, offset) = a.into_raw_vec_and_offset();
        if offset.unwrap_or(0) != 0 || v.capacity() < 64 {
            return;
        }
        self.free.push(v);
        if self.free.len() > Self::KEEP {
            self.free.sort_unstable_by_key(|v| std::cmp::Reverse(v.capacity()));
            self.free.truncate(Self::KEEP);
        }
    }

    /// A vector of `len` elements with unspecified contents.
    pub(crate) fn take(&mut self, len: usize) -> Vec<f32> {
        let best = (0..self.free.len())
            .filter(|&i| self.free[i].capacity() >= len)
            .min_by_key(|&i| self.free[i].capacity());
        let mut v = match best {
            Some(i) => self.free.swap_remove(i),
            None => Vec::new(),
        };
        v.truncate(len);
        v.resize(len, 0.0);
        v
    }
}
