//! # Why emrshare does not implement the BPDS content extraction signature
//!
//! `SECURITY.md` (section "Deviations from the papers", row "BPDS CES") links here. This test is
//! the evidence for that row: it implements the BPDS paper's content extraction signature exactly
//! as printed, and shows that anyone who receives one extraction of one record recovers the
//! doctor's private key and can then sign anything in the doctor's name.
//!
//! ## What the paper says (BPDS, section III.C, "Data Acquiring")
//!
//! - Key generation: a prime `p`, a generator `g` of `Z_p^*`, a hash `H: {0,1}* -> Z_p`. The
//!   doctor picks `a` and publishes `v = g^a mod p`; `SK = a`.
//! - Algorithm 1, `SIG(SK, M, CEAS)`: select **one** random `k` in `Z_{p-1}^*`, `r = g^k mod p`;
//!   for each of the seven parts `h_i = H(M_i || CEAS || T || i)` and
//!   `delta_i = (h_i - a*r) * k^-1 mod (p-1)`.
//! - Algorithm 2, `Ext`: the patient keeps the parts they want (at least the CEAS parts
//!   {gender, age, medical history}) and their `delta_i`.
//! - Verification: `CEAS` is a subset of `CI(M')`, and for each kept part
//!   `v^r * r^delta_i == g^h_i mod p`.
//!
//! (The paper's `delta_Full = CEAS || T || delta_1 .. delta_7` does not list `r`, although
//! verification needs it; `r` has to travel with the signature, so we carry it.)
//!
//! ## The flaw
//!
//! Every part signature is an ElGamal signature with the same `k` (hence the same `r`). For two
//! parts `i != j` of one record:
//!
//! ```text
//! delta_i * k = h_i - a*r   (mod p-1)
//! delta_j * k = h_j - a*r   (mod p-1)
//! => (delta_i - delta_j) * k = h_i - h_j          (mod p-1)   -> k
//! => a * r = h_i - delta_i * k                     (mod p-1)   -> a
//! ```
//!
//! Everything on the right is public to a verifier: `h_i` is recomputed from the disclosed part,
//! `delta_i` and `r` are the signature. Since every extraction must contain the three CEAS parts,
//! **every** extraction the patient ever shows (to an insurer, a researcher, the cloud store)
//! hands the recipient the doctor's private key. With it the recipient forges parts that the
//! paper's verification accepts, including a changed part slotted into a genuine record (same
//! `r`, same tag `T`) and whole new records. This is the same failure as the ECDSA nonce reuse
//! of the Sony PS3 signing key; the sign convention differs (ElGamal `delta = (h - a r)/k`,
//! DSA `s = (h + x r)/k`, so DSA's `x = (s k - h)/r` becomes `a = (h - delta k)/r` here).
//!
//! Because `p - 1` is not prime, the two divisions above can have more than one solution
//! (`gcd` 2 for the safe prime used here). The attacker keeps the candidate that matches the
//! public values `r = g^k` and `v = g^a`, which is unique because `g` generates `Z_p^*`. The
//! same code also runs the scheme in a prime-order subgroup (the DSA-like setting, exponents
//! mod `q`), where each division has exactly one solution.
//!
//! ## What emrshare does instead
//!
//! The record is an SD-JWT: each removable part is a salted SHA-256 digest, and the doctor makes
//! one ES256 signature over the issuer JWT with a fresh nonce from aws-lc-rs. No two signatures
//! in a record share a nonce, because there is only one signature.
//!
//! ## Scope of this file
//!
//! std only, toy sizes: `p` is a 62-bit safe prime so every product fits in a `u128`. The hash is
//! a stand-in for the paper's unspecified `H`; the attack only evaluates `H` on public inputs and
//! never inverts it or finds collisions, so the choice of hash makes no difference. Randomness is
//! a seeded splitmix64 so every run checks the same cases. Nothing here is used by the library.
#![allow(clippy::unwrap_used)] // tests and benches fail loudly on a broken fixture

// ---------------------------------------------------------------------------------------------
// Arithmetic modulo numbers below 2^62 (products computed in u128).
// ---------------------------------------------------------------------------------------------

fn sub_mod(a: u64, b: u64, m: u64) -> u64 {
    ((a as u128 + m as u128 - (b % m) as u128) % m as u128) as u64
}

fn mul_mod(a: u64, b: u64, m: u64) -> u64 {
    ((a as u128 * b as u128) % m as u128) as u64
}

