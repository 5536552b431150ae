//! Opsets 1 to 6 of the default domain: each node is rewritten to its opset-7 form, which the
//! lowerings of `nodes/` then take as an opset-7 node. What differs (ONNX `Changelog.md`):
//! - `consumed_inputs` (an in-place hint of the Caffe2 era, versions 1 to 5 of most ops): dropped.
//! - Legacy broadcasting of the binary ops (Add, Sub, Mul, Div, Pow, And, Or, Xor, Equal,
//!   Greater, Less before 7): with `broadcast=1`, B is aligned with A's dims starting at `axis`
//!   (default: its last dims); B is reshaped (a constant at import, else by a Reshape node) to
//!   the numpy-broadcastable form with trailing 1s. With `broadcast=0` the shapes must agree.
//! - Gemm < 7 `broadcast` (C broadcasts to `[M,N]`, as from 7 on): dropped.
//! - PRelu < 7: a `[C]` slope is per channel of `[N,C,...]`: reshaped to `[C,1,..]`.
//! - BatchNormalization < 7: `is_test` must be 1 (training mode is refused) and `spatial` 1;
//!   Dropout < 7: `is_test` dropped (inference, as at every opset the importer reads).
//! - Cast < 6: `to` is a type name (`"FLOAT"`): made the type code.
//! - Reshape < 5: `shape` attribute → a constant input. Concat < 4: `axis` defaults to 1.
//!   Pad < 2: `paddings` → `pads`. Split < 2: `split` given as input 1 → the attribute.
//!   Upsample 1 (experimental): `width_scale`/`height_scale` → `scales`, `bilinear` → `linear`.
//!   Selu < 6: defaults `alpha` 1.6732 and `gamma` 1.0507 (made explicit). Tile < 6 (inputs
//!   `tiles` and `axis`) is refused.
//!
//! Everything else of opsets 1 to 6 is what the same op means at opset 7.

use super::proto::attribute_proto::AttributeType;
use super::proto::tensor_proto::DataType;
use super::proto::{AttributeProto, NodeProto};
use super::Importer;
use cimc_ir::{Op, TensorData, TensorType};

type R<T> = Result<T, String>;

/// The opset the rewritten nodes are lowered at.
pub(super) const LOWERED_AT: i64 = 7;

/// The binary ops with legacy broadcasting before opset 7.
const LEGACY_BROADCAST: &[&str] =
    &["Add", "Sub", "Mul", "Div", "Pow", "And", "Or", "Xor", "Equal", "Greater", "Less"];

/// `n` (of a model at `opset` < 7) in its opset-7 form; constants and Reshape nodes it needs
/// are added to the graph.
pub(super) fn rewrite(imp: &mut Importer, n: &NodeProto, name: &str, opset: i64) -> R<NodeProto> {
    let mut n = n.clone();
    n.attribute.retain(|a| a.name.as_deref() != Some("consumed_inputs"));
    let op = n.op_type.clone().unwrap_or_default();
    match op.as_str() {
        o if LEGACY_BROADCAST.contains(&o) => legacy_broadcast(imp, &mut n, name)?,
        "Gemm" => {
            take(&mut n, "broadcast");
        }
        "PRelu" => per_channel_slope(imp, &mut n, name)?,
        "BatchNormalization" => inference_only(&mut n)?,
        "Dropout" => {
            take(&mut n, "is_test");
        }
        "Cast" => cast_to_code(&mut n)?,
        "Reshape" if opset < 5 => shape_attribute_to_input(imp, &mut n, name)?,
        "Concat" if opset < 4 && !has(&n, "axis") => n.attribute.push(int("axis", 1)),
        "Pad" if opset < 2 => {
            if let Some(mut a) = take(&mut n, "paddings") {
                a.name = Some("pads".into());
                n.attribute.push(a);
            }
        }
        "Split" if opset < 2 => split_input_to_attribute(imp, &mut n)?,
        "Upsample" => upsample_scales(imp, &mut n)?,
        "Selu" if opset < 6 => {
            // Selu 1's defaults are the constants rounded to 5 digits.
            for (attr, v) in [("alpha", 1.6732_f32), ("gamma", 1.0507)] {
                if !has(&n, attr) {
                    n.attribute.push(float(attr, v));
                }
            }
        }
        "Tile" if opset < 6 => {
            return Err("Tile before opset 6 (inputs tiles and axis) is not supported".into())
        }
        _ => {}
    }
    Ok(n)
}

