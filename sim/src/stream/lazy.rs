//! Lazy `im2col`: the vectors an `im2col` writes are usually read once, by the `mvm`s that
//! follow, and then overwritten by the next chunk's `im2col` (a layer split over several groups
//! even repeats the same `im2col` for each group). So the simulator records an `im2col` instead
//! of writing it, and an `mvm` that reads whole vectors of it reads them straight from the image
//! (as the program's crossbar kernel does), never touching the vectors' words. The words are
//! written out ("materialized") as soon as anything else could see the difference: before an
//! instruction reads or writes them or overwrites the image. A later `im2col` over some of a
//! record's vectors shortens it to the words still visible. The result is the same as writing
//! every `im2col` at once (`StreamRunner::set_lazy_im2col` turns this off, for tests).
//!
//! Records never depend on each other: one is written out at once when a later `im2col` would
//! read its vectors or write over its image, so that writing any record leaves the images of
//! the others intact.

use super::exec::{with_src_dst, Machine};
use super::window;
use crate::program::crossbar::WindowView;
use cimc_backends::isa::Instr;
use cimc_backends::stream::{GroupEntry, Stream, WindowEntry};
use std::ops::Range;

/// Records kept per core at most (the oldest is written out first).
const RECORDS: usize = 4;

/// An `im2col` recorded and not yet written.
#[derive(Clone, Debug)]
pub(super) struct Lazy {
    window: usize,
    src: Range<usize>,
    /// Where all its vectors go (addresses of vectors)...
    dst: Range<usize>,
    /// ...and the words of them still to be written (a later `im2col` covered the others).
    live: Range<usize>,
    pad: i64,
}

pub(super) fn overlaps(a: &Range<usize>, b: &Range<usize>) -> bool {
    a.start < b.end && b.start < a.end && !a.is_empty() && !b.is_empty()
}

fn per_vec(w: &WindowEntry) -> usize {
    (w.channels as usize * w.kernel[0] as usize * w.kernel[1] as usize).max(1)
}

/// Scratchpad ranges of the core that runs an instruction, and of the core it sends to.
pub(super) type Touched = (Vec<Range<usize>>, Option<(usize, Range<usize>)>);

/// The scratchpad ranges an instruction touches on the core that runs it, and on the core it
/// sends to; `None` for `im2col` and `mvm`, which read and write recorded im2cols themselves. A
/// range that cannot be computed (a bad table index, an error later) is the whole scratchpad.
pub(super) fn touched(s: &Stream, instr: &Instr) -> Option<Touched> {
    let all = 0..usize::MAX;
    let r = |start: u32, len: u64| start as usize..(start as u64 + len) as usize;
    let window = |w: u16| s.windows.get(w as usize);
    let local = match *instr {
        Instr::Load { dst, len, .. } | Instr::Fill { dst, len, .. } => vec![r(dst, len as u64)],
        Instr::Store { src, len, .. } => vec![r(src, len as u64)],
        Instr::Send { to, dst, src, len, .. } => {
            return Some((vec![r(src, len as u64)], Some((to as usize, r(dst, len as u64)))))
        }
        Instr::Copy { dst, src, len }
        | Instr::ShiftAdd { dst, src, len, .. }
        | Instr::Requant { dst, src, len, .. }
        | Instr::Relu { dst, src, len, .. } => vec![r(dst, len as u64), r(src, len as u64)],
        Instr::Add { a, b, dst, len, .. } => {
            vec![r(a, len as u64), r(b, len as u64), r(dst, len as u64)]
        }
        Instr::MaxPool { window: w, src, dst } | Instr::AvgPool { window: w, src, dst, .. } => {
            match window(w) {
                Some(e) => vec![r(src, e.source_len()), r(dst, e.pool_len())],
                None => vec![all],
            }
        }
        Instr::Transpose { table, src, dst } => match s.perms.get(table as usize) {
            Some(p) => vec![r(src, p.len()), r(dst, p.len())],
            None => vec![all],
        },
        Instr::Lut { src, dst, len, .. } => vec![r(dst, len as u64), r(src, len as u64)],
        Instr::Mul { a, b, dst, len, .. } => {
            vec![r(a, len as u64), r(b, len as u64), r(dst, len as u64)]
        }
        Instr::Softmax { table, src, dst }
        | Instr::LayerNorm { table, src, dst }
        | Instr::Gather { table, src, dst }
        | Instr::GatherRows { table, src, dst }
        | Instr::LutPerElement { table, src, dst } => {
            match s.digital.get(table as usize).and_then(|d| d.lengths()) {
                Some((read, written)) => vec![r(src, read), r(dst, written)],
                None => vec![all],
            }
        }
        // Both operands: the second's length from the entry's shape.
        Instr::Matmul { table, a, b, dst } => match s.digital.get(table as usize) {
            Some(d @ cimc_backends::stream::DigitalEntry::MatMul { b_shape, .. }) => {
                let (read, written) = d.lengths().unwrap_or((0, 0));
                let b_len = b_shape.iter().map(|&v| v as u64).product();
                vec![r(a, read), r(b, b_len), r(dst, written)]
            }
            _ => vec![all],
        },
        Instr::Im2col { .. } | Instr::Mvm { .. } => return None,
        // No scratchpad words: control, host work on global memory, crossbar configuration.
        Instr::Halt {}
        | Instr::Sync { .. }
        | Instr::Recv { .. }
        | Instr::Host { .. }
        | Instr::XbarConfig { .. }
        | Instr::AdcStep { .. }
        | Instr::XbarLoad { .. } => vec![],
    };
    Some((local, None))
}