fn pow_mod(base: u64, mut exp: u64, m: u64) -> u64 {
    let mut result = 1 % m;
    let mut base = base % m;
    while exp > 0 {
        if exp & 1 == 1 {
            result = mul_mod(result, base, m);
        }
        base = mul_mod(base, base, m);
        exp >>= 1;
    }
    result
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// Inverse of `a` modulo `m` by the extended Euclidean algorithm; `None` if `gcd(a, m) != 1`.
/// (Fermat's little theorem would not do: the paper's modulus `p - 1` is not prime.)
fn inv_mod(a: u64, m: u64) -> Option<u64> {
    let (mut old_r, mut r) = ((a % m) as i128, m as i128);
    let (mut old_s, mut s) = (1i128, 0i128);
    while r != 0 {
        let quotient = old_r / r;
        (old_r, r) = (r, old_r - quotient * r);
        (old_s, s) = (s, old_s - quotient * s);
    }
    if old_r != 1 {
        return None;
    }
    Some(old_s.rem_euclid(m as i128) as u64)
}

/// At most this many solutions are enumerated; more would mean a degenerate pair of parts,
/// and an attacker would simply pick another pair.
const MAX_SOLUTIONS: u64 = 1024;

/// All `x` in `[0, n)` with `c * x = b (mod n)`.
///
/// With `d = gcd(c, n)` there are no solutions unless `d` divides `b`, and then exactly `d`:
/// `x0 + j * n/d` for `j` in `0..d`, where `x0 = (b/d) * (c/d)^-1 mod n/d`.
fn solve_linear_congruence(c: u64, b: u64, n: u64) -> Vec<u64> {
    let (c, b) = (c % n, b % n);
    let d = gcd(c, n); // gcd(0, n) = n: then every x works iff b = 0; treated as degenerate
    if b % d != 0 || d > MAX_SOLUTIONS {
        return Vec::new();
    }
    let step = n / d;
    let x0 = mul_mod(
        (b / d) % step,
        inv_mod((c / d) % step, step).expect("coprime after dividing by gcd"),
        step,
    );
    (0..d).map(|j| x0 + j * step).collect()
}

/// Deterministic Miller-Rabin for 64-bit integers (these bases are exact below 3.3e24).
fn is_prime(n: u64) -> bool {
    const BASES: [u64; 12] = [2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37];
    if n < 2 {
        return false;
    }
    for &p in &BASES {
        if n % p == 0 {
            return n == p;
        }
    }
    let (mut d, mut s) = (n - 1, 0);
    while d % 2 == 0 {
        d /= 2;
        s += 1;
    }
    'witness: for &a in &BASES {
        let mut x = pow_mod(a, d, n);
        if x == 1 || x == n - 1 {
            continue;
        }
        for _ in 1..s {
            x = mul_mod(x, x, n);
            if x == n - 1 {
                continue 'witness;
            }
        }
        return false;
    }
    true
}

// ---------------------------------------------------------------------------------------------
// Deterministic randomness: splitmix64 (Steele, Lea, Flood 2014), seeded per test.
// ---------------------------------------------------------------------------------------------

struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        mix64(self.0)
    }

    /// Uniform in `[lo, hi)` (rejection sampling, no modulo bias).
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        let span = hi - lo;
        let zone = u64::MAX - (u64::MAX % span);
        loop {
            let x = self.next_u64();
            if x < zone {
                return lo + x % span;
            }
        }
    }
}

/// The splitmix64 output function, also used to finish the stand-in hash.
fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

// ---------------------------------------------------------------------------------------------
// Groups.
// ---------------------------------------------------------------------------------------------

/// The largest safe prime below 2^62: `P = 2Q + 1` with `Q` prime (checked in a test).
const P: u64 = 4_611_686_018_427_377_339;
const Q: u64 = (P - 1) / 2;

// Products of two residues must fit in a u128, and sums of two in a u64.
const _: () = assert!(P < 1 << 62);

/// A cyclic group `<g>` in `Z_p^*`; exponents live modulo `n`, the order of `g`.
#[derive(Clone, Copy, Debug)]
struct Group {
    name: &'static str,
    p: u64,
    g: u64,
    n: u64,
}

/// The paper's setting: `g` generates all of `Z_p^*`, exponents mod `p - 1`.
const PAPER_GROUP: Group = Group {
    name: "Z_p^* (paper)",
    p: P,
    g: 2,
    n: P - 1,
};

