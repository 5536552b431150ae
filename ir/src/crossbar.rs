//! Where a node runs once a chip is chosen: the crossbar tile map, part of the IR.
//!
//! The `tile` pass gives every node a [`Placement`]: matrix ops (Conv, Gemm, MatMul) get a
//! [`CrossbarMap`] (the arrays it is mapped onto, a [`CrossbarGeometry`]; how the weights are
//! encoded, sliced and cut into blocks, and which array holds which block), everything else is
//! [`Placement::Digital`]. The arithmetic these numbers
//! describe is `docs/hardware-model.md` §1 and §3; the names follow its symbols.
//!
//! The IR knows nothing of target files: a map is plain numbers, and a graph only carries a
//! [`TargetStamp`] (a name, a hash and a one-line summary) so that every dump says which chip
//! it is for.
//!
//! Text form, after the node it belongs to:
//!
//! ```text
//!   %y : u8[1,8,4,4] q(...) = conv(%x, @w, @b) {...}  "conv1"
//!     xbar {encoding=differential, array=[128, 128], cell_bits=2, dac_bits=1, adc_bits=8,
//!           weight_bits=8, magnitude_bits=7, input_bits=8, input_min=0, k=18, n=8, groups=1,
//!           weight_slices=4, input_slices=8, adc_range=worst, adc_step=[0], replicas=1}
//!     tile {replica=0, group=0, k=[0, 18], n=[0, 8], array=0, at=[0, 0]}
//!   %z : u8[1,8,2,2] q(...) = max_pool(%y) {...}  "pool1"  digital
//! ```

pub use crate::chip::{partial_sum_max, AdcRange, CrossbarGeometry, WeightEncoding};

/// One block of a layer's weight matrix on one array: rows `k` of group `group` (in im2col
/// order), logical output columns `n` of that group, placed with its first row at array row
/// `at.0` and its first physical column at `at.1`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct TileBlock {
    pub replica: usize,
    pub group: usize,
    pub k: (usize, usize),
    pub n: (usize, usize),
    pub array: usize,
    pub at: (usize, usize),
}

/// The crossbar mapping of one matrix op.
#[derive(Clone, Debug, PartialEq)]
pub struct CrossbarMap {
    /// The arrays the layer is mapped onto: encoding, `R x C`, `b_c`, `b_d`, `b_adc`.
    pub geometry: CrossbarGeometry,
    /// `b_w`: the width of the weight codes.
    pub weight_bits: u32,
    /// `b`: bits of the stored unsigned magnitude (`b_w − 1` differential, `b_w` offset; one
    /// more for a differential layer whose codes reach `−2^(b_w−1)`).
    pub magnitude_bits: u32,
    /// `b_a` and `q_min` of the input codes: the crossbar receives `v = q_x − q_min`.
    pub input_bits: u32,
    pub input_min: i32,
    /// Rows of one group's matrix (`C_in/groups · kH · kW`, or Gemm's K).
    pub k: usize,
    /// Output columns of the whole layer (all groups).
    pub n: usize,
    pub groups: usize,
    /// `S_w` and `S_x` (redundant with the bits above; checked by the verifier).
    pub weight_slices: u32,
    pub input_slices: u32,
    /// How this layer's ADC step was chosen (`Lossless` when its partial sums all fit, whatever
    /// the chip's mode).
    pub adc_range: AdcRange,
    /// `e` of the ADC step `2^e`: one for the layer, or one per column group.
    pub adc_step: Vec<u32>,
    /// The fraction of conversions that clip on the calibration data, when measured.
    pub clip_rate: Option<f64>,
    pub replicas: usize,
    pub blocks: Vec<TileBlock>,
}

/// `ceil(a / b)` for `b > 0`.
pub fn div_ceil(a: usize, b: usize) -> usize {
    a.div_ceil(b.max(1))
}

impl CrossbarMap {
    /// Physical columns per logical output column: one per weight slice, twice that when
    /// differential.
    pub fn columns_per_output(&self) -> usize {
        self.geometry.columns_per_output(self.weight_slices)
    }

    /// Logical output columns one array holds (a column group).
    pub fn outputs_per_column_group(&self) -> usize {
        self.geometry.cols / self.columns_per_output().max(1)
    }

    /// Output columns of one group.
    pub fn n_per_group(&self) -> usize {
        self.n / self.groups.max(1)
    }

    pub fn row_tiles_per_group(&self) -> usize {
        div_ceil(self.k, self.geometry.rows)
    }

    pub fn column_groups_per_group(&self) -> usize {
        div_ceil(self.n_per_group(), self.outputs_per_column_group())
    }

    pub fn column_groups(&self) -> usize {
        self.groups * self.column_groups_per_group()
    }

    /// The column group of output column `n` (the index into a per-column-group `adc_step`).
    pub fn column_group_of(&self, n: usize) -> usize {
        let npg = self.n_per_group().max(1);
        (n / npg) * self.column_groups_per_group() + (n % npg) / self.outputs_per_column_group()
    }

    /// `P_max` of the tallest row tile.
    pub fn p_max_layer(&self) -> u64 {
        self.geometry.p_max(self.k.min(self.geometry.rows))
    }

