//! The chip a graph is mapped onto, as far as the mapping depends on it: one description used by
//! the `tile` pass (through a target of `cimc_backends`), embedded in every [`CrossbarMap`] of the
//! IR, in every crossbar step of a program and carried by streams.
//!
//! [`ChipGeometry`] is everything of a chip that decides a mapping (the arrays and their
//! converters, how ADC steps are chosen, the arrays on the chip); [`CrossbarGeometry`], its
//! first field, is the part one layer's map depends on. Cost figures and noise are not here: they
//! stay with the target description in `cimc_backends`, and the target's hash
//! ([`ChipGeometry::hash_hex`]) covers only this type.
//!
//! The names of [`WeightEncoding`] and [`AdcRange`] (`differential|offset|flipped`,
//! `lossless|worst|calib`) are declared once, below; the target file, the text IR, the program
//! listing, the assembly and the command line all read them from here.
//!
//! [`CrossbarMap`]: crate::CrossbarMap

/// A fieldless enum with its one table of names: `NAMES` (in declaration order), `name`,
/// `from_name`, `expected` (the names as a sentence, for messages), `Display`, and, with the
/// `serde` feature, serialization as a unit variant (the name in text formats such as TOML and
/// JSON, the declaration index in binary ones such as postcard).
macro_rules! named_enum {
    (
        $(#[$meta:meta])*
        pub enum $ty:ident {
            $( $(#[$vmeta:meta])* $variant:ident = $name:literal, )+
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum $ty {
            $( $(#[$vmeta])* $variant, )+
        }

        impl $ty {
            /// Every variant, in declaration order.
            pub const ALL: &'static [$ty] = &[$($ty::$variant),+];
            /// The name of every variant, in declaration order.
            pub const NAMES: &'static [&'static str] = &[$($name),+];

            pub fn name(self) -> &'static str {
                Self::NAMES[self as usize]
            }

            pub fn from_name(s: &str) -> Option<$ty> {
                Self::NAMES.iter().position(|&n| n == s).map(|i| Self::ALL[i])
            }

            /// The names as a sentence: `a, b or c`.
            pub fn expected() -> String {
                one_of(Self::NAMES)
            }
        }

        impl std::fmt::Display for $ty {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.name())
            }
        }

        #[cfg(feature = "serde")]
        impl named_serde::Named for $ty {
            const ALL: &'static [$ty] = $ty::ALL;
            const NAMES: &'static [&'static str] = $ty::NAMES;
        }

        #[cfg(feature = "serde")]
        impl serde::Serialize for $ty {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_unit_variant(stringify!($ty), *self as u32, self.name())
            }
        }

        #[cfg(feature = "serde")]
        impl<'de> serde::Deserialize<'de> for $ty {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<$ty, D::Error> {
                d.deserialize_enum(stringify!($ty), $ty::NAMES, named_serde::EnumVisitor::new())
            }
        }
    };
}

/// `a, b or c`.
fn one_of(names: &[&str]) -> String {
    match names.split_last() {
        Some((last, [])) => last.to_string(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
        None => String::new(),
    }
}

named_enum! {
    /// How a signed weight is stored in non-negative cells (`docs/crossbar.md`).
    pub enum WeightEncoding {
        /// `w = w⁺ − w⁻`, each magnitude in its own column (two physical columns per weight
        /// slice); subtracted after the ADC.
        Differential = "differential",
        /// `w + 2^(b_w−1)` unsigned in one column; `2^(b_w−1)·Σv` subtracted digitally.
        Offset = "offset",
        /// ISAAC's encoding: as `Offset`, but a row tile's column whose cells would give a large
        /// sum stores their complements `2^b_c − 1 − u` ([`CrossbarGeometry::flips`]); the
        /// digital side recovers `(2^b_c − 1)·Σx − A(P̄)`, so the ADC needs one bit less.
        Flipped = "flipped",
    }
}

named_enum! {
    /// How ADC steps are chosen: for a chip, the mode its layers use; for one layer's map, how
    /// its step was chosen (a layer whose partial sums all fit is lossless on any chip).
    pub enum AdcRange {
        /// Every partial sum fits the ADC: step 1, `A(P) = P`.
        Lossless = "lossless",
        /// The smallest step that never clips.
        Worst = "worst",
        /// The smallest step that holds a percentile of the partial sums seen on calibration
        /// data; above it the ADC clips.
        Calib = "calib",
    }
}

/// One crossbar array and its converters: what the map of one layer depends on. The names follow
/// the symbols of `docs/crossbar.md` (`R`, `C`, `b_c`, `b_d`, `b_adc`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct CrossbarGeometry {
    pub encoding: WeightEncoding,
    /// `R`: rows (word lines) of one array, the longest dot product it computes at once.
    pub rows: usize,
    /// `C`: physical columns (bit lines) of one array.
    pub cols: usize,
    /// `b_c`: bits stored per cell.
    pub cell_bits: u32,
    /// `b_d`: input bits applied per cycle (1 = bit-serial).
    pub dac_bits: u32,
    /// `b_adc`: the ADC's resolution.
    pub adc_bits: u32,
}