/// The DSA-like setting: the subgroup of squares, prime order `q`, exponents mod `q`.
const PRIME_ORDER_GROUP: Group = Group {
    name: "order-q subgroup",
    p: P,
    g: 4,
    n: Q,
};

const GROUPS: [Group; 2] = [PAPER_GROUP, PRIME_ORDER_GROUP];

// ---------------------------------------------------------------------------------------------
// The BPDS content extraction signature, as printed (KG, Algorithm 1, Algorithm 2, Verify).
// ---------------------------------------------------------------------------------------------

/// Number of EMR parts: name, gender, age, ID number, medical history, examination, prescription.
const PARTS: usize = 7;

/// The paper's access structure `CEAS = {2, 3, 5}` (gender, age, medical history), 1-based.
const CEAS: [usize; 3] = [2, 3, 5];

/// `h_i = H(M_i || CEAS || T || i)`, mapped into `Z_p` like the paper's `H: {0,1}* -> Z_p`.
///
/// Stand-in hash: FNV-1a over a length-prefixed encoding (so `||` is unambiguous), finished
/// with the splitmix64 mixer. See the module comment for why its strength is irrelevant here.
fn part_hash(group: &Group, content: &[u8], ceas: &[usize], tag: u128, index: usize) -> u64 {
    let mut encoded = Vec::new();
    for field in [
        content,
        &encode_ceas(ceas),
        &tag.to_be_bytes()[6..],
        &(index as u64).to_be_bytes(),
    ] {
        encoded.extend_from_slice(&(field.len() as u64).to_be_bytes());
        encoded.extend_from_slice(field);
    }
    let mut h: u64 = 0xCBF2_9CE4_8422_2325;
    for byte in encoded {
        h = (h ^ byte as u64).wrapping_mul(0x0000_0100_0000_01B3);
    }
    mix64(h) % group.p
}

fn encode_ceas(ceas: &[usize]) -> Vec<u8> {
    ceas.iter().map(|&i| i as u8).collect()
}

/// One part as it travels in an extraction: its index, its content and its signature.
/// `r` is stored per part so the control signer (fresh `k` per part) fits the same type; the
/// paper's Algorithm 1 gives every part of a record the same `r`.
#[derive(Clone, Debug)]
struct SignedPart {
    index: usize,
    content: Vec<u8>,
    r: u64,
    delta: u64,
}

/// `delta_Full` (plus `r`, see the module comment) or, after Algorithm 2, `delta_Ext`.
#[derive(Clone, Debug)]
struct Signed {
    ceas: Vec<usize>,
    tag: u128,
    parts: Vec<SignedPart>,
}

/// KG: the doctor's secret `a` and public `v = g^a mod p`.
fn keygen(group: &Group, rng: &mut SplitMix64) -> (u64, u64) {
    let a = rng.range(1, group.n);
    (a, pow_mod(group.g, a, group.p))
}

/// A random `k` in `Z_n^*` and `r = g^k mod p` (Algorithm 1, first line).
fn random_nonce(group: &Group, rng: &mut SplitMix64) -> (u64, u64) {
    loop {
        let k = rng.range(1, group.n);
        if gcd(k, group.n) == 1 {
            return (k, pow_mod(group.g, k, group.p));
        }
    }
}

/// The 80-bit CES tag `T`: 64 random bits followed by 16 more.
fn random_tag(rng: &mut SplitMix64) -> u128 {
    let (high, low) = (rng.next_u64(), rng.next_u64() & 0xFFFF);
    (u128::from(high) << 16) | u128::from(low)
}

/// `delta_i = (h_i - a*r) * k^-1 mod n` (Algorithm 1, second loop).
fn sign_part(group: &Group, a: u64, k: u64, r: u64, h: u64) -> u64 {
    let k_inv = inv_mod(k, group.n).expect("k is chosen in Z_n^*");
    mul_mod(sub_mod(h, mul_mod(a, r, group.n), group.n), k_inv, group.n)
}

/// Algorithm 1, `SIG(SK, M, CEAS)`: ONE `k` for all seven parts, as the paper specifies.
/// Returns the signature and the `k` used (the test compares it with the recovered one).
fn sign_bpds(
    group: &Group,
    a: u64,
    record: &[Vec<u8>; PARTS],
    rng: &mut SplitMix64,
) -> (Signed, u64) {
    let tag = random_tag(rng);
    let (k, r) = random_nonce(group, rng);
    let parts = (1..=PARTS)
        .map(|i| {
            let content = record[i - 1].clone();
            let h = part_hash(group, &content, &CEAS, tag, i);
            SignedPart {
                index: i,
                content,
                r,
                delta: sign_part(group, a, k, r, h),
            }
        })
        .collect();
    (
        Signed {
            ceas: CEAS.to_vec(),
            tag,
            parts,
        },
        k,
    )
}

