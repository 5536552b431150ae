//! `canonicalize`'s rewrite of a ConvTranspose into data movement and an ordinary Conv, so the
//! quantizer, the tiling and the crossbar see a Conv (a ConvTranspose has no program step).
//!
//! Requires: a float ConvTranspose whose weight `w [C, M/g, K..]` is an f32 constant (per-tensor
//! annotated, or per-channel along its output channels with one group), with resolved pads
//! (the importer resolves `auto_pad` and `output_shape`).
//!
//! Does: `ConvTranspose(x, w, b)` with strides `s`, dilations `d`, pads `[pb.., pe..]`,
//! `output_padding` `op` and `g` groups becomes
//! - `z = ZeroInsert(x)` with strides `s` and pads `d·(K − 1) − pb` before and
//!   `d·(K − 1) + op − pe` after on each spatial axis (negative: cropped): the input with
//!   `s − 1` zeros between its elements, framed as the full transposed output needs;
//! - `y = Conv(z, w', b)`, stride 1, dilations `d`, no pads, `g` groups, the ConvTranspose's
//!   fused clamp, with `w'[g·M/g + m, c, k] = w[g·C/g + c, m, K − 1 − k]` (each group's kernel
//!   transposed between its input and output channels and flipped along every spatial axis).
//!
//! Why it is the same function: the full transposed output is `y[o] = Σ x[i]·w[k]` over
//! `o = s·i + d·k`; the zero-inserted input holds `x[i]` at `s·i + d·(K − 1)` (before the crop),
//! and the Conv at `o` reads it at `o + d·k'`, so `k' = K − 1 − k`.
//!
//! Guarantees: the same function up to float rounding (a test holds it at 1e-5 on random
//! inputs); no ConvTranspose with such weights is left; the Conv's weight annotation, if any,
//! is the ConvTranspose's (its axis moved from 1 to 0).

use cimc_ir::{ConvAttrs, DType, Graph, NodeId, Op, TensorData, TensorType};

/// Rewrites every ConvTranspose with usable constant weights; returns how many.
pub fn conv_transposes_to_convs(g: &mut Graph) -> usize {
    let mut done = 0;
    for n in g.node_ids() {
        if !g.is_live(n) {
            continue;
        }
        if let Op::ConvTranspose { conv, output_padding } = &g.node(n).op {
            let (conv, output_padding) = (conv.clone(), output_padding.clone());
            done += usize::from(rewrite(g, n, &conv, &output_padding));
        }
    }
    done
}

/// The Conv weight `[M, C/g, K..]` of ConvTranspose weight `w` (shape `ws`, `[C, M/g, K..]`)
/// with `group` groups: per group transposed between channels and flipped spatially.
pub fn flipped_weight(w: &[f32], ws: &[usize], group: usize) -> (Vec<usize>, Vec<f32>) {
    let (c, mg) = (ws[0], ws[1]);
    let cg = c / group;
    let k: usize = ws[2..].iter().product();
    let m = mg * group;
    let mut out = vec![0f32; m * cg * k];
    for grp in 0..group {
        for mi in 0..mg {
            for ci in 0..cg {
                let src = ((grp * cg + ci) * mg + mi) * k;
                let dst = ((grp * mg + mi) * cg + ci) * k;
                // Flipping every spatial axis of a row-major kernel reverses its elements.
                for kk in 0..k {
                    out[dst + kk] = w[src + k - 1 - kk];
                }
            }
        }
    }
    let mut shape = vec![m, cg];
    shape.extend_from_slice(&ws[2..]);
    (shape, out)
}

