//! Attribute groups and word-valued attributes of the resampling and recurrent ops (Resize,
//! LSTM, GRU, RNN), with their text form: each enum prints as a bare word and each group as its
//! own keys, through [`crate::optable::AttrField`].

use crate::optable::{Attr, AttrErr, AttrField, Attrs};

/// An enum whose members print as bare words in the text IR, with its name table and its
/// [`AttrField`] implementations (the word, and a list of words).
macro_rules! word_enum {
    (
        $(#[doc = $doc:literal])*
        pub enum $E:ident { $( $(#[doc = $vdoc:literal])* $V:ident = $w:literal, )* }
    ) => {
        $(#[doc = $doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub enum $E { $( $(#[doc = $vdoc])* $V, )* }

        impl $E {
            /// Every member, in declaration order.
            pub const ALL: &'static [$E] = &[$($E::$V),*];

            /// The member's word in the text IR.
            pub fn name(self) -> &'static str {
                match self { $( $E::$V => $w, )* }
            }

            /// The member whose word is `s`.
            pub fn from_name(s: &str) -> Option<$E> {
                Self::ALL.iter().copied().find(|m| m.name() == s)
            }

            fn parse_word(pos: usize, w: &str) -> Result<$E, AttrErr> {
                $E::from_name(w).ok_or_else(|| AttrErr {
                    pos,
                    msg: format!(
                        "unknown {} '{w}' (expected one of: {})",
                        stringify!($E),
                        Self::ALL.iter().map(|m| m.name()).collect::<Vec<_>>().join(", ")
                    ),
                })
            }
        }

        impl AttrField for $E {
            fn print(&self, key: &'static str, out: &mut Vec<(&'static str, Attr)>) {
                out.push((key, Attr::Word(self.name())));
            }
            fn parse(key: &'static str, a: &mut Attrs) -> Result<Self, AttrErr> {
                let (pos, w) = a.word(key)?;
                $E::parse_word(pos, &w)
            }
        }

        impl AttrField for Vec<$E> {
            fn print(&self, key: &'static str, out: &mut Vec<(&'static str, Attr)>) {
                out.push((key, Attr::Words(self.iter().map(|m| m.name()).collect())));
            }
            fn parse(key: &'static str, a: &mut Attrs) -> Result<Self, AttrErr> {
                a.words(key)?.into_iter().map(|(pos, w)| $E::parse_word(pos, &w)).collect()
            }
        }
    };
}

word_enum! {
    /// How Resize interpolates.
    pub enum ResizeMode {
        Nearest = "nearest",
        /// Linear along every resized axis (bilinear, trilinear...).
        Linear = "linear",
        /// Cubic convolution along every resized axis, with coefficient `cubic_a`.
        Cubic = "cubic",
    }
}

word_enum! {
    /// How Resize maps an output coordinate to an input coordinate (ONNX's
    /// `coordinate_transformation_mode`).
    pub enum CoordMode {
        HalfPixel = "half_pixel",
        HalfPixelSymmetric = "half_pixel_symmetric",
        PytorchHalfPixel = "pytorch_half_pixel",
        AlignCorners = "align_corners",
        Asymmetric = "asymmetric",
        TfCropAndResize = "tf_crop_and_resize",
    }
}

word_enum! {
    /// How nearest-mode Resize rounds an input coordinate to an index.
    pub enum NearestMode {
        RoundPreferFloor = "round_prefer_floor",
        RoundPreferCeil = "round_prefer_ceil",
        Floor = "floor",
        Ceil = "ceil",
    }
}

word_enum! {
    /// The direction of a recurrent op.
    pub enum Direction {
        Forward = "forward",
        Reverse = "reverse",
        /// Forward then reverse: two directions along the `num_directions` axis.
        Bidirectional = "bidirectional",
    }
}

word_enum! {
    /// An activation of a recurrent op's gates (ONNX's names, with `alpha` and `beta` in the
    /// op's parallel lists).
    pub enum RnnAct {
        Relu = "relu",
        Tanh = "tanh",
        Sigmoid = "sigmoid",
        /// `alpha · x + beta`.
        Affine = "affine",
        /// `x` when `x >= 0`, else `alpha · x`.
        LeakyRelu = "leaky_relu",
        /// `x` when `x > alpha`, else 0.
        ThresholdedRelu = "thresholded_relu",
        /// `alpha · tanh(beta · x)`.
        ScaledTanh = "scaled_tanh",
        /// `clamp(alpha · x + beta, 0, 1)`.
        HardSigmoid = "hard_sigmoid",
        /// `x` when `x >= 0`, else `alpha · (e^x − 1)`.
        Elu = "elu",
        /// `x / (1 + |x|)`.
        Softsign = "softsign",
        /// `ln(1 + e^x)`.
        Softplus = "softplus",
    }
}

/// Resize's attributes, resolved: every axis has a scale and an output size.
#[derive(Clone, Debug, PartialEq)]
pub struct ResizeAttrs {
    pub mode: ResizeMode,
    pub coord: CoordMode,
    /// Nearest mode only.
    pub nearest: NearestMode,
    /// Cubic mode only: the coefficient `a` of the cubic convolution kernel.
    pub cubic_a: f32,
    /// Cubic mode: weights of taps outside the input are 0 and the rest renormalized.
    pub exclude_outside: bool,
    /// Linear and cubic: when downsampling, the kernel is stretched by `1/scale` (a low-pass
    /// filter, as ONNX's `antialias`).
    pub antialias: bool,
    /// tf_crop_and_resize: the value of an output whose input coordinate is outside the input.
    pub extrapolation: f32,
    /// Per axis, the scale of the coordinate transform; empty when the model gave sizes (the
    /// scale of an axis is then its output size over its input size, in f64).
    pub scales: Vec<f32>,
    /// The output shape.
    pub sizes: Vec<usize>,
    /// tf_crop_and_resize only: the region of interest, `[start.., end..]` over every axis
    /// in normalized coordinates; empty otherwise.
    pub roi: Vec<f32>,
}

impl ResizeAttrs {
    /// What Resize does with integer codes. Nearest copies an input element to each output
    /// (moves codes) unless an output can take the extrapolation value (tf_crop_and_resize) or
    /// a tap's weight can vanish (exclude_outside); linear without antialias weighs two taps
    /// per resized axis (an integer form: the `resize` program step); the rest is float only.
    pub fn on_codes(&self) -> crate::OnCodes {
        let crops = self.coord == CoordMode::TfCropAndResize;
        match self.mode {
            ResizeMode::Nearest if !crops && !self.exclude_outside => crate::OnCodes::Moves,
            ResizeMode::Linear if !crops && !self.antialias => crate::OnCodes::Integer,
            ResizeMode::Nearest | ResizeMode::Linear | ResizeMode::Cubic => crate::OnCodes::Float,
        }
    }
}

impl AttrField for ResizeAttrs {
    fn print(&self, _key: &'static str, out: &mut Vec<(&'static str, Attr)>) {
        self.mode.print("mode", out);
        self.coord.print("coord", out);
        self.nearest.print("nearest", out);
        self.cubic_a.print("cubic_a", out);
        self.exclude_outside.print("exclude_outside", out);
        self.antialias.print("antialias", out);
        self.extrapolation.print("extrapolation", out);
        self.scales.print("scales", out);
        self.sizes.print("sizes", out);
        self.roi.print("roi", out);
    }
    fn parse(_key: &'static str, a: &mut Attrs) -> Result<Self, AttrErr> {
        Ok(ResizeAttrs {
            mode: AttrField::parse("mode", a)?,
            coord: AttrField::parse("coord", a)?,
            nearest: AttrField::parse("nearest", a)?,
            cubic_a: AttrField::parse("cubic_a", a)?,
            exclude_outside: AttrField::parse("exclude_outside", a)?,
            antialias: AttrField::parse("antialias", a)?,
            extrapolation: AttrField::parse("extrapolation", a)?,
            scales: AttrField::parse("scales", a)?,
            sizes: AttrField::parse("sizes", a)?,
            roi: AttrField::parse("roi", a)?,
        })
    }
}

/// Which recurrent op (LSTM, GRU or RNN): the facts of its cell that the interpreter and the
/// unrolling pass share.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecurrentCell {
    Lstm,
    Gru,
    Rnn,
}

