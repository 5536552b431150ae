//! Behavioral models of approximate 8×8-bit multipliers for the digital MACs of the integer
//! program: a product table of 256×256 entries ([`ProductTable`], loadable from a file in the
//! `cimc-mul8` format of `docs/approximate.md`, so a published library's circuits can be
//! used), or a built-in family ([`Multiplier`]): truncated, DRUM, Mitchell.
//!
//! Why tables: every 8×8 multiplier, however it is built, is a function of 2^16 inputs; the
//! table is the one model that every circuit (EvoApprox8b's `mul8s_*`/`mul8u_*` C models
//! included) converts to exactly, and the program's kernel (`approx.rs`) only ever reads it.
//! The families are unsigned (magnitude) multipliers; `approx.rs` says how the program's
//! operands reach a table.

/// Products of two 8-bit operands: `entries[a_byte·256 + b_byte]`, where `a` is the first
/// operand (the program feeds it the activation) and `b` the second (the weight); for a signed
/// table a byte is the operand's two's complement (`a ∈ [−128, 127]`), for an unsigned one the
/// operand itself (`[0, 255]`).
#[derive(Clone, Debug, PartialEq)]
pub struct ProductTable {
    pub signed: bool,
    entries: Vec<i32>,
}

/// The first line of a table file, before `signed` or `unsigned`.
pub const TABLE_MAGIC: &str = "cimc-mul8";

impl ProductTable {
    /// The table of `f(a, b)` over all operand pairs (`a`, `b` as `i32`, signed or not).
    pub fn from_fn(signed: bool, f: impl Fn(i32, i32) -> i32) -> ProductTable {
        let op = |byte: usize| if signed { byte as u8 as i8 as i32 } else { byte as i32 };
        let entries = (0..65536).map(|i| f(op(i >> 8), op(i & 255))).collect();
        ProductTable { signed, entries }
    }

    /// The exact multiplier.
    pub fn exact(signed: bool) -> ProductTable {
        Self::from_fn(signed, |a, b| a * b)
    }

    /// The product of operands `a`, `b` (in the table's range, else `None`).
    pub fn get(&self, a: i32, b: i32) -> Option<i32> {
        let range = if self.signed { -128..=127 } else { 0..=255 };
        if !range.contains(&a) || !range.contains(&b) {
            return None;
        }
        Some(self.entries[(a as u8 as usize) << 8 | (b as u8 as usize)])
    }

    /// The largest magnitude of a product in the table.
    pub fn max_abs(&self) -> i64 {
        self.entries.iter().map(|&v| (v as i64).abs()).max().unwrap_or(0)
    }

    /// The file form: the line `cimc-mul8 signed` or `cimc-mul8 unsigned`, then 65,536
    /// little-endian i32 entries in the order of [`ProductTable`].
    pub fn to_bytes(&self) -> Vec<u8> {
        let kind = if self.signed { "signed" } else { "unsigned" };
        let mut out = format!("{TABLE_MAGIC} {kind}\n").into_bytes();
        out.reserve(4 * 65536);
        for v in &self.entries {
            out.extend_from_slice(&v.to_le_bytes());
        }
        out
    }

    /// Reads the file form ([`ProductTable::to_bytes`]); the error says what is wrong.
    pub fn from_bytes(bytes: &[u8]) -> Result<ProductTable, String> {
        let nl =
            bytes.iter().take(64).position(|&b| b == b'\n').ok_or_else(|| {
                format!("no header line (expected '{TABLE_MAGIC} signed|unsigned')")
            })?;
        let header = std::str::from_utf8(&bytes[..nl]).map_err(|_| "header is not text")?;
        let signed = match header.trim_end_matches('\r').split_whitespace().collect::<Vec<_>>()[..]
        {
            [m, "signed"] if m == TABLE_MAGIC => true,
            [m, "unsigned"] if m == TABLE_MAGIC => false,
            _ => {
                return Err(format!(
                    "header '{header}': expected '{TABLE_MAGIC} signed' or '{TABLE_MAGIC} unsigned'"
                ))
            }
        };
        let body = &bytes[nl + 1..];
        if body.len() != 4 * 65536 {
            return Err(format!(
                "{} bytes after the header, expected 262144 (65536 little-endian i32)",
                body.len()
            ));
        }
        let entries =
            body.chunks_exact(4).map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
        Ok(ProductTable { signed, entries })
    }
}