/// BatchNormalization before opset 7: `is_test` (default 0, training mode) must be 1.
fn inference_only(n: &mut NodeProto) -> R<()> {
    if int_attr(&take(n, "is_test"), "is_test")?.unwrap_or(0) != 1 {
        return Err("attribute 'is_test' is 0 (training mode, the default before opset 7): \
                    only inference (is_test=1) is supported"
            .into());
    }
    Ok(())
}

fn has(n: &NodeProto, name: &str) -> bool {
    n.attribute.iter().any(|a| a.name.as_deref() == Some(name))
}

/// Removes attribute `name` from `n`, returning it.
fn take(n: &mut NodeProto, name: &str) -> Option<AttributeProto> {
    let i = n.attribute.iter().position(|a| a.name.as_deref() == Some(name))?;
    Some(n.attribute.remove(i))
}

/// An int attribute's value (old files may leave `type` unset).
fn int_attr(a: &Option<AttributeProto>, name: &str) -> R<Option<i64>> {
    match a {
        None => Ok(None),
        Some(a) if a.i.is_some() || a.r#type == Some(AttributeType::Int as i32) => {
            Ok(Some(a.i.unwrap_or(0)))
        }
        Some(_) => Err(format!("attribute '{name}': expected an int")),
    }
}

fn int(name: &str, v: i64) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        r#type: Some(AttributeType::Int as i32),
        i: Some(v),
        ..Default::default()
    }
}

fn float(name: &str, v: f32) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        r#type: Some(AttributeType::Float as i32),
        f: Some(v),
        ..Default::default()
    }
}

fn input_ty(imp: &Importer, n: &NodeProto, i: usize) -> R<Option<TensorType>> {
    match n.input.get(i).filter(|s| !s.is_empty()) {
        None => Ok(None),
        Some(s) => match imp.env.get(s.as_str()) {
            Some(&v) => Ok(Some(imp.g.ty(v).clone())),
            None => Err(format!("input {i} ('{s}') is not defined")),
        },
    }
}

/// Replaces input `i` of `n` by the same value reshaped to `shape`: a constant when it is one,
/// else the output of a Reshape node.
fn reshape_input(
    imp: &mut Importer,
    n: &mut NodeProto,
    name: &str,
    i: usize,
    shape: Vec<usize>,
) -> R<()> {
    let v = imp.env[n.input[i].as_str()];
    let vname = imp.fresh_name(&format!("{}_legacy", n.input[i]));
    let new = match imp.g.value(v).const_data() {
        Some(d) => {
            let d = d.reshaped(shape).map_err(|e| e.to_string())?;
            imp.g.add_const(vname.clone(), d)
        }
        None => {
            let ty = imp.g.ty(v).with_shape(shape.clone());
            let node = imp.fresh_name(&format!("{name}_legacy_reshape"));
            let id =
                imp.g.add_node(node, Op::Reshape { shape }, vec![v], vec![(vname.clone(), ty)]);
            imp.g.node(id).outputs[0]
        }
    };
    imp.env.insert(vname.clone(), new);
    n.input[i] = vname;
    Ok(())
}

/// `broadcast`/`axis` of the binary ops before opset 7.
fn legacy_broadcast(imp: &mut Importer, n: &mut NodeProto, name: &str) -> R<()> {
    let broadcast = int_attr(&take(n, "broadcast"), "broadcast")?.unwrap_or(0);
    let axis = int_attr(&take(n, "axis"), "axis")?;
    let (Some(a), Some(b)) = (input_ty(imp, n, 0)?, input_ty(imp, n, 1)?) else {
        return Err("expected 2 inputs".into());
    };
    let show = cimc_ir::infer::show;
    match broadcast {
        0 if axis.is_some() => Err("attribute 'axis' is given without broadcast=1".into()),
        0 if a.shape != b.shape => Err(format!(
            "attribute 'broadcast' is 0 (or absent) but B {} differs from A {} in shape",
            show(&b),
            show(&a)
        )),
        0 => Ok(()),
        1 => {
            let (ra, rb) = (a.rank() as i64, b.rank() as i64);
            let start = match axis {
                None => ra - rb,
                Some(x) if x < 0 => ra + x,
                Some(x) => x,
            };
            let fits = start >= 0
                && start + rb <= ra
                && b.shape
                    .iter()
                    .enumerate()
                    .all(|(k, &d)| d == 1 || d == a.shape[start as usize + k]);
            if !fits {
                return Err(format!(
                    "attribute 'axis' {}: B {} does not broadcast to A {} from dim {start}",
                    axis.map_or("absent".into(), |x| x.to_string()),
                    show(&b),
                    show(&a)
                ));
            }
            let mut shape = b.shape.clone();
            shape.resize((ra - start) as usize, 1);
            if shape != b.shape {
                reshape_input(imp, n, name, 1, shape)?;
            }
            Ok(())
        }
        other => Err(format!("attribute 'broadcast': expected 0 or 1, got {other}")),
    }
}

