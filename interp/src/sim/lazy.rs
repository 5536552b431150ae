//! Lazy `im2col`: the vectors an `im2col` writes are usually read once, by the `mvm`s that
//! follow, and then overwritten by the next chunk's `im2col` (a layer split over several groups
//! even repeats the same `im2col` for each group). So the simulator records an `im2col` instead
//! of writing it, and an `mvm` that reads whole vectors of it reads them straight from the image
//! (as the program's crossbar kernel does), never touching the vectors' words. The words are
//! written out ("materialized") as soon as anything else could see the difference: before an
//! instruction reads or writes them, before anything overwrites the image, and before another
//! `im2col` is recorded. The result is the same as writing every `im2col` at once.

use super::exec::{with_src_dst, Machine};
use super::window;
use crate::program::crossbar::WindowView;
use cimc_backends::isa::Instr;
use cimc_backends::stream::{GroupEntry, Stream};
use std::ops::Range;

/// An `im2col` recorded and not yet written.
#[derive(Clone, Debug)]
pub(super) struct Lazy {
    window: usize,
    src: Range<usize>,
    dst: Range<usize>,
    pad: i64,
}

fn overlaps(a: &Range<usize>, b: &Range<usize>) -> bool {
    a.start < b.end && b.start < a.end && !a.is_empty() && !b.is_empty()
}

/// The scratchpad ranges an instruction other than `im2col` and `mvm` touches on the core that
/// runs it, and on the core it sends to. A range that cannot be computed (a bad table index,
/// an error later) is the whole scratchpad.
pub(super) fn touched(
    s: &Stream,
    instr: &Instr,
) -> (Vec<Range<usize>>, Option<(usize, Range<usize>)>) {
    let all = 0..usize::MAX;
    let r = |start: u32, len: u64| start as usize..(start as u64 + len) as usize;
    let window = |w: u16| s.windows.get(w as usize);
    let local = match *instr {
        Instr::Load { dst, len, .. } | Instr::Fill { dst, len, .. } => vec![r(dst, len as u64)],
        Instr::Store { src, len, .. } | Instr::Send { src, len, .. } => vec![r(src, len as u64)],
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
        Instr::Im2col { .. } | Instr::Mvm { .. } => vec![all],
        _ => vec![],
    };
    let remote = match *instr {
        Instr::Send { to, dst, len, .. } => Some((to as usize, r(dst, len as u64))),
        _ => None,
    };
    (local, remote)
}

/// Where an `mvm` reads a recorded `im2col`'s vectors: everything but the memory.
#[derive(Clone, Copy, Debug)]
pub(super) struct ViewAt {
    window: usize,
    src: usize,
    first: usize,
    offset: usize,
    group_stride: usize,
    pad: i64,
}

impl ViewAt {
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
    /// Writes out core `c`'s recorded `im2col`, if any.
    pub(super) fn materialize(&mut self, c: usize) -> Result<(), String> {
        let Some(l) = self.lazy[c].take() else { return Ok(()) };
        let w = &self.s.windows[l.window];
        with_src_dst(&mut self.scratch[c], l.src, l.dst, |x, out| window::im2col(w, x, l.pad, out))
    }

    /// Writes the words `part` (inside `l.dst`) of a recorded `im2col`: the vectors that hold
    /// them are computed, and only `part` is written.
    fn write_part(&mut self, c: usize, l: &Lazy, part: Range<usize>) -> Result<(), String> {
        let w = &self.s.windows[l.window];
        let per_vec = (w.channels as usize * w.kernel[0] as usize * w.kernel[1] as usize).max(1);
        let (from, to) = (part.start - l.dst.start, part.end - l.dst.start);
        let (p0, p1) = (from / per_vec, to.div_ceil(per_vec));
        let some = cimc_backends::stream::WindowEntry {
            first_position: w.first_position + p0 as u32,
            positions: (p1 - p0) as u32,
            ..w.clone()
        };
        let mut vectors = vec![0; (p1 - p0) * per_vec];
        let mem = &mut self.scratch[c];
        window::im2col(&some, &mem[l.src.clone()], l.pad, &mut vectors)?;
        mem[part].copy_from_slice(&vectors[from - p0 * per_vec..to - p0 * per_vec]);
        Ok(())
    }

    /// Before an instruction touches `ranges` of core `c`'s scratchpad: writes out a recorded
    /// `im2col` whose image or vectors they meet.
    pub(super) fn settle(&mut self, c: usize, ranges: &[Range<usize>]) -> Result<(), String> {
        let meets = match &self.lazy[c] {
            Some(l) => ranges.iter().any(|r| overlaps(r, &l.src) || overlaps(r, &l.dst)),
            None => false,
        };
        if meets {
            self.materialize(c)?;
        }
        Ok(())
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
        if let Some(old) = self.lazy[c].take() {
            if overlaps(&src, &old.dst) || !overlaps(&dst, &old.dst) {
                // The new im2col reads the old vectors, or leaves them all visible.
                self.lazy[c] = Some(old);
                self.materialize(c)?;
            } else {
                // Only the old vectors' words that the new ones do not cover stay visible.
                if old.dst.start < dst.start {
                    self.write_part(c, &old, old.dst.start..dst.start)?;
                }
                if dst.end < old.dst.end {
                    self.write_part(c, &old, dst.end..old.dst.end)?;
                }
            }
        }
        if overlaps(&src, &dst) || !self.lazy_im2col {
            let w = &self.s.windows[window];
            let mem = &mut self.scratch[c];
            let x = mem[src].to_vec();
            return window::im2col(w, &x, pad, &mut mem[dst]);
        }
        self.lazy[c] = Some(Lazy { window, src, dst, pad });
        Ok(())
    }

    /// Before an `mvm` of group `g` reading `input` and writing `output`: where it can read its
    /// vectors from the recorded `im2col`'s image (`None`: from the words, after writing the
    /// recorded vectors out if the `mvm` reads them or writes over them or their image).
    pub(super) fn mvm_view(
        &mut self,
        c: usize,
        g: &GroupEntry,
        src: usize,
        count: usize,
        input: Range<usize>,
        output: Range<usize>,
    ) -> Result<Option<ViewAt>, String> {
        let Some(l) = self.lazy[c].clone() else { return Ok(None) };
        if overlaps(&output, &l.src) || overlaps(&output, &l.dst) {
            self.materialize(c)?;
            return Ok(None);
        }
        if !overlaps(&input, &l.dst) {
            return Ok(None);
        }
        let w = &self.s.windows[l.window];
        let per_vec = w.channels as usize * w.kernel[0] as usize * w.kernel[1] as usize;
        let rel = src.checked_sub(l.dst.start);
        let fits = rel.is_some_and(|rel| {
            let (j0, off) = (rel / per_vec.max(1), rel % per_vec.max(1));
            let rows = off
                + g.in_offset as usize
                + (g.conv_groups as usize).saturating_sub(1) * g.group_stride as usize
                + g.k as usize;
            g.in_stride as usize == per_vec && rows <= per_vec && j0 + count <= w.positions as usize
        });
        match rel {
            Some(rel) if fits => Ok(Some(ViewAt {
                window: l.window,
                src: l.src.start,
                first: w.first_position as usize + rel / per_vec,
                offset: rel % per_vec + g.in_offset as usize,
                group_stride: g.group_stride as usize,
                pad: l.pad,
            })),
            _ => {
                self.materialize(c)?;
                Ok(None)
            }
        }
    }
}