fn rewrite(g: &mut Graph, n: NodeId, a: &ConvAttrs, output_padding: &[usize]) -> bool {
    let node = g.node(n);
    let (x, w) = (node.inputs[0], node.inputs[1]);
    let bias = node.inputs.get(2).copied();
    let sp = a.kernel.len();
    let ws = g.ty(w).shape.clone();
    let wq = g.ty(w).quant.clone();
    let usable_quant = match &wq {
        None => true,
        Some(q) => q.axis.is_none() || (q.axis == Some(1) && a.group == 1),
    };
    let Some(wd) = g.value(w).const_data() else { return false };
    if g.ty(x).dtype != DType::F32
        || wd.dtype() != DType::F32
        || !usable_quant
        || ws.len() != sp + 2
        || g.ty(x).rank() != sp + 2
        || a.group == 0
        || !ws[0].is_multiple_of(a.group)
        || output_padding.len() != sp
        || a.pads.len() != 2 * sp
        || a.strides.len() != sp
        || a.dilations.len() != sp
    {
        return false;
    }
    let (wshape, wvals) = flipped_weight(&wd.to_f32_vec(), &ws, a.group);
    let mut pads = vec![0i64; 2 * sp];
    for i in 0..sp {
        let reach = (a.dilations[i] * (ws[2 + i] - 1)) as i64;
        pads[i] = reach - a.pads[i] as i64;
        pads[sp + i] = reach + output_padding[i] as i64 - a.pads[sp + i] as i64;
    }
    let name = node.name.clone();
    // The zero-inserted input: the input's dtype and quantization (it moves values).
    let xt = g.ty(x).clone();
    let mut zshape = xt.shape.clone();
    for i in 0..sp {
        let d = xt.shape[2 + i] as i64;
        let len = a.strides[i] as i64 * (d - 1) + 1 + pads[i] + pads[sp + i];
        if d == 0 || len < ws[2 + i] as i64 {
            return false;
        }
        zshape[2 + i] = len as usize;
    }
    let zname = g.unique_name(&format!("{}_zeros", g.value(x).name));
    let zty = TensorType { dtype: xt.dtype, shape: zshape, quant: xt.quant.clone() };
    let zi = g.add_node(
        format!("{name}_zeros"),
        Op::ZeroInsert { strides: a.strides.clone(), pads },
        vec![x],
        vec![(zname, zty)],
    );
    let z = g.node(zi).outputs[0];
    let wname = g.unique_name(&format!("{}_conv", g.value(w).name));
    let w2 = g.add_const(wname, TensorData::from_f32(wshape, &wvals));
    g.value_mut(w2).ty.quant = wq.map(|mut q| {
        q.axis = q.axis.map(|_| 0);
        q
    });
    let conv = ConvAttrs {
        kernel: a.kernel.clone(),
        strides: vec![1; sp],
        dilations: a.dilations.clone(),
        pads: vec![0; 2 * sp],
        group: a.group,
        clamp: a.clamp,
    };
    let mut node = g.node_mut(n);
    node.op = Op::Conv(conv);
    node.inputs = [z, w2].into_iter().chain(bias).collect();
    true
}

#[cfg(test)]
mod tests {
    use super::conv_transposes_to_convs;
    use cimc_interp::{Runner, Tensor};
    use cimc_ir::{ConvAttrs, DType, Graph, Op, TensorData, TensorType};

