//! ConvTranspose over any number of spatial dims, in f64: every input element scatters its
//! products with the kernel into the (cropped) output.

use super::bad;
use super::norm::{float_like, floats_of};
use crate::error::Result;
use crate::tensor::Tensor;
use cimc_ir::ConvAttrs;

/// All multi-indices of `dims`, row-major.
fn positions(dims: &[usize]) -> Vec<Vec<usize>> {
    let n: usize = dims.iter().product();
    let mut out = Vec::with_capacity(n);
    let mut ix = vec![0usize; dims.len()];
    for _ in 0..n {
        out.push(ix.clone());
        for d in (0..dims.len()).rev() {
            ix[d] += 1;
            if ix[d] < dims[d] {
                break;
            }
            ix[d] = 0;
        }
    }
    out
}

fn flat(ix: &[usize], dims: &[usize]) -> usize {
    ix.iter().zip(dims).fold(0, |acc, (&i, &d)| acc * d + i)
}

pub(crate) fn conv_transpose(
    a: &ConvAttrs,
    output_padding: &[usize],
    inputs: &[&Tensor],
) -> Result<Tensor> {
    super::arity(inputs, 2, 3)?;
    let (xt, wt) = (inputs[0], inputs[1]);
    let (xs, ws) = (xt.shape().to_vec(), wt.shape().to_vec());
    let n = a.kernel.len();
    if xs.len() != n + 2 || ws.len() != n + 2 || output_padding.len() != n || a.group == 0 {
        return Err(bad(format!("ConvTranspose of {xs:?} with weight {ws:?}")));
    }
    let (batch, c, g) = (xs[0], xs[1], a.group);
    let (cg, mg) = (c / g, ws[1]);
    let m = mg * g;
    let in_sp = &xs[2..];
    let k_sp = &ws[2..];
    let out_sp: Vec<usize> = (0..n)
        .map(|i| {
            let full = a.strides[i] * (in_sp[i] - 1)
                + output_padding[i]
                + a.dilations[i] * (k_sp[i] - 1)
                + 1;
            full - a.pads[i] - a.pads[n + i]
        })
        .collect();
    let x = floats_of(xt, "ConvTranspose")?;
    let w = floats_of(wt, "ConvTranspose weight")?;
    let bias = match inputs.get(2) {
        Some(b) => floats_of(b, "ConvTranspose bias")?,
        None => vec![0.0; m],
    };
    let (n_in, n_k, n_out) = (
        in_sp.iter().product::<usize>(),
        k_sp.iter().product::<usize>(),
        out_sp.iter().product::<usize>(),
    );
    let in_pos = positions(in_sp);
    let k_pos = positions(k_sp);
    let mut y = vec![0.0; batch * m * n_out];
    for b in 0..batch {
        for co in 0..m {
            y[(b * m + co) * n_out..(b * m + co + 1) * n_out].fill(bias[co]);
        }
        for ci in 0..c {
            let grp = ci / cg.max(1);
            for (pi, p) in in_pos.iter().enumerate() {
                let v = x[(b * c + ci) * n_in + pi];
                for (ki, k) in k_pos.iter().enumerate() {
                    let mut o = vec![0usize; n];
                    let inside = (0..n).all(|d| {
                        let pos =
                            (p[d] * a.strides[d] + k[d] * a.dilations[d]) as i64 - a.pads[d] as i64;
                        o[d] = pos.max(0) as usize;
                        pos >= 0 && (pos as usize) < out_sp[d]
                    });
                    if !inside {
                        continue;
                    }
                    let of = flat(&o, &out_sp);
                    for mo in 0..mg {
                        let co = grp * mg + mo;
                        let wv = w[(ci * mg + mo) * n_k + ki];
                        y[(b * m + co) * n_out + of] += v * wv;
                    }
                }
            }
        }
    }
    let mut shape = vec![batch, m];
    shape.extend(out_sp);
    Ok(float_like(xt, &shape, y))
}
