//! `tile`: maps the matrix ops of a quantized graph onto crossbar arrays.
//!
//! **Does**: for every Conv (groups and depthwise included), Gemm and MatMul with constant
//! integer weights, takes the im2col view of its weights (`K` rows per group, `N` columns),
//! chooses the weight encoding and slices of the target (`docs/hardware-model.md` §1), cuts each
//! group's matrix into row tiles of at most `R` rows and column groups of at most `C` physical
//! columns, places every block on an array ([`crate::placement`]), gives the layers that bound
//! throughput extra replicas when an `--arrays` budget leaves arrays spare, and sets the ADC step
//! of each layer: step 1 where the block is lossless, otherwise the smallest power-of-two step that
//! never clips (`worst`, also the starting point of `calib`, which `adc-calibrate` then narrows).
//! Every other node is marked digital. The graph gets the target's stamp.
//!
//! **Requires**: a quantized graph (after `quantize`): matrix ops read integer codes with
//! quantization parameters and have constant integer weights.
//!
//! **Guarantees**: every node has a placement; every crossbar map passes
//! `CrossbarMap::check` and no two blocks share a cell (the verifier checks both). Without a
//! target in the context the pass does nothing.

use crate::error::{PassError, Result};
use crate::placement::{pack, replicate, BlockReq};
use crate::{Pass, PassContext, Stats};
use cimc_backends::target::Target;
use cimc_ir::{
    AdcRange, ChipGeometry, CrossbarMap, Graph, NodeId, Op, Placement, TileBlock, WeightEncoding,
};

/// What the tile pass needs to know of the chip (built from a target file by the driver): the
/// target, whose geometry decides the mapping, and the `--arrays` budget.
#[derive(Clone, Debug, PartialEq)]
pub struct Chip {
    /// The target description (`mixed-precision` also prices energy with its cost figures).
    pub target: Target,
    /// The `--arrays` budget: replicate layers into the arrays left spare.
    pub budget: Option<usize>,
}

impl Chip {
    /// The chip of a target description, with an optional `--arrays` budget.
    pub fn from_target(t: &Target, budget: Option<usize>) -> Chip {
        Chip { target: t.clone(), budget }
    }

    /// Everything that decides the mapping.
    pub fn geometry(&self) -> &ChipGeometry {
        &self.target.chip
    }
}

pub struct Tile;

/// `(k, n, groups)` of a matrix op from its weight shape, or `None` when it has no constant
/// weight matrix.
fn matrix_dims(g: &Graph, id: NodeId) -> Option<(usize, usize, usize)> {
    let node = g.node(id);
    let w = *node.inputs.get(1)?;
    if !g.value(w).is_const() {
        return None;
    }
    let s = &g.ty(w).shape;
    match &node.op {
        Op::Conv(a) if s.len() >= 3 => Some((s[1..].iter().product(), s[0], a.group)),
        Op::Gemm { trans_b, .. } if s.len() == 2 => {
            Some(if *trans_b { (s[1], s[0], 1) } else { (s[0], s[1], 1) })
        }
        Op::MatMul if s.len() == 2 => Some((s[0], s[1], 1)),
        _ => None,
    }
}

/// The map of one matrix op, without blocks.
fn map_for(g: &Graph, id: NodeId, chip: &ChipGeometry) -> Result<Option<CrossbarMap>> {
    let Some((k, n, groups)) = matrix_dims(g, id) else { return Ok(None) };
    let node = g.node(id);
    let (x, w) = (node.inputs[0], node.inputs[1]);
    let (Some(xq), Some(wq)) = (&g.ty(x).quant, &g.ty(w).quant) else {
        return Err(PassError::node(
            "tile",
            g,
            id,
            "tile needs a quantized graph: its input and weights must be integer codes (run quantize first)",
        ));
    };
    if !g.ty(w).dtype.is_int() || !g.ty(x).dtype.is_int() {
        return Err(PassError::node(
            "tile",
            g,
            id,
            "tile needs integer codes (run quantize first)",
        ));
    }
    let b_w = wq.bits as u32;
    let data =
        g.value(w).const_data().expect("invariant: matrix_dims checked the weights are constant");
    // The smallest code, read in place (weights can be millions of codes).
    let min_code = match data.dtype() {
        cimc_ir::DType::I8 => data.raw().iter().map(|&b| b as i8 as i64).min().unwrap_or(0),
        _ => (0..data.numel()).map(|i| data.get_i64(i)).min().unwrap_or(0),
    };
    let x = chip.crossbar;
    let magnitude_bits = match x.encoding {
        // A code of −2^(b_w−1) (full range, as some exporters write) needs one more bit.
        WeightEncoding::Differential if min_code <= -(1i64 << (b_w - 1)) => b_w,
        WeightEncoding::Differential => b_w - 1,
        WeightEncoding::Offset | WeightEncoding::Flipped => b_w,
    };
    let input_bits = xq.bits as u32;
    let input_min = if xq.signed { -(1i32 << (input_bits - 1)) } else { 0 };
    let mut m = CrossbarMap {
        geometry: x,
        weight_bits: b_w,
        magnitude_bits: magnitude_bits.max(1),
        input_bits,
        input_min,
        k,
        n,
        groups,
        weight_slices: magnitude_bits.max(1).div_ceil(x.cell_bits),
        input_slices: input_bits.div_ceil(x.dac_bits),
        adc_range: AdcRange::Worst,
        adc_step: vec![0],
        clip_rate: None,
        replicas: 1,
        blocks: Vec::new(),
    };
    if m.outputs_per_column_group() == 0 {
        return Err(PassError::node(
            "tile",
            g,
            id,
            format!(
                "one output needs {} physical columns ({} weight slices{}); the target's arrays have {} columns",
                m.columns_per_output(),
                m.weight_slices,
                if x.encoding == WeightEncoding::Differential { " x 2, differential" } else { "" },
                x.cols
            ),
        ));
    }
    let p_max = m.p_max_layer();
    let top = x.adc_top();
    if p_max <= top {
        m.adc_range = AdcRange::Lossless;
        m.clip_rate = Some(0.0);
    } else if chip.adc_range == AdcRange::Lossless {
        return Err(PassError::node(
            "tile",
            g,
            id,
            format!(
                "the target demands lossless ADCs, but a tile of {} rows gives partial sums up to {p_max} > {top}",
                k.min(x.rows)
            ),
        ));
    } else {
        m.adc_range = chip.adc_range;
        m.adc_step = vec![worst_case_step(p_max, top)];
        // Worst-case steps never clip; calibration replaces this with a measured rate.
        m.clip_rate = if chip.adc_range == AdcRange::Worst { Some(0.0) } else { None };
    }
    if chip.per_column_group && m.adc_range != AdcRange::Lossless {
        m.adc_step = vec![m.adc_step[0]; m.column_groups()];
    }
    Ok(Some(m))
}