/// Control: the same signature equation, but a fresh `k` (and so a fresh `r`) for every part.
fn sign_fresh_k_per_part(
    group: &Group,
    a: u64,
    record: &[Vec<u8>; PARTS],
    rng: &mut SplitMix64,
) -> Signed {
    let tag = random_tag(rng);
    let parts = (1..=PARTS)
        .map(|i| {
            let (k, r) = random_nonce(group, rng);
            let content = record[i - 1].clone();
            let h = part_hash(group, &content, &CEAS, tag, i);
            SignedPart {
                index: i,
                content,
                r,
                delta: sign_part(group, a, k, r, h),
            }
        })
        .collect();
    Signed {
        ceas: CEAS.to_vec(),
        tag,
        parts,
    }
}

/// Algorithm 2, `Ext`: keep the parts listed in `keep` (the extraction subset `CI(M')`).
fn extract(full: &Signed, keep: &[usize]) -> Signed {
    Signed {
        ceas: full.ceas.clone(),
        tag: full.tag,
        parts: full
            .parts
            .iter()
            .filter(|part| keep.contains(&part.index))
            .cloned()
            .collect(),
    }
}

/// One part: `v^r * r^delta_i == g^h_i (mod p)`.
fn verify_part(group: &Group, v: u64, ceas: &[usize], tag: u128, part: &SignedPart) -> bool {
    let h = part_hash(group, &part.content, ceas, tag, part.index);
    let lhs = mul_mod(
        pow_mod(v, part.r, group.p),
        pow_mod(part.r, part.delta, group.p),
        group.p,
    );
    lhs == pow_mod(group.g, h, group.p)
}

/// The paper's verification: `CEAS` is a subset of `CI(M')`, then every kept part verifies.
fn verify(group: &Group, v: u64, signed: &Signed) -> bool {
    let present = |i: &usize| signed.parts.iter().any(|part| part.index == *i);
    signed.ceas.iter().all(present)
        && signed
            .parts
            .iter()
            .all(|part| verify_part(group, v, &signed.ceas, signed.tag, part))
}

// ---------------------------------------------------------------------------------------------
// The attack: only public inputs (the doctor's public key and an extraction).
// ---------------------------------------------------------------------------------------------

/// What any verifier of an extraction knows about its part at position `idx`:
/// `(h_i mod n, delta_i, r)`, with `h_i` recomputed from the disclosed content.
fn public_values(group: &Group, signed: &Signed, idx: usize) -> (u64, u64, u64) {
    let part = &signed.parts[idx];
    let h = part_hash(group, &part.content, &signed.ceas, signed.tag, part.index);
    (h % group.n, part.delta, part.r)
}

/// Every `(k, a)` that the equations of parts `i` and `j` allow, assuming (as Algorithm 1
/// guarantees) that both were signed with the same `k`, hence the same `r`:
///
/// - `(delta_i - delta_j) * k = h_i - h_j (mod n)` gives the candidates for `k`;
/// - `a * r = h_i - delta_i * k (mod n)` gives, for each of them, the candidates for `a`.
fn candidate_nonces_and_keys(
    group: &Group,
    signed: &Signed,
    i: usize,
    j: usize,
) -> Vec<(u64, u64)> {
    let n = group.n;
    let (h1, delta1, r) = public_values(group, signed, i);
    let (h2, delta2, _) = public_values(group, signed, j);
    solve_linear_congruence(sub_mod(delta1, delta2, n), sub_mod(h1, h2, n), n)
        .into_iter()
        .flat_map(|k| {
            solve_linear_congruence(r % n, sub_mod(h1, mul_mod(delta1, k, n), n), n)
                .into_iter()
                .map(move |a| (k, a))
        })
        .collect()
}

/// The attack: the candidate consistent with the public `r = g^k` and `v = g^a` (unique, since
/// `g^x` determines `x` mod the order of `g`). `None` if there is none, which is what must happen
/// when each part had its own `k`.
fn recover_nonce_and_key(
    group: &Group,
    v: u64,
    signed: &Signed,
    i: usize,
    j: usize,
) -> Option<(u64, u64)> {
    let r = signed.parts[i].r;
    candidate_nonces_and_keys(group, signed, i, j)
        .into_iter()
        .find(|&(k, a)| pow_mod(group.g, k, group.p) == r && pow_mod(group.g, a, group.p) == v)
}