/// The largest partial sum a bit line carries with `rows` active rows, `dac_bits`-bit input
/// slices and `cell_bits`-bit cells: `rows · (2^b_d − 1) · (2^b_c − 1)` (saturating).
pub fn partial_sum_max(rows: usize, dac_bits: u32, cell_bits: u32) -> u64 {
    let dac_max = (1u64 << dac_bits.min(63)) - 1;
    let cell_max = (1u64 << cell_bits.min(63)) - 1;
    (rows as u64).saturating_mul(dac_max).saturating_mul(cell_max)
}

/// The top power of two of the partial sums up to `full` (`2^⌊log2 full⌋`, 1 for 0): the flip
/// rule's threshold ([`CrossbarGeometry::flips`]).
fn flip_threshold(full: u64) -> u64 {
    if full == 0 {
        1
    } else {
        1u64 << (63 - full.leading_zeros())
    }
}

/// A field of a [`CrossbarGeometry`], for messages (a target file spells the fields its own
/// way: [`GeometryProblem::message`] takes the spelling).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GeometryField {
    Encoding,
    Rows,
    Cols,
    CellBits,
    DacBits,
    AdcBits,
}

impl GeometryField {
    /// The field's name in the IR text, program listings and messages about programs.
    pub fn name(self) -> &'static str {
        match self {
            GeometryField::Encoding => "encoding",
            GeometryField::Rows => "rows",
            GeometryField::Cols => "cols",
            GeometryField::CellBits => "cell_bits",
            GeometryField::DacBits => "dac_bits",
            GeometryField::AdcBits => "adc_bits",
        }
    }
}

/// Why a [`CrossbarGeometry`] is refused ([`CrossbarGeometry::problems`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GeometryProblem {
    /// A field outside the range of [`CrossbarGeometry`]'s bounds.
    OutOfRange { field: GeometryField, value: u64 },
    /// A differential encoding on arrays of one column: one weight needs two.
    DifferentialNeedsTwoColumns { cols: u64 },
}

impl GeometryProblem {
    /// The field that is wrong.
    pub fn field(&self) -> GeometryField {
        match *self {
            GeometryProblem::OutOfRange { field, .. } => field,
            GeometryProblem::DifferentialNeedsTwoColumns { .. } => GeometryField::Cols,
        }
    }

    /// `key = value: why`, each field spelled `key(field)`.
    pub fn message(&self, key: impl Fn(GeometryField) -> &'static str) -> String {
        match *self {
            GeometryProblem::OutOfRange { field, value } => {
                let (lo, hi) = CrossbarGeometry::bounds(field);
                let why = match field {
                    GeometryField::Rows => format!("an array has {lo} to {hi} rows"),
                    GeometryField::Cols => format!("an array has {lo} to {hi} columns"),
                    GeometryField::CellBits => format!("a cell stores {lo} to {hi} bits"),
                    GeometryField::DacBits => format!("a DAC has {lo} to {hi} bits"),
                    GeometryField::AdcBits => format!("an ADC has {lo} to {hi} bits"),
                    GeometryField::Encoding => format!("one of {}", WeightEncoding::expected()),
                };
                format!("{} = {value}: {why}", key(field))
            }
            GeometryProblem::DifferentialNeedsTwoColumns { cols } => {
                let (c, e) = (key(GeometryField::Cols), key(GeometryField::Encoding));
                format!(
                    "{c} = {cols}: {e} = \"differential\" needs 2 columns per weight ({c} >= 2)"
                )
            }
        }
    }
}

impl std::fmt::Display for GeometryProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message(GeometryField::name))
    }
}