/// Where an `mvm` reads a recorded `im2col`'s vectors: everything but the memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct ViewAt {
    window: usize,
    src: usize,
    first: usize,
    offset: usize,
    group_stride: usize,
    pad: i64,
}

impl ViewAt {
    /// The words of the image.
    pub(super) fn image(&self, s: &Stream) -> Range<usize> {
        let w = &s.windows[self.window];
        self.src..self.src + w.channels as usize * w.height as usize * w.width as usize
    }

    /// The view over `mem` (the image is the recorded source range).
    pub(super) fn view<'m>(&self, s: &Stream, mem: &'m [i64]) -> WindowView<'m> {
        let w = &s.windows[self.window];
        let u = |v: u32| v as usize;
        WindowView {
            x: &mem[self.src..],
            h: u(w.height),
            w: u(w.width),
            kernel: [u(w.kernel[0]), u(w.kernel[1])],
            strides: [u(w.strides[0]), u(w.strides[1])],
            dilations: [u(w.dilations[0]), u(w.dilations[1])],
            pads: [u(w.pads[0]), u(w.pads[1])],
            out_width: u(w.out_width),
            first: self.first,
            offset: self.offset,
            group_stride: self.group_stride,
            pad: self.pad,
        }
    }
}

impl Machine<'_> {
    /// Writes out record `i` of core `c` (its live words) and drops it.
    fn write_record(&mut self, c: usize, i: usize) -> Result<(), String> {
        let l = self.lazy[c].remove(i);
        self.write_part(c, &l, l.live.clone())
    }

    /// Writes out every record of core `c` that `pred` selects.
    fn write_records(&mut self, c: usize, pred: impl Fn(&Lazy) -> bool) -> Result<(), String> {
        while let Some(i) = self.lazy[c].iter().position(&pred) {
            self.write_record(c, i)?;
        }
        Ok(())
    }

    /// Writes the words `part` (inside `l.dst`) of a recorded `im2col`: the vectors that hold
    /// them are computed, and only `part` is written.
    fn write_part(&mut self, c: usize, l: &Lazy, part: Range<usize>) -> Result<(), String> {
        if part.is_empty() {
            return Ok(());
        }
        self.forget_planes(c, std::slice::from_ref(&part));
        let w = &self.s.windows[l.window];
        let per_vec = per_vec(w);
        let (from, to) = (part.start - l.dst.start, part.end - l.dst.start);
        let (p0, p1) = (from / per_vec, to.div_ceil(per_vec));
        let mem = &mut self.scratch[c];
        if p0 == 0 && p1 * per_vec == l.dst.len() && part == l.dst {
            return with_src_dst(mem, l.src.clone(), part, |x, out| {
                window::im2col(w, x, l.pad, out)
            });
        }
        let some = WindowEntry {
            first_position: w.first_position + p0 as u32,
            positions: (p1 - p0) as u32,
            ..w.clone()
        };
        let mut vectors = vec![0; (p1 - p0) * per_vec];
        window::im2col(&some, &mem[l.src.clone()], l.pad, &mut vectors)?;
        mem[part].copy_from_slice(&vectors[from - p0 * per_vec..to - p0 * per_vec]);
        Ok(())
    }

    /// Before an instruction touches `ranges` of core `c`'s scratchpad: writes out the records
    /// whose image or live vectors they meet, and drops the input planes made from an image
    /// they meet.
    pub(super) fn settle(&mut self, c: usize, ranges: &[Range<usize>]) -> Result<(), String> {
        self.forget_planes(c, ranges);
        self.write_records(c, |l| {
            ranges.iter().any(|r| overlaps(r, &l.src) || overlaps(r, &l.live))
        })
    }

    /// `im2col` of window `window` from `src` to `dst` (ranges checked): recorded, unless its
    /// source and destination overlap or recording is off (then written at once).
    pub(super) fn im2col(
        &mut self,
        c: usize,
        window: usize,
        src: Range<usize>,
        dst: Range<usize>,
        pad: i64,
    ) -> Result<(), String> {
        // Records whose vectors it reads, or whose image it will write over, are written now.
        self.write_records(c, |l| overlaps(&src, &l.live) || overlaps(&dst, &l.src))?;
        // The others lose the words it covers.
        let mut i = 0;
        while i < self.lazy[c].len() {
            let l = self.lazy[c][i].clone();
            if !overlaps(&dst, &l.live) {
                i += 1;
                continue;
            }
            let head = l.live.start..dst.start.clamp(l.live.start, l.live.end);
            let tail = dst.end.clamp(l.live.start, l.live.end)..l.live.end;
            match (head.is_empty(), tail.is_empty()) {
                (true, true) => {
                    self.lazy[c].remove(i);
                    continue;
                }
                (false, false) => {
                    self.write_part(c, &l, head)?;
                    self.lazy[c][i].live = tail;
                }
                (false, true) => self.lazy[c][i].live = head,
                (true, false) => self.lazy[c][i].live = tail,
            }
            i += 1;
        }
        if overlaps(&src, &dst) || !self.lazy_im2col {
            self.forget_planes(c, std::slice::from_ref(&dst));
            let w = &self.s.windows[window];
            let mem = &mut self.scratch[c];
            let x = mem[src].to_vec();
            return window::im2col(w, &x, pad, &mut mem[dst]);
        }
        if self.lazy[c].len() >= RECORDS {
            self.write_record(c, 0)?;
        }
        self.lazy[c].push(Lazy { window, src, live: dst.clone(), dst, pad });
        Ok(())
    }

    /// Before an `mvm` of group `g` reading `input` and writing `output`: where it can read its
    /// vectors from a record's image (`None`: from the words, after writing out the records
    /// whose vectors it reads without reading them whole, or whose image or vectors it writes).
    pub(super) fn mvm_view(
        &mut self,
        c: usize,
        g: &GroupEntry,
        src: usize,
        count: usize,
        input: Range<usize>,
        output: Range<usize>,
    ) -> Result<Option<ViewAt>, String> {
        self.write_records(c, |l| overlaps(&output, &l.src) || overlaps(&output, &l.live))?;
        let mut found = None;
        for l in &self.lazy[c] {
            if !overlaps(&input, &l.live) {
                continue;
            }
            let w = &self.s.windows[l.window];
            let per_vec = per_vec(w);
            let rel = src.checked_sub(l.dst.start);
            let fits = rel.is_some_and(|rel| {
                let (j0, off) = (rel / per_vec, rel % per_vec);
                let rows = off
                    + g.in_offset as usize
                    + (g.conv_groups as usize).saturating_sub(1) * g.group_stride as usize
                    + g.k as usize;
                g.in_stride as usize == per_vec
                    && rows <= per_vec
                    && j0 + count <= w.positions as usize
                    && l.live.start <= input.start
                    && input.end <= l.live.end
            });
            if let (Some(rel), true) = (rel, fits) {
                found = Some(ViewAt {
                    window: l.window,
                    src: l.src.start,
                    first: w.first_position as usize + rel / per_vec,
                    offset: rel % per_vec + g.in_offset as usize,
                    group_stride: g.group_stride as usize,
                    pad: l.pad,
                });
                break;
            }
        }
        if found.is_none() {
            self.write_records(c, |l| overlaps(&input, &l.live))?;
        }
        Ok(found)
    }
}