    /// Deterministic values in [-1, 1) (xorshift), so the cases need no crate.
    fn values(seed: u64, n: usize) -> Vec<f32> {
        let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..n)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                (s >> 40) as f32 / (1u64 << 23) as f32 - 1.0
            })
            .collect()
    }

    struct Case {
        x: Vec<usize>,
        c_out_per_group: usize,
        kernel: Vec<usize>,
        strides: Vec<usize>,
        dilations: Vec<usize>,
        pads: Vec<usize>,
        output_padding: Vec<usize>,
        group: usize,
        bias: bool,
    }

    fn graph(c: &Case, seed: u64) -> Graph {
        let sp = c.kernel.len();
        let mut g = Graph::new("ct");
        let x = g.add_input("x", TensorType::new(DType::F32, c.x.clone()));
        let mut ws = vec![c.x[1], c.c_out_per_group];
        ws.extend(&c.kernel);
        let n_w = ws.iter().product();
        let w = g.add_const("w", TensorData::from_f32(ws, &values(seed, n_w)));
        let m = c.c_out_per_group * c.group;
        let mut inputs = vec![x, w];
        if c.bias {
            inputs.push(g.add_const("b", TensorData::from_f32(vec![m], &values(seed + 1, m))));
        }
        let mut out = vec![c.x[0], m];
        for i in 0..sp {
            out.push(
                c.strides[i] * (c.x[2 + i] - 1)
                    + c.output_padding[i]
                    + c.dilations[i] * (c.kernel[i] - 1)
                    + 1
                    - c.pads[i]
                    - c.pads[sp + i],
            );
        }
        let conv = ConvAttrs {
            kernel: c.kernel.clone(),
            strides: c.strides.clone(),
            dilations: c.dilations.clone(),
            pads: c.pads.clone(),
            group: c.group,
            clamp: None,
        };
        let op = Op::ConvTranspose { conv, output_padding: c.output_padding.clone() };
        let n = g.add_node("ct", op, inputs, vec![("y".into(), TensorType::new(DType::F32, out))]);
        let y = g.node(n).outputs[0];
        g.set_outputs(vec![y]);
        g
    }

    /// The rewritten graph (ZeroInsert, then Conv) computes the ConvTranspose within 1e-5 on
    /// random inputs, over strides, pads, output padding, dilations, groups and ranks.
    #[test]
    fn the_rewrite_is_the_conv_transpose() {
        let case = |x: &[usize],
                    mg,
                    k: &[usize],
                    s: &[usize],
                    d: &[usize],
                    p: &[usize],
                    op: &[usize],
                    group,
                    bias| Case {
            x: x.to_vec(),
            c_out_per_group: mg,
            kernel: k.to_vec(),
            strides: s.to_vec(),
            dilations: d.to_vec(),
            pads: p.to_vec(),
            output_padding: op.to_vec(),
            group,
            bias,
        };
        let cases = [
            case(&[1, 3, 5, 4], 2, &[3, 3], &[2, 2], &[1, 1], &[1, 1, 1, 1], &[1, 1], 1, true),
            case(&[2, 4, 3, 3], 3, &[2, 3], &[3, 1], &[1, 2], &[0, 2, 1, 0], &[2, 0], 2, false),
            case(&[1, 2, 4, 4], 1, &[4, 4], &[2, 2], &[1, 1], &[1, 1, 1, 1], &[0, 0], 2, true),
            case(&[1, 3, 6], 2, &[5], &[1], &[1], &[2, 1], &[0], 1, true),
            case(&[1, 6, 2, 3], 2, &[3, 2], &[2, 3], &[2, 1], &[3, 0, 2, 1], &[1, 2], 3, true),
            case(&[1, 2, 3, 3], 2, &[3, 3], &[1, 1], &[1, 1], &[0, 0, 0, 0], &[0, 0], 1, false),
        ];
        for (i, c) in cases.iter().enumerate() {
            let g0 = graph(c, 7 + i as u64);
            let mut g1 = g0.clone();
            assert_eq!(conv_transposes_to_convs(&mut g1), 1, "case {i}");
            g1.compact().unwrap();
            cimc_ir::verify::verify(&g1).unwrap_or_else(|e| panic!("case {i}: {e}"));
            assert!(g1.nodes().all(|(_, n)| !matches!(n.op, Op::ConvTranspose { .. })));
            let n_x = c.x.iter().product();
            let x = Tensor::from_f32(&c.x, values(100 + i as u64, n_x)).unwrap();
            let want = Runner::new(&g0).unwrap().run(vec![x.clone()]).unwrap();
            let got = Runner::new(&g1).unwrap().run(vec![x]).unwrap();
            assert_eq!(want[0].shape(), got[0].shape(), "case {i}");
            let (w, v) = (want[0].to_f64_vec(), got[0].to_f64_vec());
            let worst = w.iter().zip(&v).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
            assert!(worst <= 1e-5, "case {i}: differs by {worst}");
            assert!(w.iter().any(|&a| a.abs() > 1e-3), "case {i}: a trivial output");
        }
    }
}
