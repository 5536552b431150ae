//! Placing weight blocks on arrays, and choosing replicas (used by the `tile` pass).
//!
//! Blocks are packed on the diagonal of an array: an array keeps a free row and a free column
//! cursor, and a block of `r x c` cells goes where both are still free. Blocks that share an
//! array then share neither rows nor columns, so they can be read at the same time without
//! their inputs or bit lines mixing (`docs/hardware-model.md` §1, *Placement*). Arrays are
//! filled first-fit in the order they were opened, layers in graph order: the result is
//! deterministic.

/// The blocks of one layer (one replica): `(rows, physical columns)` each, and the per-image
/// work a replica divides.
#[derive(Clone, Debug)]
pub struct BlockReq {
    pub layer: usize,
    pub rects: Vec<(usize, usize)>,
    pub load: u64,
}

/// Where every block went: `places[layer][replica][block] = (array, (row, col))`.
#[derive(Clone, Debug, Default)]
pub struct Packed {
    pub arrays: usize,
    pub places: Vec<Vec<Vec<(usize, (usize, usize))>>>,
}

/// Packs every replica of every layer.
pub fn pack(rows: usize, cols: usize, reqs: &[BlockReq], replicas: &[usize]) -> Packed {
    // (array, next free row, next free column) of the arrays that still have room.
    let mut open: Vec<(usize, usize, usize)> = Vec::new();
    let mut arrays = 0;
    let mut places = Vec::with_capacity(reqs.len());
    for (req, &reps) in reqs.iter().zip(replicas) {
        let mut layer = Vec::with_capacity(reps);
        for _ in 0..reps {
            let mut copy = Vec::with_capacity(req.rects.len());
            for &(r, c) in &req.rects {
                let slot = open.iter().position(|&(_, fr, fc)| fr + r <= rows && fc + c <= cols);
                let place = match slot {
                    Some(i) => {
                        let (a, fr, fc) = open[i];
                        if fr + r == rows || fc + c == cols {
                            // Full: no block (at least 1 x 1) fits any more.
                            open.remove(i);
                        } else {
                            open[i] = (a, fr + r, fc + c);
                        }
                        (a, (fr, fc))
                    }
                    None => {
                        let a = arrays;
                        arrays += 1;
                        if r < rows && c < cols {
                            open.push((a, r, c));
                        }
                        (a, (0, 0))
                    }
                };
                copy.push(place);
            }
            layer.push(copy);
        }
        places.push(layer);
    }
    Packed { arrays, places }
}

/// Replicas per layer within `budget` arrays (PIMCOMP-style balance): while arrays are
/// spare, give one more replica to the layer whose per-image work per replica is largest —
/// the pipeline's bottleneck — as long as a copy of it fits in what is left. Stops when the
/// bottleneck no longer fits (replicating any other layer would not speed the pipeline up).
pub fn replicate(rows: usize, cols: usize, reqs: &[BlockReq], budget: usize) -> Vec<usize> {
    let mut reps = vec![1usize; reqs.len()];
    if reqs.is_empty() {
        return reps;
    }
    let used = pack(rows, cols, reqs, &reps).arrays;
    let cost: Vec<usize> =
        reqs.iter().map(|r| pack(rows, cols, std::slice::from_ref(r), &[1]).arrays).collect();
    let mut spare = budget.saturating_sub(used);
    loop {
        // The bottleneck: largest load / replicas (compared exactly as fractions); ties go to
        // the earlier layer.
        let b = (0..reqs.len())
            .max_by(|&a, &b| {
                let (la, lb) = (
                    reqs[a].load as u128 * reps[b] as u128,
                    reqs[b].load as u128 * reps[a] as u128,
                );
                la.cmp(&lb).then(b.cmp(&a))
            })
            .expect("invariant: reqs is not empty");
        if reqs[b].load == 0 || cost[b] > spare {
            break;
        }
        reps[b] += 1;
        spare -= cost[b];
    }
    // Packing copies together never needs more than packing them apart, but check.
    while pack(rows, cols, reqs, &reps).arrays > budget {
        match (0..reqs.len()).filter(|&i| reps[i] > 1).max_by_key(|&i| reps[i]) {
            Some(i) => reps[i] -= 1,
            None => break,
        }
    }
    reps
}