/// The same algebra with no consistency check: what an attacker gets if it ignores `r` and `v`.
/// Used by the control to show the numbers are not the key, not merely that a check refused them.
fn naive_key_guess(group: &Group, signed: &Signed, i: usize, j: usize) -> Option<u64> {
    candidate_nonces_and_keys(group, signed, i, j)
        .first()
        .map(|&(_, a)| a)
}

// ---------------------------------------------------------------------------------------------
// Test data.
// ---------------------------------------------------------------------------------------------

/// A random seven-part EMR (content is irrelevant to the attack; it only has to vary).
fn random_record(rng: &mut SplitMix64) -> [Vec<u8>; PARTS] {
    let labels = [
        "name",
        "gender",
        "age",
        "id-number",
        "history",
        "examination",
        "prescription",
    ];
    labels.map(|label| format!("{label}:{:016x}", rng.next_u64()).into_bytes())
}

/// Two distinct positions in `0..len`.
fn random_pair(rng: &mut SplitMix64, len: usize) -> (usize, usize) {
    let i = rng.range(0, len as u64) as usize;
    let j = (i + 1 + rng.range(0, len as u64 - 1) as usize) % len;
    (i, j)
}

const TRIALS: usize = 300;

// ---------------------------------------------------------------------------------------------
// Tests.
// ---------------------------------------------------------------------------------------------

#[test]
fn group_parameters_are_sound() {
    assert!(
        is_prime(P) && is_prime(Q) && P == 2 * Q + 1,
        "P must be a safe prime"
    );
    // g = 2 generates Z_p^*: its order divides 2q and is neither 1, 2 nor q.
    assert!(pow_mod(2, 2, P) != 1 && pow_mod(2, Q, P) != 1);
    // 4 = 2^2 is not 1 and 4^q = 1, so its order is the prime q.
    assert_eq!(pow_mod(4, Q, P), 1);
    // Sanity of the helpers on the composite modulus p - 1.
    assert_eq!(inv_mod(2, P - 1), None);
    let three_inv = inv_mod(3, P - 1).unwrap();
    assert_eq!(mul_mod(3, three_inv, P - 1), 1);
    for x in solve_linear_congruence(6, 10, P - 1) {
        assert_eq!(mul_mod(6, x, P - 1), 10);
    }
}

/// The implementation matches the paper: honest signatures and extractions verify, a changed
/// part or an extraction without a CEAS part does not. Without this the other tests prove nothing.
#[test]
fn honest_signatures_verify_and_tampering_is_detected() {
    let mut rng = SplitMix64(0x5EED_0001);
    for group in &GROUPS {
        for _ in 0..50 {
            let (a, v) = keygen(group, &mut rng);
            let record = random_record(&mut rng);
            let (full, _) = sign_bpds(group, a, &record, &mut rng);
            assert!(verify(group, v, &full), "{}: full signature", group.name);
            assert!(
                verify(group, v, &extract(&full, &CEAS)),
                "{}: minimal extraction",
                group.name
            );
            assert!(
                verify(group, v, &extract(&full, &[1, 2, 3, 5, 7])),
                "{}: extraction",
                group.name
            );

            let mut changed = full.clone();
            changed.parts[4].content = b"history:nothing to see".to_vec();
            assert!(
                !verify(group, v, &changed),
                "{}: changed part must fail",
                group.name
            );

            assert!(
                !verify(group, v, &extract(&full, &[2, 3, 6])),
                "{}: CEAS part 5 missing",
                group.name
            );

            let (_, other_v) = keygen(group, &mut rng);
            assert!(
                !verify(group, other_v, &full),
                "{}: wrong doctor key must fail",
                group.name
            );

            assert!(
                verify(
                    group,
                    v,
                    &sign_fresh_k_per_part(group, a, &record, &mut rng)
                ),
                "{}: control signer",
                group.name
            );
        }
    }
}