/// An 8×8 multiplier for the program's digital MAC steps.
#[derive(Clone, Debug, PartialEq)]
pub enum Multiplier {
    Exact,
    /// [`truncated`] with `k` dropped columns.
    Truncated(u32),
    /// [`drum`] with `k`-bit segments.
    Drum(u32),
    /// [`mitchell`].
    Mitchell,
    /// A product table (its name for reports, e.g. the file's stem).
    Table(String, ProductTable),
}

impl Multiplier {
    /// Parses `exact`, `trunc:K` (0 ≤ K ≤ 15), `drum:K` (1 ≤ K ≤ 8), `mitchell` or
    /// `table:FILE` (read here).
    pub fn parse(spec: &str) -> Result<Multiplier, String> {
        let bad = || {
            format!(
                "multiplier '{spec}': expected exact, trunc:K (0..=15), drum:K (1..=8), \
                 mitchell or table:FILE"
            )
        };
        let (kind, arg) = match spec.split_once(':') {
            Some((k, a)) => (k, Some(a)),
            None => (spec, None),
        };
        let k = |lo: u32, hi: u32| -> Result<u32, String> {
            let v: u32 = arg.ok_or_else(bad)?.parse().map_err(|_| bad())?;
            if (lo..=hi).contains(&v) {
                Ok(v)
            } else {
                Err(bad())
            }
        };
        Ok(match kind {
            "exact" if arg.is_none() => Multiplier::Exact,
            "mitchell" if arg.is_none() => Multiplier::Mitchell,
            "trunc" => Multiplier::Truncated(k(0, 15)?),
            "drum" => Multiplier::Drum(k(1, 8)?),
            "table" => {
                let path = std::path::Path::new(arg.ok_or_else(bad)?);
                let bytes = cimc_ir::files::read_regular(path, u64::MAX)
                    .map_err(|e| format!("{}: {e}", path.display()))?;
                let t = ProductTable::from_bytes(&bytes)
                    .map_err(|e| format!("{}: {e}", path.display()))?;
                let name = path.file_stem().map(|s| s.to_string_lossy().into_owned());
                Multiplier::Table(name.unwrap_or_default(), t)
            }
            _ => return Err(bad()),
        })
    }

    /// The name [`Multiplier::parse`] reads (a table's is `table:NAME`).
    pub fn name(&self) -> String {
        match self {
            Multiplier::Exact => "exact".into(),
            Multiplier::Truncated(k) => format!("trunc:{k}"),
            Multiplier::Drum(k) => format!("drum:{k}"),
            Multiplier::Mitchell => "mitchell".into(),
            Multiplier::Table(n, _) => format!("table:{n}"),
        }
    }

    /// The product table (the families as unsigned 8×8 tables).
    pub fn table(&self) -> ProductTable {
        let u = |f: &dyn Fn(u32, u32) -> u32| {
            ProductTable::from_fn(false, |a, b| f(a as u32, b as u32) as i32)
        };
        match self {
            Multiplier::Exact => ProductTable::exact(false),
            Multiplier::Truncated(k) => u(&|a, b| truncated(a, b, *k)),
            Multiplier::Drum(k) => u(&|a, b| drum(a, b, *k)),
            Multiplier::Mitchell => u(&mitchell),
            Multiplier::Table(_, t) => t.clone(),
        }
    }
}

/// A truncated multiplier: the partial-product array of `a·b` without its `k` least
/// significant columns, `Σ_{i+j ≥ k} a_i·b_j·2^(i+j)` (bits `a_i`, `b_j`), no correction
/// constant — the fixed-width truncated multiplier of Schulte and Swartzlander, "Truncated
/// multiplication with correction constant" (VLSI Signal Processing VI, 1993), with its
/// correction left out. The carries the dropped columns would have produced are lost too, so
/// it is at most `a·b` and below `floor(a·b / 2^k)·2^k` in general.
pub fn truncated(a: u32, b: u32, k: u32) -> u32 {
    let mut p = 0;
    for j in 0..8 {
        if (b >> j) & 1 == 1 {
            // Row j: a << j, without the columns below k.
            let row = a << j;
            p += row & !((1u32 << k) - 1);
        }
    }
    p
}

