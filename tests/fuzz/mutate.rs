//! The fuzzer's mutations: of JSON values, of bytes, of a safetensors
//! header and data, of a pickle; and its seedable random numbers.

use serde_json::Value;

/// splitmix64: small, seedable, the same on every machine.
pub(crate) struct Rng(pub(crate) u64);

impl Rng {
    pub(crate) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    pub(crate) fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
    pub(crate) fn chance(&mut self, one_in: usize) -> bool {
        self.below(one_in) == 0
    }
    pub(crate) fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// Numbers that break code which trusts them.
pub(crate) const EXTREMES: &[&str] = &[
    "0",
    "-1",
    "1",
    "2",
    "3",
    "7",
    "255",
    "65536",
    "2147483647",
    "2147483648",
    "4294967296",
    "9007199254740993",
    "9223372036854775807",
    "9223372036854775808",
    "18446744073709551615",
    "18446744073709551616",
    "1e308",
    "-1e308",
    "1e-320",
    "0.5",
    "-0.0",
    "1000000000",
];

/// One of [`EXTREMES`] as a JSON number.
pub(crate) fn extreme(rng: &mut Rng) -> Value {
    let text = EXTREMES[rng.below(EXTREMES.len())];
    serde_json::from_str(text).unwrap()
}

/// A JSON value to put somewhere it does not belong.
pub(crate) fn hostile_value(rng: &mut Rng) -> Value {
    match rng.below(10) {
        0..=3 => extreme(rng),
        4 => Value::String(
            rng.pick(&[
                "",
                "é🙂\u{202e}名前",
                "\0",
                "NaN",
                "bicubic",
                "F8_E4M3",
                "I64",
            ])
            .to_string(),
        ),
        5 => Value::String("x".repeat(1 << rng.below(20))),
        6 => Value::Null,
        7 => Value::Bool(rng.chance(2)),
        8 => {
            // Nesting deeper than serde_json's recursion limit, or just under it.
            let depth = *rng.pick(&[10usize, 127, 129, 5000]);
            serde_json::from_str(&format!("{}{}", "[".repeat(depth), "]".repeat(depth)))
                .unwrap_or(Value::Array(vec![]))
        }
        _ => {
            let n = *rng.pick(&[0usize, 1, 2, 3, 4, 1000]);
            Value::Array((0..n).map(|_| extreme(rng)).collect())
        }
    }
}

/// Every value slot in `v`, as a path of object keys and array indices.
pub(crate) fn slots(v: &Value, path: &mut Vec<Value>, out: &mut Vec<Vec<Value>>) {
    out.push(path.clone());
    match v {
        Value::Object(m) => {
            for (k, child) in m {
                path.push(Value::String(k.clone()));
                slots(child, path, out);
                path.pop();
            }
        }
        Value::Array(a) => {
            for (i, child) in a.iter().enumerate() {
                path.push(Value::from(i));
                slots(child, path, out);
                path.pop();
            }
        }
        _ => {}
    }
}

pub(crate) fn at<'a>(v: &'a mut Value, path: &[Value]) -> &'a mut Value {
    path.iter().fold(v, |v, key| match key {
        Value::String(k) => &mut v[k.as_str()],
        _ => &mut v[key.as_u64().unwrap() as usize],
    })
}

