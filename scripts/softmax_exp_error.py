import numpy as np
rng=np.random.default_rng(0)
ln2=np.log(2)
def iexp_int(q, S):
    # I-BERT Algorithm 2 (i-exp), integer-only: q <= 0 codes of scale S.
    q_ln2 = np.floor(ln2/S)
    z = np.floor(-q/q_ln2)
    qp = q + z*q_ln2
    a,b,c = 0.3585, 1.353, 0.344
    qb = np.floor(b/S); qc = np.floor(c/(a*S*S))
    qL = (qp+qb)**2 + qc     # scale a*S^2
    qout = np.floor(qL * 2.0**(30 - z))  # shift right by z, kept with 30 extra bits
    return qout, a*S*S/2**30
# float polynomial error
p=np.linspace(-ln2,0,100001)
L=0.3585*(p+1.353)**2+0.344
print("poly max rel err on (-ln2,0]:", np.max(np.abs(L-np.exp(p))/np.exp(p)))
worst_tab=0; worst_ib=0
for trial in range(2000):
    s=2.0**rng.uniform(-8,-2)
    n=rng.integers(2,64)
    q=rng.integers(-128,128,n)
    x=s*q; pf=np.exp(x-x.max()); pf/=pf.sum()
    d=q.max()-q
    # table
    e=np.round(2**30*np.exp(-s*d)); t=np.floor((e*2**32+np.floor(e.sum()/2))/e.sum())
    y=np.floor(t*255/2**32+0.5); worst_tab=max(worst_tab, np.max(np.abs(y-pf*255)))
    qe,Se=iexp_int(-d.astype(float), s)
    pi=qe/qe.sum(); y2=np.floor(pi*255+0.5); worst_ib=max(worst_ib, np.max(np.abs(y2-pf*255)))
print("8-bit in, 8-bit out (s_y=1/255): max |code - exact| table:", worst_tab, " i-exp:", worst_ib)
for lo,hi in [(-8,-6),(-6,-4),(-4,-2)]:
    wt=wi=0
    for trial in range(2000):
        s=2.0**rng.uniform(lo,hi); n=rng.integers(2,64); q=rng.integers(-128,128,n)
        x=s*q; pf=np.exp(x-x.max()); pf/=pf.sum(); d=q.max()-q
        e=np.round(2**30*np.exp(-s*d)); t=np.floor((e*2**32+np.floor(e.sum()/2))/e.sum())
        wt=max(wt,np.max(np.abs(np.floor(t*255/2**32+0.5)-pf*255)))
        qe,_=iexp_int(-d.astype(float), s); wi=max(wi,np.max(np.abs(np.floor(qe/qe.sum()*255+0.5)-pf*255)))
    print(f"s in [2^{lo},2^{hi}]: table {wt:.3f} codes, i-exp {wi:.3f} codes")