/// The smallest `e` with `top · 2^e ≥ p_max` (§3, worst-case range).
pub fn worst_case_step(p_max: u64, top: u64) -> u32 {
    let mut e = 0;
    while top << e < p_max {
        e += 1;
    }
    e
}

/// The blocks of one replica of a layer, in (group, row tile, column group) order.
fn blocks_of(m: &CrossbarMap) -> Vec<(usize, (usize, usize), (usize, usize))> {
    let npg = m.n_per_group();
    let cpg = m.outputs_per_column_group();
    let mut out = Vec::new();
    for g in 0..m.groups {
        let rows = m.geometry.rows;
        for k0 in (0..m.k).step_by(rows) {
            for n0 in (0..npg).step_by(cpg) {
                out.push((g, (k0, (k0 + rows).min(m.k)), (n0, (n0 + cpg).min(npg))));
            }
        }
    }
    out
}

/// Per-image work of a layer that replication divides: output vectors (pixels) times input
/// slices.
fn load(g: &Graph, id: NodeId, m: &CrossbarMap) -> u64 {
    let node = g.node(id);
    let shape = &g.ty(node.outputs[0]).shape;
    let vectors: usize = match node.op {
        Op::Conv(_) => shape.iter().skip(2).product(),
        _ => shape.iter().skip(1).rev().skip(1).product(),
    };
    vectors as u64 * m.input_slices as u64
}

impl Pass for Tile {
    fn name(&self) -> &'static str {
        "tile"
    }

    fn run(&self, g: &mut Graph, cx: &PassContext) -> Result<Stats> {
        let mut stats = Stats::new();
        let Some(chip) = &cx.chip else { return Ok(stats) };
        let geometry = chip.geometry();
        let (rows, cols) = (geometry.crossbar.rows, geometry.crossbar.cols);
        let mut layers: Vec<(NodeId, CrossbarMap)> = Vec::new();
        for id in g.node_ids() {
            match map_for(g, id, geometry)? {
                Some(m) => layers.push((id, m)),
                None => g.node_mut(id).placement = Placement::Digital,
            }
        }
        let reqs: Vec<BlockReq> = layers
            .iter()
            .enumerate()
            .map(|(layer, (id, m))| BlockReq {
                layer,
                rects: blocks_of(m)
                    .iter()
                    .map(|&(_, k, n)| (k.1 - k.0, (n.1 - n.0) * m.columns_per_output()))
                    .collect(),
                load: load(g, *id, m),
            })
            .collect();
        let replicas = match chip.budget {
            Some(budget) => {
                let base = pack(rows, cols, &reqs, &vec![1; reqs.len()]).arrays;
                if base > budget {
                    return Err(PassError::Config(format!(
                        "the model needs {base} arrays of {rows}x{cols}; the --arrays budget is \
                         {budget}"
                    )));
                }
                replicate(rows, cols, &reqs, budget)
            }
            None => vec![1; reqs.len()],
        };
        let packed = pack(rows, cols, &reqs, &replicas);
        for (layer, (id, mut m)) in layers.into_iter().enumerate() {
            let shapes = blocks_of(&m);
            m.replicas = replicas[layer];
            for r in 0..m.replicas {
                for (bi, &(group, k, n)) in shapes.iter().enumerate() {
                    let (array, at) = packed.places[layer][r][bi];
                    m.blocks.push(TileBlock { replica: r, group, k, n, array, at });
                }
            }
            *stats.entry("crossbar layers").or_default() += 1;
            *stats.entry("blocks").or_default() += m.blocks.len() as u64;
            *stats.entry("replicas added").or_default() += (m.replicas - 1) as u64;
            if m.adc_range == AdcRange::Lossless {
                *stats.entry("lossless layers").or_default() += 1;
            }
            g.node_mut(id).placement = Placement::Crossbar(Box::new(m));
        }
        stats.insert("arrays", packed.arrays as u64);
        g.target = Some(chip.target.stamp());
        Ok(stats)
    }
}
