//! The cimc intermediate representation.
//!
//! A [`Graph`] is an arena of [`Value`]s and [`Node`]s. Every value has exactly one definition
//! (a graph input, a constant, or one output slot of one node); nodes name their inputs by
//! [`ValueId`] in explicit slots. Shapes are fully static: the importer resolves symbolic
//! dimensions and folds shape arithmetic before a graph exists.
//!
//! Architecture invariant: this crate knows nothing of ONNX, of interpreters or of targets.

pub mod chip;
pub mod crossbar;
pub mod data;
pub mod datafile;
pub mod dtype;
pub mod error;
pub mod files;
pub mod graph;
pub mod infer;
pub mod note;
pub mod op;
pub mod op_attrs;
pub mod optable;
pub mod parse;
pub mod print;
pub mod types;
pub mod unary;
pub mod verify;

pub use chip::{
    AdcRange, ChipGeometry, CrossbarGeometry, GeometryField, GeometryProblem, WeightEncoding,
};
pub use crossbar::{CrossbarMap, Placement, TargetStamp, TileBlock};
pub use data::TensorData;
pub use datafile::{read_data, write_data};
pub use dtype::DType;
pub use error::IrError;
pub use graph::{Graph, Node, NodeId, Value, ValueDef, ValueId};
pub use note::{Note, NoteValue};
pub use op::*;
pub use op_attrs::{
    CoordMode, Direction, NearestMode, RecurrentAttrs, RecurrentCell, ResizeAttrs, ResizeMode,
    RnnAct,
};
pub use parse::{parse, parse_with_data};
pub use types::{QuantParams, TensorType};
pub use verify::verify;