/// DRUM(k), the dynamic-range unbiased multiplier of Hashemi, Bahar and Reda, "DRUM: A
/// Dynamic Range Unbiased Multiplier for Approximate Applications" (ICCAD 2015): each operand
/// keeps the `k` bits from its leading one down, the lowest kept bit is set to 1 (which makes
/// the truncation error unbiased), the rest is dropped; the two segments are multiplied exactly
/// and shifted back. Operands below `2^k` are used as they are.
pub fn drum(a: u32, b: u32, k: u32) -> u32 {
    drum_operand(a, k) * drum_operand(b, k)
}

/// One operand of [`drum`]: `((x >> s) | 1) << s` with `s = t − k + 1`, `t` the position of
/// `x`'s leading one, for `x ≥ 2^k`.
pub fn drum_operand(x: u32, k: u32) -> u32 {
    if x < (1 << k) {
        return x;
    }
    let t = 31 - x.leading_zeros();
    let s = t + 1 - k;
    ((x >> s) | 1) << s
}

/// Mitchell's logarithmic multiplier, J. N. Mitchell, "Computer multiplication and division
/// using binary logarithms" (IRE Trans. Electronic Computers, 1962): with `a = 2^k1·(1 + x1)`,
/// `b = 2^k2·(1 + x2)`, `log2(a·b) ≈ k1 + k2 + x1 + x2`, and the antilogarithm taken the same
/// piecewise-linear way: `2^(k1+k2)·(1 + x1 + x2)` when `x1 + x2 < 1`, else
/// `2^(k1+k2+1)·(x1 + x2)`. In integers (`m = a − 2^k1`, exact for 8-bit operands):
/// `S = m1·2^k2 + m2·2^k1`; the product is `2^(k1+k2) + S` if `S < 2^(k1+k2)`, else `2·S`.
/// 0 when an operand is 0.
pub fn mitchell(a: u32, b: u32) -> u32 {
    if a == 0 || b == 0 {
        return 0;
    }
    let (k1, k2) = (31 - a.leading_zeros(), 31 - b.leading_zeros());
    let (m1, m2) = (a - (1 << k1), b - (1 << k2));
    let s = (m1 << k2) + (m2 << k1);
    if s < 1 << (k1 + k2) {
        (1 << (k1 + k2)) + s
    } else {
        2 * s
    }
}

/// Which kernel runs a product table (`approx.rs`). Both compute the same integers: the sums
/// are exact, so the choice changes the time, never a bit of the output.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LutKernel {
    /// Portable Rust: one table read per product, 256-entry i32 rows.
    Scalar,
    /// x86-64 AVX-512 VBMI: 64 table lookups per `vpermi2b` pair on byte planes of the rows.
    Avx512Vbmi,
}

impl LutKernel {
    /// The fastest kernel this CPU runs (checked at run time); the scalar one when the
    /// environment variable `CIMC_PORTABLE_KERNELS` is set (as for the crossbar kernel).
    pub fn best() -> LutKernel {
        if Self::Avx512Vbmi.available() && !cimc_interp::portable_kernels_forced() {
            LutKernel::Avx512Vbmi
        } else {
            LutKernel::Scalar
        }
    }

    /// Whether this CPU can run the kernel.
    pub fn available(self) -> bool {
        match self {
            LutKernel::Scalar => true,
            #[cfg(target_arch = "x86_64")]
            LutKernel::Avx512Vbmi => {
                is_x86_feature_detected!("avx512f")
                    && is_x86_feature_detected!("avx512bw")
                    && is_x86_feature_detected!("avx512vbmi")
            }
            #[cfg(not(target_arch = "x86_64"))]
            LutKernel::Avx512Vbmi => false,
        }
    }

    /// `scalar` or `avx512-vbmi`.
    pub fn name(self) -> &'static str {
        match self {
            LutKernel::Scalar => "scalar",
            LutKernel::Avx512Vbmi => "avx512-vbmi",
        }
    }
}