/// PRelu before opset 7: a `[C]` slope of `[N,C,...]` is per channel.
fn per_channel_slope(imp: &mut Importer, n: &mut NodeProto, name: &str) -> R<()> {
    let (Some(x), Some(s)) = (input_ty(imp, n, 0)?, input_ty(imp, n, 1)?) else {
        return Err("expected 2 inputs".into());
    };
    if x.rank() >= 3 && s.rank() == 1 && s.shape[0] == x.shape[1] && s.shape[0] != 1 {
        let mut shape = s.shape.clone();
        shape.resize(x.rank() - 1, 1);
        reshape_input(imp, n, name, 1, shape)?;
    }
    Ok(())
}

/// Cast before opset 6 names its target type (`"FLOAT"`).
fn cast_to_code(n: &mut NodeProto) -> R<()> {
    let Some(a) = n.attribute.iter_mut().find(|a| a.name.as_deref() == Some("to")) else {
        return Ok(());
    };
    if let Some(s) = a.s.as_ref().filter(|_| a.i.is_none()) {
        let s = std::str::from_utf8(s).map_err(|_| "attribute 'to': not UTF-8".to_string())?;
        let code = DataType::from_str_name(&s.to_ascii_uppercase())
            .ok_or_else(|| format!("attribute 'to': unknown type name '{s}'"))?;
        *a = int("to", code as i64);
    }
    Ok(())
}

/// Reshape before opset 5 takes its target shape as an attribute.
fn shape_attribute_to_input(imp: &mut Importer, n: &mut NodeProto, name: &str) -> R<()> {
    let shape = take(n, "shape").map(|a| a.ints).ok_or("attribute 'shape' is required")?;
    let vname = imp.fresh_name(&format!("{name}_shape"));
    let v = imp.g.add_const(vname.clone(), TensorData::from_i64(vec![shape.len()], &shape));
    imp.env.insert(vname.clone(), v);
    n.input.truncate(1);
    n.input.push(vname);
    Ok(())
}

/// Split before opset 2 may take its sizes as input 1 (a constant).
fn split_input_to_attribute(imp: &mut Importer, n: &mut NodeProto) -> R<()> {
    let Some(s) = n.input.get(1).filter(|s| !s.is_empty()) else { return Ok(()) };
    if has(n, "split") {
        return Err("split sizes given both as input 1 and as attribute 'split'".into());
    }
    let data =
        imp.env.get(s.as_str()).and_then(|&v| imp.g.value(v).const_data()).ok_or_else(|| {
            format!("split (input 1, '{s}') must be a constant: it decides the output shapes")
        })?;
    let sizes = data.to_i64_vec();
    n.input.truncate(1);
    n.attribute.push(AttributeProto {
        name: Some("split".into()),
        r#type: Some(AttributeType::Ints as i32),
        ints: sizes,
        ..Default::default()
    });
    Ok(())
}

/// Upsample 1 (experimental): `height_scale`, `width_scale` over `[N,C,H,W]`, modes
/// `nearest` and `bilinear`.
fn upsample_scales(imp: &mut Importer, n: &mut NodeProto) -> R<()> {
    let (h, w) = (take(n, "height_scale"), take(n, "width_scale"));
    if h.is_none() && w.is_none() {
        return Ok(());
    }
    let rank = input_ty(imp, n, 0)?.map_or(0, |t| t.rank());
    if rank != 4 {
        return Err(format!(
            "attributes 'height_scale'/'width_scale' need a 4-D input, got rank {rank}"
        ));
    }
    let scale = |a: Option<AttributeProto>, what: &str| {
        a.and_then(|a| a.f).ok_or_else(|| format!("attribute '{what}' is required"))
    };
    let scales = vec![1.0, 1.0, scale(h, "height_scale")?, scale(w, "width_scale")?];
    n.attribute.push(AttributeProto {
        name: Some("scales".into()),
        r#type: Some(AttributeType::Floats as i32),
        floats: scales,
        ..Default::default()
    });
    if let Some(m) = n.attribute.iter_mut().find(|a| a.name.as_deref() == Some("mode")) {
        if m.s.as_deref() == Some(b"bilinear".as_slice()) {
            m.s = Some(bytes::Bytes::from_static(b"linear"));
        }
    }
    Ok(())
}