impl CrossbarGeometry {
    /// `R` and `C`: at most 65535, since a stream's `xbar_config` holds them in 16 bits.
    pub const ROWS: (u64, u64) = (1, u16::MAX as u64);
    pub const COLS: (u64, u64) = (1, u16::MAX as u64);
    /// `b_c`: multi-level cells of up to 8 bits.
    pub const CELL_BITS: (u64, u64) = (1, 8);
    /// `b_d` and `b_adc`: the widest converters every executor computes exactly (the
    /// partial sums stay below 2^53 for any rows and cells within the bounds above).
    pub const DAC_BITS: (u64, u64) = (1, 16);
    pub const ADC_BITS: (u64, u64) = (1, 16);

    /// The inclusive bounds of a numeric field; the encoding has none.
    pub fn bounds(field: GeometryField) -> (u64, u64) {
        match field {
            GeometryField::Rows => Self::ROWS,
            GeometryField::Cols => Self::COLS,
            GeometryField::CellBits => Self::CELL_BITS,
            GeometryField::DacBits => Self::DAC_BITS,
            GeometryField::AdcBits => Self::ADC_BITS,
            GeometryField::Encoding => (0, WeightEncoding::ALL.len() as u64 - 1),
        }
    }

    /// Every field outside the bounds every executor supports (the `tile` pass, the program
    /// runner, the stream emitter and simulator), in field order; the one check of the
    /// geometry, made where a target is loaded, where the IR verifier checks a crossbar map,
    /// and where a program or stream read from a file is validated.
    pub fn problems(&self) -> Vec<GeometryProblem> {
        let fields = [
            (GeometryField::Rows, self.rows as u64),
            (GeometryField::Cols, self.cols as u64),
            (GeometryField::CellBits, self.cell_bits as u64),
            (GeometryField::DacBits, self.dac_bits as u64),
            (GeometryField::AdcBits, self.adc_bits as u64),
        ];
        let mut p = Vec::new();
        for (field, value) in fields {
            let (lo, hi) = Self::bounds(field);
            if !(lo..=hi).contains(&value) {
                p.push(GeometryProblem::OutOfRange { field, value });
            } else if field == GeometryField::Cols
                && value < 2
                && self.encoding == WeightEncoding::Differential
            {
                p.push(GeometryProblem::DifferentialNeedsTwoColumns { cols: value });
            }
        }
        p
    }

    /// [`CrossbarGeometry::problems`] as one message (`field = value: why; ...`).
    pub fn validate(&self) -> Result<(), String> {
        let p = self.problems();
        if p.is_empty() {
            return Ok(());
        }
        Err(p.iter().map(|q| q.to_string()).collect::<Vec<_>>().join("; "))
    }

    /// The largest partial sum of a row tile of `rows` rows: [`partial_sum_max`], or with the
    /// flipped encoding the largest sum a column the flip rule chose can give,
    /// `2^(⌊log2 partial_sum_max⌋) − 1` (one bit less: [`CrossbarGeometry::flips`]).
    pub fn p_max(&self, rows: usize) -> u64 {
        let full = partial_sum_max(rows, self.dac_bits, self.cell_bits);
        match self.encoding {
            WeightEncoding::Differential | WeightEncoding::Offset => full,
            WeightEncoding::Flipped => flip_threshold(full).saturating_sub(1),
        }
    }

    /// ISAAC's flip rule (Shafiee et al., ISCA 2016, §V "Managing bits, ADCs and signed
    /// arithmetic", encoding to reduce the ADC's size; HPE patent US 10,664,271 "Dot product
    /// engine with negation indicator"): a column of a row tile of `rows` rows whose cells sum
    /// to `cell_sum` is stored flipped (cells `2^b_c − 1 − u`) when, with every input at its
    /// largest (`2^b_d − 1`), its partial sum would have the top bit of the unflipped range set:
    /// `cell_sum · (2^b_d − 1) ≥ 2^⌊log2 P_full⌋`, `P_full = rows·(2^b_d − 1)·(2^b_c − 1)`.
    /// Either way the column's partial sums stay below that power of two
    /// ([`CrossbarGeometry::p_max`]). The one rule every executor applies
    /// (`docs/hardware-model.md` §1); false for the other encodings.
    pub fn flips(&self, rows: usize, cell_sum: u64) -> bool {
        if self.encoding != WeightEncoding::Flipped {
            return false;
        }
        let full = partial_sum_max(rows, self.dac_bits, self.cell_bits);
        let dac_max = (1u64 << self.dac_bits.min(63)) - 1;
        cell_sum.saturating_mul(dac_max) >= flip_threshold(full)
    }