/// Mutates a JSON document structurally: values replaced, keys dropped or
/// duplicated, shapes and offsets rewritten. Falls back to raw bytes when
/// the text is not JSON (an earlier mutation broke it).
pub(crate) fn mutate_json(text: &[u8], rng: &mut Rng) -> Vec<u8> {
    let Ok(mut v) = serde_json::from_slice::<Value>(text) else {
        return mutate_bytes(text, rng, &[]);
    };
    for _ in 0..1 + rng.below(3) {
        let mut all = Vec::new();
        slots(&v, &mut Vec::new(), &mut all);
        let path = rng.pick(&all).clone();
        match rng.below(6) {
            0 if !path.is_empty() => {
                // Drop the key or element.
                let (last, parent) = path.split_last().unwrap();
                match (at(&mut v, parent), last) {
                    (Value::Object(m), Value::String(k)) => {
                        m.remove(k);
                    }
                    (Value::Array(a), i) => {
                        let i = i.as_u64().unwrap() as usize;
                        if i < a.len() {
                            a.remove(i);
                        }
                    }
                    _ => {}
                }
            }
            1 => {
                // A number nudged: off by one, doubled, negated.
                let slot = at(&mut v, &path);
                if let Some(n) = slot.as_f64() {
                    let m = *rng.pick(&[n + 1.0, n - 1.0, n * 2.0, -n, n * 1e6]);
                    *slot = serde_json::Number::from_f64(m).map_or(Value::Null, Value::Number);
                    if let Some(i) = slot.as_f64().filter(|f| f.fract() == 0.0 && f.abs() < 9e15) {
                        *slot = Value::from(i as i64);
                    }
                }
            }
            _ => *at(&mut v, &path) = hostile_value(rng),
        }
    }
    let mut out = serde_json::to_vec(&v).unwrap();
    if rng.chance(6) && out.first() == Some(&b'{') && out.len() > 2 {
        // A duplicate key: the first key written again with a hostile value.
        if let Some(Value::Object(m)) = Some(&v)
            && let Some(k) = m.keys().next()
        {
            let dup = format!(
                "{}:{},",
                serde_json::to_string(k).unwrap(),
                hostile_value(rng)
            );
            out.splice(1..1, dup.into_bytes());
        }
    }
    out
}

/// Byte-level mutations; `other` is spliced from.
pub(crate) fn mutate_bytes(bytes: &[u8], rng: &mut Rng, other: &[u8]) -> Vec<u8> {
    let mut b = bytes.to_vec();
    for _ in 0..1 + rng.below(4) {
        let len = b.len();
        match rng.below(7) {
            0 if len > 0 => {
                let i = rng.below(len);
                b[i] ^= 1 << rng.below(8);
            }
            1 if len > 0 => {
                let i = rng.below(len);
                b[i] = *rng.pick(&[0u8, 0xff, 0x7f, 0x80, b'{', b'"', b'9']);
            }
            2 => b.truncate(rng.below(len + 1)),
            3 => {
                let i = rng.below(len + 1);
                let n = 1 + rng.below(64);
                let junk: Vec<u8> = (0..n).map(|_| rng.next() as u8).collect();
                b.splice(i..i, junk);
            }
            4 if len > 1 => {
                let i = rng.below(len);
                let n = rng.below(len - i).min(4096);
                b.drain(i..i + n);
            }
            5 if !other.is_empty() => {
                let from = rng.below(other.len());
                let n = (1 + rng.below(4096)).min(other.len() - from);
                let i = rng.below(len + 1);
                let end = (i + n).min(len);
                b.splice(i..end, other[from..from + n].iter().copied());
            }
            _ if len > 16 => {
                // A block repeated: data that overlaps itself.
                let i = rng.below(len - 8);
                let block = b[i..i + 8].to_vec();
                let j = rng.below(len - 8);
                b[j..j + 8].copy_from_slice(&block);
            }
            _ => {}
        }
    }
    b
}