impl RecurrentCell {
    /// Gates per hidden unit: the rows of W and R per hidden unit (LSTM i, o, f, c; GRU z, r,
    /// h; RNN h).
    pub fn gates(self) -> usize {
        match self {
            RecurrentCell::Lstm => 4,
            RecurrentCell::Gru => 3,
            RecurrentCell::Rnn => 1,
        }
    }

    /// Activations per direction in the `activations` attribute (LSTM f, g, h; GRU f, g; RNN f).
    pub fn activation_count(self) -> usize {
        match self {
            RecurrentCell::Lstm => 3,
            RecurrentCell::Gru => 2,
            RecurrentCell::Rnn => 1,
        }
    }
}

/// The attributes of LSTM, GRU and RNN, resolved (defaults filled in).
#[derive(Clone, Debug, PartialEq)]
pub struct RecurrentAttrs {
    pub hidden: usize,
    pub direction: Direction,
    /// The gate activations of each direction in turn (RNN: f; GRU: f, g; LSTM: f, g, h).
    pub activations: Vec<RnnAct>,
    /// `alpha` and `beta` of each activation (0 where it takes none).
    pub alphas: Vec<f32>,
    pub betas: Vec<f32>,
    /// Gate inputs are clipped to `[-clip, clip]` before their activation.
    pub clip: Option<f32>,
    /// ONNX's `layout` 1: X and Y are batch-first, the states `[batch, dirs, hidden]`.
    pub batch_first: bool,
    /// GRU only: the reset gate multiplies `R_h·h + Rb_h` (else it multiplies `h`).
    pub linear_before_reset: bool,
    /// LSTM only: the input and forget gates are coupled (`f = 1 − i`).
    pub input_forget: bool,
}

impl AttrField for RecurrentAttrs {
    fn print(&self, _key: &'static str, out: &mut Vec<(&'static str, Attr)>) {
        self.hidden.print("hidden", out);
        self.direction.print("direction", out);
        self.activations.print("activations", out);
        self.alphas.print("alphas", out);
        self.betas.print("betas", out);
        self.clip.print("clip", out);
        self.batch_first.print("batch_first", out);
        self.linear_before_reset.print("linear_before_reset", out);
        self.input_forget.print("input_forget", out);
    }
    fn parse(_key: &'static str, a: &mut Attrs) -> Result<Self, AttrErr> {
        Ok(RecurrentAttrs {
            hidden: AttrField::parse("hidden", a)?,
            direction: AttrField::parse("direction", a)?,
            activations: AttrField::parse("activations", a)?,
            alphas: AttrField::parse("alphas", a)?,
            betas: AttrField::parse("betas", a)?,
            clip: AttrField::parse("clip", a)?,
            batch_first: AttrField::parse("batch_first", a)?,
            linear_before_reset: AttrField::parse("linear_before_reset", a)?,
            input_forget: AttrField::parse("input_forget", a)?,
        })
    }
}

impl RecurrentAttrs {
    /// 2 when bidirectional, else 1.
    pub fn num_directions(&self) -> usize {
        match self.direction {
            Direction::Bidirectional => 2,
            Direction::Forward | Direction::Reverse => 1,
        }
    }
}