/// The flaw: the smallest extraction a patient may share (the three CEAS parts) gives any
/// recipient the signing nonce `k` and the doctor's private key `a`.
#[test]
fn one_shared_k_reveals_the_doctors_private_key() {
    let mut rng = SplitMix64(0x5EED_0002);
    for group in &GROUPS {
        let mut ambiguous = 0;
        for trial in 0..TRIALS {
            let (a, v) = keygen(group, &mut rng);
            let record = random_record(&mut rng);
            let (full, k) = sign_bpds(group, a, &record, &mut rng);

            // What an insurer receives: the minimal extraction, and the doctor's public key.
            let shared = extract(&full, &CEAS);
            assert!(verify(group, v, &shared));
            let (i, j) = random_pair(&mut rng, shared.parts.len());
            assert_eq!(shared.parts[i].r, shared.parts[j].r, "Algorithm 1 shares r");

            let (recovered_k, recovered_a) = recover_nonce_and_key(group, v, &shared, i, j)
                .unwrap_or_else(|| panic!("{} trial {trial}: recovery failed", group.name));
            assert_eq!(recovered_k, k, "{} trial {trial}: nonce", group.name);
            assert_eq!(recovered_a, a, "{} trial {trial}: private key", group.name);

            // Count the cases where a division mod n had several roots (only possible when n
            // is composite), to show that path of the attack is exercised, not just the easy one.
            let delta_gap = sub_mod(shared.parts[i].delta, shared.parts[j].delta, group.n);
            if gcd(delta_gap, group.n) > 1 || gcd(shared.parts[i].r % group.n, group.n) > 1 {
                ambiguous += 1;
            }
        }
        if group.n == P - 1 {
            assert!(
                ambiguous > 0,
                "the composite-modulus case was never exercised"
            );
        } else {
            assert_eq!(ambiguous, 0, "a prime modulus has unique roots");
        }
    }
}

/// With the recovered key the attacker signs what it likes, and the paper's verification
/// accepts it: a changed part slotted into the genuine record, and a whole new record.
#[test]
fn recovered_key_forges_signatures_the_paper_accepts() {
    let mut rng = SplitMix64(0x5EED_0003);
    for group in &GROUPS {
        for _ in 0..TRIALS / 3 {
            let (a, v) = keygen(group, &mut rng);
            let (full, _) = sign_bpds(group, a, &random_record(&mut rng), &mut rng);
            let shared = extract(&full, &CEAS);
            let (k, stolen_a) = recover_nonce_and_key(group, v, &shared, 0, 1).expect("recovery");

            // 1. Rewrite the medical history in the genuine extraction. Same r and T as the
            //    doctor's other parts, so nothing distinguishes the forged part.
            let mut altered = shared.clone();
            let history = altered
                .parts
                .iter_mut()
                .find(|part| part.index == 5)
                .unwrap();
            history.content = b"history:no pre-existing conditions".to_vec();
            let h = part_hash(group, &history.content, &altered.ceas, altered.tag, 5);
            history.delta = sign_part(group, stolen_a, k, history.r, h);
            assert!(
                verify(group, v, &altered),
                "{}: altered record accepted",
                group.name
            );

            // 2. A new record for someone else, signed from scratch with the stolen key and the
            //    doctor's own Algorithm 1 (fresh tag, fresh k).
            let forged_record = [
                "name:Mallory",
                "gender:x",
                "age:40",
                "id-number:000",
                "history:none",
                "examination:fit",
                "prescription:oxycodone 80mg x 100",
            ]
            .map(|s| s.as_bytes().to_vec());
            let (forged, _) = sign_bpds(group, stolen_a, &forged_record, &mut rng);
            assert!(
                verify(group, v, &forged),
                "{}: forged record accepted",
                group.name
            );
        }
    }
}

/// Control: the same algebra on part signatures that each used their own `k` does not give
/// the key. The consistency checks find nothing, and the unchecked numbers are not the key.
#[test]
fn fresh_k_per_part_defeats_the_same_algebra() {
    let mut rng = SplitMix64(0x5EED_0004);
    for group in &GROUPS {
        for trial in 0..TRIALS {
            let (a, v) = keygen(group, &mut rng);
            let full = sign_fresh_k_per_part(group, a, &random_record(&mut rng), &mut rng);
            let shared = extract(&full, &CEAS);
            assert!(verify(group, v, &shared));
            let (i, j) = random_pair(&mut rng, shared.parts.len());
            assert_ne!(shared.parts[i].r, shared.parts[j].r);

            assert_eq!(
                recover_nonce_and_key(group, v, &shared, i, j),
                None,
                "{} trial {trial}",
                group.name
            );
            if let Some(guess) = naive_key_guess(group, &shared, i, j) {
                assert_ne!(guess, a, "{} trial {trial}: guessed the key", group.name);
                assert_ne!(
                    pow_mod(group.g, guess, group.p),
                    v,
                    "{} trial {trial}: guess matches v",
                    group.name
                );
            }
        }
    }
}