    /// `2^b_c − 1`, the largest level of a cell (what a flipped cell is complemented against).
    pub fn cell_max(&self) -> u64 {
        (1u64 << self.cell_bits.min(63)) - 1
    }

    /// The largest ADC code, `2^b_adc − 1`.
    pub fn adc_top(&self) -> u64 {
        (1u64 << self.adc_bits.min(63)) - 1
    }

    /// Physical columns per logical output of `weight_slices` slices: one per slice, twice that
    /// when differential.
    pub fn columns_per_output(&self, weight_slices: u32) -> usize {
        let per = weight_slices as usize;
        match self.encoding {
            WeightEncoding::Differential => 2 * per,
            WeightEncoding::Offset | WeightEncoding::Flipped => per,
        }
    }
}

/// Everything of a chip that decides how a graph is mapped onto it. A target description holds
/// one (`cimc_backends::target::Target`, whose file spells these as `[array]`, `[dac]`, `[adc]`
/// and `[weights]` keys); its hash is this type's [`ChipGeometry::hash_hex`].
#[derive(Clone, Debug, PartialEq)]
pub struct ChipGeometry {
    /// The arrays and their converters.
    pub crossbar: CrossbarGeometry,
    /// How the layers' ADC steps are chosen; `Lossless` demands lossless conversions.
    pub adc_range: AdcRange,
    /// The percentile of partial sums (in (0, 100]) a calibrated ADC range holds.
    pub percentile: f64,
    /// One ADC step per column group instead of one per layer.
    pub per_column_group: bool,
    /// Arrays on the chip; 0 = as many as needed.
    pub arrays: usize,
}

impl ChipGeometry {
    /// The canonical text the hash is computed over: every field as `key=value`, one per line,
    /// in this order (numbers in Rust's shortest round-trip form, names from the name tables).
    pub fn canonical_text(&self) -> String {
        let x = &self.crossbar;
        format!(
            "encoding={}\nrows={}\ncols={}\ncell_bits={}\ndac_bits={}\nadc_bits={}\n\
             adc_range={}\npercentile={}\nper_column_group={}\narrays={}\n",
            x.encoding,
            x.rows,
            x.cols,
            x.cell_bits,
            x.dac_bits,
            x.adc_bits,
            self.adc_range,
            self.percentile,
            self.per_column_group,
            self.arrays
        )
    }

    /// 16 hex digits: FNV-1a 64 over [`ChipGeometry::canonical_text`]. Two chips with the same
    /// hash map every graph the same way; cost figures, noise and names do not enter it. Stable
    /// across runs and platforms.
    pub fn hash_hex(&self) -> String {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in self.canonical_text().bytes() {
            h ^= b as u64;
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        format!("{h:016x}")
    }

    /// One line, e.g. `128x128 arrays, 2-bit cells, 1-bit DAC, 8-bit ADC (calib), differential`.
    pub fn summary(&self) -> String {
        let x = &self.crossbar;
        format!(
            "{}x{} arrays, {}-bit cells, {}-bit DAC, {}-bit ADC ({}), {}",
            x.rows, x.cols, x.cell_bits, x.dac_bits, x.adc_bits, self.adc_range, x.encoding
        )
    }

    /// The stamp a graph mapped onto this chip carries, under the target's `name`.
    pub fn stamp(&self, name: &str) -> crate::TargetStamp {
        crate::TargetStamp {
            name: name.to_string(),
            hash: self.hash_hex(),
            summary: self.summary(),
        }
    }
}

/// Serialization of the [`named_enum!`] enums through their name tables.
#[cfg(feature = "serde")]
mod named_serde {
    use serde::de::{self, DeserializeSeed, EnumAccess, VariantAccess, Visitor};
    use std::marker::PhantomData;