    /// Whether every conversion of the layer is exact (§3 lossless condition and step 1).
    pub fn is_lossless(&self) -> bool {
        self.p_max_layer() <= self.geometry.adc_top() && self.adc_step.iter().all(|&e| e == 0)
    }

    /// Weight cells the layer's weights occupy in one replica.
    pub fn weight_cells(&self) -> usize {
        self.k * self.n * self.columns_per_output()
    }

    /// Distinct arrays used by the layer.
    pub fn arrays(&self) -> Vec<usize> {
        let mut a: Vec<usize> = self.blocks.iter().map(|b| b.array).collect();
        a.sort_unstable();
        a.dedup();
        a
    }

    /// Checks the map's own consistency against the layer's matrix (`k` rows per group, `n`
    /// columns, `groups`): slices agree with the bits, every (replica, group) is covered by
    /// blocks exactly once, and every block fits its array.
    pub fn check(&self) -> Result<(), String> {
        let x = &self.geometry;
        x.validate()?;
        let want_ws = div_ceil(self.magnitude_bits as usize, x.cell_bits as usize) as u32;
        let want_xs = div_ceil(self.input_bits as usize, x.dac_bits as usize) as u32;
        if self.weight_slices != want_ws || self.input_slices != want_xs {
            return Err(format!(
                "weight_slices={} and input_slices={} do not match the bits (expected {want_ws} and {want_xs})",
                self.weight_slices, self.input_slices
            ));
        }
        if self.groups == 0 || !self.n.is_multiple_of(self.groups) || self.replicas == 0 {
            return Err(format!(
                "n={} is not a multiple of groups={} (or replicas is 0)",
                self.n, self.groups
            ));
        }
        if self.outputs_per_column_group() == 0 {
            return Err(format!(
                "one output needs {} physical columns; the array has {}",
                self.columns_per_output(),
                x.cols
            ));
        }
        let ncg = self.column_groups();
        if self.adc_step.len() != 1 && self.adc_step.len() != ncg {
            return Err(format!(
                "{} ADC steps; expected 1 (per layer) or {ncg} (per column group)",
                self.adc_step.len()
            ));
        }
        if let Some(e) = self.adc_step.iter().find(|&&e| e > 40) {
            return Err(format!("ADC step 2^{e} is out of range"));
        }
        let npg = self.n_per_group();
        // Each (replica, group) must be tiled exactly: count covered cells of the K x N block.
        let mut covered = vec![0usize; self.replicas * self.groups];
        for b in &self.blocks {
            if b.replica >= self.replicas || b.group >= self.groups {
                return Err(format!(
                    "a tile names replica {} / group {} (the layer has {} / {})",
                    b.replica, b.group, self.replicas, self.groups
                ));
            }
            if b.k.0 >= b.k.1 || b.k.1 > self.k || b.n.0 >= b.n.1 || b.n.1 > npg {
                return Err(format!(
                    "tile k=[{}, {}] n=[{}, {}] is empty or outside the group's {} x {} matrix",
                    b.k.0, b.k.1, b.n.0, b.n.1, self.k, npg
                ));
            }
            let rows = b.k.1 - b.k.0;
            let cols = (b.n.1 - b.n.0) * self.columns_per_output();
            if b.at.0 + rows > x.rows || b.at.1 + cols > x.cols {
                return Err(format!(
                    "tile on array {} at ({}, {}) with {rows} rows and {cols} columns overflows the {} x {} array",
                    b.array, b.at.0, b.at.1, x.rows, x.cols
                ));
            }
            covered[b.replica * self.groups + b.group] += rows * (b.n.1 - b.n.0);
        }
        if let Some(i) = covered.iter().position(|&c| c != self.k * npg) {
            return Err(format!(
                "replica {} group {}: tiles cover {} of the {} weights (overlapping or missing blocks)",
                i / self.groups,
                i % self.groups,
                covered[i],
                self.k * npg
            ));
        }
        Ok(())
    }

    /// The physical rectangle `(rows, cols)` of a block.
    pub fn block_extent(&self, b: &TileBlock) -> (usize, usize) {
        (b.k.1 - b.k.0, (b.n.1 - b.n.0) * self.columns_per_output())
    }
}

/// Where a node runs.
#[derive(Clone, Debug, Default, PartialEq)]
pub enum Placement {
    /// No target chosen yet.
    #[default]
    Unplaced,
    /// On the digital units (pooling, Add, Softmax, requantization...).
    Digital,
    /// On crossbar arrays.
    Crossbar(Box<CrossbarMap>),
}

/// Which chip a graph was mapped for: echoed in every dump.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TargetStamp {
    pub name: String,
    /// The hash of what decides the mapping (`ChipGeometry::hash_hex`, 16 hex digits).
    pub hash: String,
    /// One line saying what the chip is.
    pub summary: String,
}

impl TargetStamp {
    /// `name hash=HEX summary`: the stamp as programs and streams print it.
    pub fn line(&self) -> String {
        format!("{} hash={} {}", self.name, self.hash, self.summary)
    }
}

