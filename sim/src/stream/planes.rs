//! Input planes kept across `mvm`s: the bit planes of the crossbar inputs
//! (`program::crossbar`) that an `mvm` makes from a recorded `im2col`'s vectors ([`super::lazy`])
//! are kept, keyed by where the vectors come from, until their image is written. The parts of a
//! layer that a layer-serial stream runs one after the other (each on the same vectors,
//! recorded again by the same `im2col`) then make them once.

use super::exec::Machine;
use super::lazy::{overlaps, ViewAt};
use crate::program::crossbar::{input_planes, Planes, PlanesLayout, PreparedCrossbar, Source};
use std::ops::Range;
use std::sync::Arc;

/// Words of input planes kept at most (the oldest are dropped first).
const PLANE_WORDS: usize = 1 << 24;

/// Input planes made on `core` from the vectors `at` (`count` of them) for a layout, valid while
/// the image `image` is not written.
pub(super) struct KeptPlanes {
    core: usize,
    at: ViewAt,
    count: usize,
    layout: PlanesLayout,
    image: Range<usize>,
    planes: Arc<Planes>,
}

impl Machine<'_> {
    /// Drops the input planes of core `c` whose image meets `ranges` (about to be written).
    pub(super) fn forget_planes(&mut self, c: usize, ranges: &[Range<usize>]) {
        self.planes.retain(|k| k.core != c || !ranges.iter().any(|r| overlaps(r, &k.image)));
    }

    /// The input planes of `count` vectors read through `at` on core `c`, for `p`: kept ones,
    /// or made now (and kept).
    pub(super) fn planes_for(
        &mut self,
        c: usize,
        at: ViewAt,
        count: usize,
        p: &PreparedCrossbar,
    ) -> Result<Arc<Planes>, String> {
        let layout = p.planes_layout();
        let same =
            |k: &KeptPlanes| k.core == c && k.at == at && k.count == count && k.layout == layout;
        if let Some(k) = self.planes.iter().find(|k| same(k)) {
            return Ok(k.planes.clone());
        }
        let view = at.view(self.s, &self.scratch[c]);
        let image = at.image(self.s);
        let planes = Arc::new(input_planes(p, &Source::Window(view), count)?);
        let mut total =
            planes.words() + self.planes.iter().map(|k| k.planes.words()).sum::<usize>();
        while total > PLANE_WORDS && !self.planes.is_empty() {
            total -= self.planes.remove(0).planes.words();
        }
        if total <= PLANE_WORDS {
            self.planes.push(KeptPlanes {
                core: c,
                at,
                count,
                layout,
                image,
                planes: planes.clone(),
            });
        }
        Ok(planes)
    }
}