    pub trait Named: Copy + 'static {
        const ALL: &'static [Self];
        const NAMES: &'static [&'static str];
    }

    fn by_name<T: Named, E: de::Error>(v: &str) -> Result<T, E> {
        match T::NAMES.iter().position(|&n| n == v) {
            Some(i) => Ok(T::ALL[i]),
            None => Err(E::unknown_variant(v, T::NAMES)),
        }
    }

    /// The variant: its name (text formats) or its index (binary formats).
    struct Variant<T>(PhantomData<T>);

    impl<'de, T: Named> Visitor<'de> for Variant<T> {
        type Value = T;

        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            write!(f, "one of {}", super::one_of(T::NAMES))
        }

        fn visit_u64<E: de::Error>(self, i: u64) -> Result<T, E> {
            let found = usize::try_from(i).ok().and_then(|i| T::ALL.get(i));
            found
                .copied()
                .ok_or_else(|| E::invalid_value(de::Unexpected::Unsigned(i), &"a variant index"))
        }

        fn visit_str<E: de::Error>(self, v: &str) -> Result<T, E> {
            by_name(v)
        }

        fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<T, E> {
            match std::str::from_utf8(v) {
                Ok(s) => by_name(s),
                Err(_) => Err(E::invalid_value(de::Unexpected::Bytes(v), &self)),
            }
        }
    }

    impl<'de, T: Named> DeserializeSeed<'de> for Variant<T> {
        type Value = T;

        fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<T, D::Error> {
            d.deserialize_identifier(self)
        }
    }

    /// The enum: a unit variant of an enum (or, from some text formats, a bare name).
    pub struct EnumVisitor<T>(PhantomData<T>);

    impl<T> EnumVisitor<T> {
        pub fn new() -> Self {
            EnumVisitor(PhantomData)
        }
    }

    impl<'de, T: Named> Visitor<'de> for EnumVisitor<T> {
        type Value = T;

        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            write!(f, "one of {}", super::one_of(T::NAMES))
        }

        fn visit_str<E: de::Error>(self, v: &str) -> Result<T, E> {
            by_name(v)
        }

        fn visit_enum<A: EnumAccess<'de>>(self, data: A) -> Result<T, A::Error> {
            let (v, access) = data.variant_seed(Variant::<T>(PhantomData))?;
            access.unit_variant()?;
            Ok(v)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn name_tables_round_trip() {
        for &e in WeightEncoding::ALL {
            assert_eq!(WeightEncoding::from_name(e.name()), Some(e));
        }
        for &r in AdcRange::ALL {
            assert_eq!(AdcRange::from_name(r.name()), Some(r));
        }
        assert_eq!(AdcRange::from_name("exact"), None);
        assert_eq!(AdcRange::expected(), "lossless, worst or calib");
        assert_eq!(WeightEncoding::expected(), "differential, offset or flipped");
    }

    fn isaac() -> ChipGeometry {
        ChipGeometry {
            crossbar: CrossbarGeometry {
                encoding: WeightEncoding::Differential,
                rows: 128,
                cols: 128,
                cell_bits: 2,
                dac_bits: 1,
                adc_bits: 8,
            },
            adc_range: AdcRange::Calib,
            percentile: 99.99,
            per_column_group: false,
            arrays: 16128,
        }
    }

    #[test]
    fn geometry_bounds_are_one_set_spelled_by_the_caller() {
        let ok = isaac().crossbar;
        assert_eq!(ok.validate(), Ok(()));
        let widest = CrossbarGeometry {
            rows: 65535,
            cols: 65535,
            cell_bits: 8,
            dac_bits: 16,
            adc_bits: 16,
            ..ok
        };
        assert_eq!(widest.validate(), Ok(()));
        let x = CrossbarGeometry { rows: 65536, cell_bits: 0, dac_bits: 17, ..ok };
        assert_eq!(
            x.validate().unwrap_err(),
            "rows = 65536: an array has 1 to 65535 rows; cell_bits = 0: a cell stores 1 to 8 \
             bits; dac_bits = 17: a DAC has 1 to 16 bits"
        );
        let one_column = CrossbarGeometry { cols: 1, ..ok };
        let problems = one_column.problems();
        assert_eq!(problems, [GeometryProblem::DifferentialNeedsTwoColumns { cols: 1 }]);
        let file_key = |f: GeometryField| match f {
            GeometryField::Cols => "array.cols",
            GeometryField::Encoding => "weights.encoding",
            _ => "other",
        };
        assert_eq!(
            problems[0].message(file_key),
            "array.cols = 1: weights.encoding = \"differential\" needs 2 columns per weight \
             (array.cols >= 2)"
        );
        let offset = CrossbarGeometry { encoding: WeightEncoding::Offset, ..one_column };
        assert_eq!(offset.validate(), Ok(()));
        let adc = CrossbarGeometry { adc_bits: 0, ..ok }.problems();
        assert_eq!(adc[0].field(), GeometryField::AdcBits);
        assert_eq!(adc[0].to_string(), "adc_bits = 0: an ADC has 1 to 16 bits");
    }

    proptest::proptest! {
        /// ISAAC's flip rule against a naive reference: a column is complemented exactly when
        /// its sum with every input at its largest reaches the top power of two of the full
        /// range; every partial sum of the stored cells (for any inputs) then stays within
        /// `p_max`, one bit below the full range's; the other encodings never flip.
        #[test]
        fn flip_rule_bounds_every_partial_sum(
            rows in 1usize..300,
            cell_bits in 1u32..5,
            dac_bits in 1u32..4,
            seed in proptest::prelude::any::<u64>(),
        ) {
            let x = CrossbarGeometry {
                encoding: WeightEncoding::Flipped,
                rows,
                cols: 8,
                cell_bits,
                dac_bits,
                adc_bits: 8,
            };
            let (cmax, dmax) = ((1u64 << cell_bits) - 1, (1u64 << dac_bits) - 1);
            let full = rows as u64 * cmax * dmax;
            let mut top = 1u64;
            while top * 2 <= full {
                top *= 2;
            }
            proptest::prop_assert_eq!(x.p_max(rows), top - 1);
            proptest::prop_assert!(x.p_max(rows) < full.max(1));
            // Cells skewed towards one end or the other, so both choices occur.
            let mut r = seed | 1;
            let bias = seed % 3;
            let cells: Vec<u64> = (0..rows)
                .map(|_| {
                    r ^= r << 13;
                    r ^= r >> 7;
                    r ^= r << 17;
                    match bias {
                        0 => r % (cmax + 1),
                        1 => cmax - (r % (cmax + 1)) / 2,
                        _ => (r % (cmax + 1)) / 2,
                    }
                })
                .collect();
            let sum: u64 = cells.iter().sum();
            let flip = x.flips(rows, sum);
            proptest::prop_assert_eq!(flip, sum * dmax >= top);
            let stored: u64 = cells.iter().map(|&c| if flip { cmax - c } else { c }).sum();
            // The largest partial sum of the stored cells: every input at `dmax`.
            proptest::prop_assert!(stored * dmax <= x.p_max(rows), "{} > {}", stored * dmax, x.p_max(rows));
            for encoding in [WeightEncoding::Differential, WeightEncoding::Offset] {
                let other = CrossbarGeometry { encoding, ..x };
                proptest::prop_assert!(!other.flips(rows, sum));
                proptest::prop_assert_eq!(other.p_max(rows), full);
            }
        }
    }

    #[test]
    fn isaac_geometry_is_lossless_when_flipped() {
        let x = CrossbarGeometry { encoding: WeightEncoding::Flipped, ..isaac().crossbar };
        // 128 rows x 1 x 3 = 384 needs 9 bits; flipped, the sums stay below 256.
        assert_eq!(x.p_max(128), 255);
        assert!(x.p_max(128) <= x.adc_top());
        assert!(!x.flips(128, 255) && x.flips(128, 256));
    }

    #[test]
    fn hash_covers_every_field() {
        let a = isaac();
        let mut changed = Vec::new();
        let edits: [fn(&mut ChipGeometry); 10] = [
            |c| c.crossbar.encoding = WeightEncoding::Offset,
            |c| c.crossbar.rows = 64,
            |c| c.crossbar.cols = 64,
            |c| c.crossbar.cell_bits = 1,
            |c| c.crossbar.dac_bits = 2,
            |c| c.crossbar.adc_bits = 6,
            |c| c.adc_range = AdcRange::Worst,
            |c| c.percentile = 99.9,
            |c| c.per_column_group = true,
            |c| c.arrays = 0,
        ];
        for edit in edits {
            let mut b = a.clone();
            edit(&mut b);
            assert_ne!(a.hash_hex(), b.hash_hex(), "{}", b.canonical_text());
            changed.push(b.hash_hex());
        }
        changed.sort();
        changed.dedup();
        assert_eq!(changed.len(), edits.len());
        assert_eq!(
            a.summary(),
            "128x128 arrays, 2-bit cells, 1-bit DAC, 8-bit ADC (calib), differential"
        );
    }
}