/// safetensors-aware mutations: the header's JSON, its length field, and
/// the tensor data (NaN, Inf, values that overflow float32 in the forward
/// pass).
pub(crate) fn mutate_safetensors(bytes: &[u8], rng: &mut Rng, other: &[u8]) -> Vec<u8> {
    let header_len = bytes
        .get(..8)
        .map(|h| u64::from_le_bytes(h.try_into().unwrap()) as usize)
        .filter(|&n| n <= bytes.len() - 8);
    let Some(n) = header_len else {
        return mutate_bytes(bytes, rng, other);
    };
    let (header, data) = (&bytes[8..8 + n], &bytes[8 + n..]);
    match rng.below(8) {
        0 | 1 => {
            // The header rewritten, its length field telling the truth.
            let h = mutate_json(header, rng);
            let mut out = (h.len() as u64).to_le_bytes().to_vec();
            out.extend(h);
            out.extend_from_slice(data);
            out
        }
        2 => {
            // The length field lying.
            let lie = *rng.pick(&[
                0u64,
                1,
                n as u64 - 1,
                n as u64 + 1,
                bytes.len() as u64 - 8,
                bytes.len() as u64,
                u64::MAX,
                u64::MAX - 7,
                1 << 40,
            ]);
            let mut out = bytes.to_vec();
            out[..8].copy_from_slice(&lie.to_le_bytes());
            out
        }
        3..=5 if !data.is_empty() => {
            // Weights that are not numbers, or so large that the forward
            // pass overflows: f32 and f16/bf16 patterns alike.
            let mut out = bytes.to_vec();
            let patterns: &[&[u8]] = &[
                &f32::NAN.to_le_bytes(),
                &f32::INFINITY.to_le_bytes(),
                &f32::NEG_INFINITY.to_le_bytes(),
                &1e30f32.to_le_bytes(),
                &3e38f32.to_le_bytes(),
                &[0x00, 0x7c], // f16 +Inf
                &[0x00, 0x7e], // f16 NaN
                &[0xff, 0x7b], // f16 65504, the largest
                &[0x80, 0x7f], // bf16 +Inf
                &[0x7f, 0x7f], // bf16 3.4e38
            ];
            let writes = if rng.chance(4) { 10_000 } else { 4 };
            for _ in 0..1 + rng.below(writes) {
                let p = rng.pick(patterns);
                let i = 8 + n + rng.below(data.len().saturating_sub(p.len()) + 1) / 2 * 2;
                if i + p.len() <= out.len() {
                    out[i..i + p.len()].copy_from_slice(p);
                }
            }
            out
        }
        _ => mutate_bytes(bytes, rng, other),
    }
}

/// Where a PyTorch archive keeps its pickle: the data of the entry whose
/// name ends in `data.pkl`, found through the central directory (torch
/// writes zero sizes in the local headers).
pub(crate) fn pickle_span(bytes: &[u8]) -> Option<std::ops::Range<usize>> {
    let u16_at =
        |i: usize| Some(u16::from_le_bytes(bytes.get(i..i + 2)?.try_into().ok()?) as usize);
    let u32_at =
        |i: usize| Some(u32::from_le_bytes(bytes.get(i..i + 4)?.try_into().ok()?) as usize);
    let mut i = 0;
    while let Some(at) = bytes[i..].windows(4).position(|w| w == b"PK\x01\x02") {
        let e = i + at;
        let (size, name_len) = (u32_at(e + 20)?, u16_at(e + 28)?);
        let name = bytes.get(e + 46..e + 46 + name_len)?;
        if name.ends_with(b"data.pkl") {
            let local = u32_at(e + 42)?;
            let start = local + 30 + u16_at(local + 26)? + u16_at(local + 28)?;
            return (start + size <= bytes.len()).then_some(start..start + size);
        }
        i = e + 4;
    }
    None
}

/// Pickle-aware mutations of a PyTorch archive, in place so the archive
/// stays whole and the pickle machine sees them: opcodes that build,
/// reference or call, bytes flipped, a run of the pickle repeated.
pub(crate) fn mutate_pickle(bytes: &[u8], rng: &mut Rng, other: &[u8]) -> Vec<u8> {
    let Some(span) = pickle_span(bytes).filter(|s| s.len() > 16) else {
        return mutate_bytes(bytes, rng, other);
    };
    let mut out = bytes.to_vec();
    let pkl = &mut out[span];
    // MARK, STOP, POP, DUP, GLOBAL, REDUCE, BUILD, EMPTY_DICT, SETITEMS,
    // TUPLE, BINPUT, BINGET, LONG_BINGET, BININT, BINUNICODE, NEWOBJ,
    // STACK_GLOBAL, MEMOIZE, FRAME, and bytes that are no opcode.
    const OPS: &[u8] = &[
        b'(', b'.', b'0', b'2', b'c', b'R', b'b', b'}', b'u', b't', b'q', b'h', b'j', b'J', b'X',
        0x81, 0x93, 0x94, 0x95, 0xff, 0x00,
    ];
    for _ in 0..1 + rng.below(6) {
        let len = pkl.len();
        match rng.below(3) {
            0 => pkl[rng.below(len)] = *rng.pick(OPS),
            1 => pkl[rng.below(len)] ^= 1 << rng.below(8),
            _ => {
                let n = 1 + rng.below(32.min(len / 2));
                let from = rng.below(len - n);
                let to = rng.below(len - n);
                pkl.copy_within(from..from + n, to);
            }
        }
    }
    out
}
