//! The cost model's view of a scratchpad: the width of every word written, for the buffer
//! traffic of instructions that move words of any kind and for the footprint of a core.

use std::collections::BTreeMap;

/// Scratchpad words, at 4 bits per word: the current width in bytes (0 = never written) and,
/// in the high nibble, the widest ever stored. Sparse pages, so that a large scratchpad costs
/// only what is touched.
#[derive(Default)]
pub(super) struct Shadow {
    pages: BTreeMap<u64, Box<[u8]>>,
    pub(super) high_water: u64,
}

const PAGE: u64 = 4096;

impl Shadow {
    pub(super) fn touch(&mut self, addr: u64, len: u64) {
        if len > 0 {
            self.high_water = self.high_water.max(addr + len);
        }
    }

    /// Calls `f(page, offset, run)` for the page runs of `addr .. addr + len`.
    fn runs(addr: u64, len: u64, mut f: impl FnMut(u64, usize, usize)) {
        let (mut a, end) = (addr, addr + len);
        while a < end {
            let off = a % PAGE;
            let n = (PAGE - off).min(end - a);
            f(a / PAGE, off as usize, n as usize);
            a += n;
        }
    }

    pub(super) fn write_with(&mut self, addr: u64, len: u64, mut width: impl FnMut(usize) -> u8) {
        self.touch(addr, len);
        let mut k = 0;
        let pages = &mut self.pages;
        Shadow::runs(addr, len, |p, off, n| {
            let page = pages.entry(p).or_insert_with(|| vec![0; PAGE as usize].into());
            for b in &mut page[off..off + n] {
                let w = width(k).min(15);
                *b = w | ((*b >> 4).max(w) << 4);
                k += 1;
            }
        });
    }

    pub(super) fn write(&mut self, addr: u64, len: u64, w: u8) {
        self.write_with(addr, len, |_| w);
    }

    /// The current widths, `default` for words never written.
    pub(super) fn widths(&mut self, addr: u64, len: u64, default: u8) -> Vec<u8> {
        self.touch(addr, len);
        let mut out = Vec::with_capacity(len as usize);
        Shadow::runs(addr, len, |p, off, n| match self.pages.get(&p) {
            Some(page) => out.extend(page[off..off + n].iter().map(|&b| match b & 15 {
                0 => default,
                w => w,
            })),
            None => out.extend(std::iter::repeat_n(default, n)),
        });
        out
    }

    pub(super) fn read_bytes(&mut self, addr: u64, len: u64, default: u8) -> u64 {
        self.widths(addr, len, default).iter().map(|&w| w as u64).sum()
    }

    pub(super) fn footprint(&self) -> u64 {
        self.pages.values().flat_map(|p| p.iter()).map(|&b| (b >> 4) as u64).sum()
    }
}