// ---- text form (used by `print` and `parse`) ----

use crate::optable::{Attr, AttrErr, Attrs};

pub(crate) fn map_attrs(m: &CrossbarMap) -> Vec<(&'static str, Attr)> {
    let x = &m.geometry;
    let mut v = vec![
        ("encoding", Attr::Word(x.encoding.name())),
        ("array", Attr::UInts(vec![x.rows, x.cols])),
        ("cell_bits", Attr::UInt(x.cell_bits as usize)),
        ("dac_bits", Attr::UInt(x.dac_bits as usize)),
        ("adc_bits", Attr::UInt(x.adc_bits as usize)),
        ("weight_bits", Attr::UInt(m.weight_bits as usize)),
        ("magnitude_bits", Attr::UInt(m.magnitude_bits as usize)),
        ("input_bits", Attr::UInt(m.input_bits as usize)),
        ("input_min", Attr::Int(m.input_min as i64)),
        ("k", Attr::UInt(m.k)),
        ("n", Attr::UInt(m.n)),
        ("groups", Attr::UInt(m.groups)),
        ("weight_slices", Attr::UInt(m.weight_slices as usize)),
        ("input_slices", Attr::UInt(m.input_slices as usize)),
        ("adc_range", Attr::Word(m.adc_range.name())),
        ("adc_step", Attr::UInts(m.adc_step.iter().map(|&e| e as usize).collect())),
    ];
    if let Some(c) = m.clip_rate {
        v.push(("clip_rate", Attr::Double(c)));
    }
    v.push(("replicas", Attr::UInt(m.replicas)));
    v
}

pub(crate) fn block_attrs(b: &TileBlock) -> Vec<(&'static str, Attr)> {
    vec![
        ("replica", Attr::UInt(b.replica)),
        ("group", Attr::UInt(b.group)),
        ("k", Attr::UInts(vec![b.k.0, b.k.1])),
        ("n", Attr::UInts(vec![b.n.0, b.n.1])),
        ("array", Attr::UInt(b.array)),
        ("at", Attr::UInts(vec![b.at.0, b.at.1])),
    ]
}

fn small(a: &mut Attrs, key: &str) -> Result<u32, AttrErr> {
    let at = a.pos;
    let v = a.uint(key)?;
    u32::try_from(v)
        .ok()
        .filter(|&v| v <= 64)
        .ok_or(AttrErr { pos: at, msg: format!("'{key}' = {v} is out of range (at most 64)") })
}

/// A map without blocks from `xbar {...}`; the blocks follow as `tile {...}` records.
pub(crate) fn map_from_attrs(a: &mut Attrs) -> Result<CrossbarMap, AttrErr> {
    let (epos, enc) = a.word("encoding")?;
    let encoding = WeightEncoding::from_name(&enc).ok_or(AttrErr {
        pos: epos,
        msg: format!("unknown encoding '{enc}' ({})", WeightEncoding::expected()),
    })?;
    let (rows, cols) = a.pair("array")?;
    let cell_bits = small(a, "cell_bits")?;
    let dac_bits = small(a, "dac_bits")?;
    let adc_bits = small(a, "adc_bits")?;
    let geometry = CrossbarGeometry { encoding, rows, cols, cell_bits, dac_bits, adc_bits };
    let weight_bits = small(a, "weight_bits")?;
    let magnitude_bits = small(a, "magnitude_bits")?;
    let input_bits = small(a, "input_bits")?;
    let mpos = a.pos;
    let input_min = a.int("input_min")?;
    let input_min = i32::try_from(input_min).map_err(|_| AttrErr {
        pos: mpos,
        msg: format!("'input_min' = {input_min} is out of range (a 32-bit code)"),
    })?;
    let k = a.uint("k")?;
    let n = a.uint("n")?;
    let groups = a.uint("groups")?;
    let weight_slices = small(a, "weight_slices")?;
    let input_slices = small(a, "input_slices")?;
    let (rpos, r) = a.word("adc_range")?;
    let adc_range = AdcRange::from_name(&r).ok_or(AttrErr {
        pos: rpos,
        msg: format!("unknown adc_range '{r}' ({})", AdcRange::expected()),
    })?;
    let adc_step = a.uints("adc_step")?.into_iter().map(|e| e.min(64) as u32).collect();
    let clip_rate = a.opt_f64("clip_rate")?;
    let replicas = a.uint("replicas")?;
    Ok(CrossbarMap {
        geometry,
        weight_bits,
        magnitude_bits,
        input_bits,
        input_min,
        k,
        n,
        groups,
        weight_slices,
        input_slices,
        adc_range,
        adc_step,
        clip_rate,
        replicas,
        blocks: Vec::new(),
    })
}

pub(crate) fn block_from_attrs(a: &mut Attrs) -> Result<TileBlock, AttrErr> {
    Ok(TileBlock {
        replica: a.uint("replica")?,
        group: a.uint("group")?,
        k: a.pair("k")?,
        n: a.pair("n")?,
        array: a.uint("array")?,
        at: a.pair("at")?,
    })
}
