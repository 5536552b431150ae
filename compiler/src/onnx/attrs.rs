//! Typed access to a node's attributes.
//!
//! Every getter checks the attribute's declared type and returns a message that names the
//! attribute (the importer adds the node and op). Attributes an op does not know are refused
//! by [`Attrs::check_known`], so that a newer attribute that changes an op's meaning is never
//! silently ignored.

use super::proto::attribute_proto::AttributeType;
use super::proto::{AttributeProto, NodeProto, TensorProto};

type R<T> = Result<T, String>;

/// The attributes of one node.
pub struct Attrs<'a> {
    node: &'a NodeProto,
}

impl<'a> Attrs<'a> {
    pub fn new(node: &'a NodeProto) -> Attrs<'a> {
        Attrs { node }
    }

    /// The node these attributes belong to (an expansion reuses them on the ops it makes).
    pub fn proto(&self) -> &'a NodeProto {
        self.node
    }

    fn find(&self, name: &str) -> Option<&'a AttributeProto> {
        self.node.attribute.iter().find(|a| a.name.as_deref() == Some(name))
    }

    /// Refuses attributes outside `known` and attribute references (function bodies only).
    pub fn check_known(&self, known: &[&str]) -> R<()> {
        for a in &self.node.attribute {
            let name = a.name.as_deref().unwrap_or("");
            if a.ref_attr_name.as_deref().is_some_and(|r| !r.is_empty()) {
                return Err(format!("attribute '{name}' refers to a function attribute (only valid inside functions)"));
            }
            if !known.contains(&name) {
                return Err(format!("unknown attribute '{name}' (known: {})", known.join(", ")));
            }
        }
        Ok(())
    }

    pub fn has(&self, name: &str) -> bool {
        self.find(name).is_some()
    }

    /// The declared type, or the one the set field implies for old files without `type`.
    fn kind(a: &AttributeProto) -> AttributeType {
        match a.r#type.and_then(|t| AttributeType::try_from(t).ok()) {
            Some(t) if t != AttributeType::Undefined => t,
            _ => {
                if a.f.is_some() {
                    AttributeType::Float
                } else if a.i.is_some() {
                    AttributeType::Int
                } else if a.s.is_some() {
                    AttributeType::String
                } else if a.t.is_some() {
                    AttributeType::Tensor
                } else if !a.floats.is_empty() {
                    AttributeType::Floats
                } else if !a.ints.is_empty() {
                    AttributeType::Ints
                } else if !a.strings.is_empty() {
                    AttributeType::Strings
                } else {
                    AttributeType::Undefined
                }
            }
        }
    }

    fn typed(&self, name: &str, want: AttributeType) -> R<Option<&'a AttributeProto>> {
        match self.find(name) {
            None => Ok(None),
            Some(a) => {
                let got = Self::kind(a);
                // An empty list may be stored without a type by old exporters.
                if got == want
                    || (got == AttributeType::Undefined
                        && matches!(want, AttributeType::Ints | AttributeType::Floats))
                {
                    Ok(Some(a))
                } else {
                    Err(format!(
                        "attribute '{name}': expected {}, got {}",
                        want.as_str_name(),
                        got.as_str_name()
                    ))
                }
            }
        }
    }

    pub fn int(&self, name: &str) -> R<Option<i64>> {
        Ok(self.typed(name, AttributeType::Int)?.map(|a| a.i.unwrap_or(0)))
    }

    pub fn int_or(&self, name: &str, default: i64) -> R<i64> {
        Ok(self.int(name)?.unwrap_or(default))
    }

    /// A 0/1 flag.
    pub fn bool_or(&self, name: &str, default: bool) -> R<bool> {
        match self.int(name)? {
            None => Ok(default),
            Some(0) => Ok(false),
            Some(1) => Ok(true),
            Some(v) => Err(format!("attribute '{name}': expected 0 or 1, got {v}")),
        }
    }

    pub fn float(&self, name: &str) -> R<Option<f32>> {
        Ok(self.typed(name, AttributeType::Float)?.map(|a| a.f.unwrap_or(0.0)))
    }

    pub fn float_or(&self, name: &str, default: f32) -> R<f32> {
        Ok(self.float(name)?.unwrap_or(default))
    }

    pub fn ints(&self, name: &str) -> R<Option<&'a [i64]>> {
        Ok(self.typed(name, AttributeType::Ints)?.map(|a| a.ints.as_slice()))
    }

    pub fn floats(&self, name: &str) -> R<Option<&'a [f32]>> {
        Ok(self.typed(name, AttributeType::Floats)?.map(|a| a.floats.as_slice()))
    }

    /// Non-negative integers (sizes, strides...).
    pub fn usizes(&self, name: &str) -> R<Option<Vec<usize>>> {
        match self.ints(name)? {
            None => Ok(None),
            Some(v) => v
                .iter()
                .map(|&x| {
                    usize::try_from(x)
                        .map_err(|_| format!("attribute '{name}': negative entry in {v:?}"))
                })
                .collect::<R<Vec<usize>>>()
                .map(Some),
        }
    }

    pub fn string(&self, name: &str) -> R<Option<String>> {
        match self.typed(name, AttributeType::String)? {
            None => Ok(None),
            Some(a) => {
                let b = a.s.as_deref().unwrap_or(&[]);
                std::str::from_utf8(b)
                    .map(|s| Some(s.to_string()))
                    .map_err(|_| format!("attribute '{name}': not UTF-8"))
            }
        }
    }

    pub fn strings(&self, name: &str) -> R<Option<Vec<String>>> {
        match self.typed(name, AttributeType::Strings)? {
            None => Ok(None),
            Some(a) => a
                .strings
                .iter()
                .map(|b| {
                    std::str::from_utf8(b)
                        .map(str::to_string)
                        .map_err(|_| format!("attribute '{name}': not UTF-8"))
                })
                .collect::<R<Vec<String>>>()
                .map(Some),
        }
    }

    pub fn tensor(&self, name: &str) -> R<Option<&'a TensorProto>> {
        match self.typed(name, AttributeType::Tensor)? {
            None => Ok(None),
            Some(a) => {
                a.t.as_ref().map(Some).ok_or_else(|| format!("attribute '{name}': no tensor"))
            }
        }
    }
}
